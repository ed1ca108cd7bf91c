"""`@skyhop.function`: calling the function makes an inert call; an operator sends it.

    call >> pool     run on one node, return the value
    call @ pool      run on every node, return the values in rank order
    call > pool      run on one node, return a concurrent.futures.Future
    a & b            a group of calls, run concurrently (`>>` gives a tuple)
    gather(*calls)   the same for any number of calls; stream=True yields values as they finish

Each operator has a method twin (`call.result(pool)`, `call.broadcast(pool)`,
`call.future(pool)`, `group.result(pool)`); without a pool they use the innermost open
`with skyhop.Compute(...)` block.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from skyhop.errors import UserError

T = TypeVar("T")


def function(fn: Callable[..., Any] | None = None, *, timeout: float | None = None,
             retries: int = 0) -> Any:
    """Make `fn` dispatchable to pools: `@skyhop.function` or
    `@skyhop.function(timeout=60, retries=2)`.

    timeout: seconds a call may run on its node (counted from when it starts there); then it
    fails with TimeoutError (the call is interrupted, or its worker restarted if it does
    not stop). retries: how many times a call is run again after it raised or its worker was
    lost."""
    _check_options(timeout, retries, "skyhop.function")
    if fn is None:
        return lambda f: function(f, timeout=timeout, retries=retries)
    if not callable(fn):
        raise UserError(f"@skyhop.function decorates a function, not {type(fn).__name__}",
                        hint="write @skyhop.function above a def")
    return RemoteFunction(fn, timeout, retries)


def _check_options(timeout: Any, retries: Any, where: str) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, (int, float)) or timeout <= 0):
        raise UserError(f"timeout must be a positive number of seconds, not {timeout!r}",
                        where=where, hint="timeout=60, or leave it out for no limit")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UserError(f"retries must be a whole number >= 0, not {retries!r}",
                        where=where, hint="retries=2 runs a failed call up to twice more")


_STDLIB = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}


def _installed(path: str) -> bool:
    """Whether a module file belongs to an installed distribution or the standard library
    (then the node imports it by name) rather than to the user's own code."""
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return any(real.startswith(root + os.sep) for root in _STDLIB)


def _ship_by_value(fn: Callable[..., Any]) -> None:
    """Functions of the user's own modules (a script, a test file, a project not installed
    on the node) travel by value, like those of __main__ and notebooks."""
    name = getattr(fn, "__module__", None) or "__main__"
    module = sys.modules.get(name)
    if name == "__main__" or module is None or name.split(".")[0] == "skyhop":
        return
    path = getattr(module, "__file__", None)
    if path and not _installed(path):
        from skyhop.functions.protocol import _cloudpickle

        _cloudpickle().register_pickle_by_value(module)


class RemoteFunction(Generic[T]):
    """A function that can run on a pool. Calling it makes a `Call`; `.local(...)` runs it
    here."""

    def __init__(self, fn: Callable[..., T], timeout: float | None, retries: int):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.timeout = float(timeout) if timeout is not None else None
        self.retries = retries
        self._shipped = False

    def __call__(self, *args: Any, **kwargs: Any) -> Call[T]:
        return Call(self, args, kwargs)

    def local(self, *args: Any, **kwargs: Any) -> T:
        """Run here, now (for tests and debugging)."""
        return self.fn(*args, **kwargs)

    def options(self, *, timeout: float | None = None, retries: int | None = None
                ) -> RemoteFunction[T]:
        """The same function with other options."""
        new_timeout = timeout if timeout is not None else self.timeout
        new_retries = retries if retries is not None else self.retries
        _check_options(new_timeout, new_retries, f"{self.__qualname__}.options")
        return RemoteFunction(self.fn, new_timeout, new_retries)

    def pickled(self) -> tuple[bytes, bytes]:
        """(digest, pickle) of the function as it is now: its globals are captured at each
        dispatch, as a local call would see them; the node unpickles a digest once."""
        from skyhop.functions import protocol

        if not self._shipped:
            _ship_by_value(self.fn)
            self._shipped = True
        try:
            blob = protocol.dumps_function(self.fn)
        except Exception as exc:
            raise UserError(f"{self.__qualname__} cannot be sent to a node: {exc}",
                            hint="a function must not capture locks, sockets, open files "
                                 "or other live resources; create them inside it") from exc
        return hashlib.blake2b(blob, digest_size=16).digest(), blob

    def __repr__(self) -> str:
        return f"<skyhop.function {self.__qualname__}>"


def _target(pool: Any, op: str) -> Any:
    from skyhop.functions.compute import Compute

    if pool is None:
        return Compute.current()
    if not isinstance(pool, Compute):
        raise UserError(f"the right side of `{op}` must be a skyhop.Compute pool, not "
                        f"{type(pool).__name__}",
                        hint="with skyhop.Compute(...) as pool: value = fn(x) >> pool")
    return pool


class Call(Generic[T]):
    """An inert call of a remote function: nothing runs until it is sent to a pool."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: RemoteFunction[T], args: tuple, kwargs: dict):
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def result(self, pool: Any = None) -> T:
        """Run on one node of the pool and return the value (`call >> pool`)."""
        return _target(pool, ">>").run(self)

    def broadcast(self, pool: Any = None) -> list[T]:
        """Run on every node, values in rank order (`call @ pool`)."""
        return _target(pool, "@").broadcast(self)

    def future(self, pool: Any = None) -> Future[T]:
        """Start on one node; a Future of the value (`call > pool`)."""
        return _target(pool, ">").submit(self)

    def __rshift__(self, pool: Any) -> T:
        return self.result(_target(pool, ">>"))

    def __matmul__(self, pool: Any) -> list[T]:
        return self.broadcast(_target(pool, "@"))

    def __gt__(self, pool: Any) -> Future[T]:
        return self.future(_target(pool, ">"))

    def __and__(self, other: Call | Group) -> Group:
        return Group([self]) & other

    def __repr__(self) -> str:
        return f"<skyhop call {self.fn.__qualname__}(...)>"


class Group:
    """Calls that run concurrently across the pool (made with `&` or `gather`)."""

    def __init__(self, calls: list[Call], stream: bool = False, ordered: bool = False):
        for call in calls:
            if not isinstance(call, Call):
                raise UserError(f"only calls of @skyhop.function functions can be gathered, "
                                f"not {type(call).__name__}",
                                hint="gather(fn(1), fn(2)), where fn is a @skyhop.function")
        self.calls = list(calls)
        self.stream, self.ordered = stream, ordered

    def __and__(self, other: Call | Group) -> Group:
        extra = other.calls if isinstance(other, Group) else [other]
        return Group(self.calls + list(extra), self.stream, self.ordered)

    def result(self, pool: Any = None) -> tuple | Iterator[Any]:
        """Run every call; a tuple of values in order, or (stream=True) an iterator of values
        as they finish (in order with ordered=True)."""
        return _target(pool, ">>").run_group(self)

    def future(self, pool: Any = None) -> Future[tuple]:
        return _target(pool, ">").submit_group(self)

    def broadcast(self, pool: Any = None) -> tuple[list, ...]:
        """Every call on every node: one list of per-node values per call."""
        return _target(pool, "@").broadcast_group(self)

    def __rshift__(self, pool: Any) -> tuple | Iterator[Any]:
        return self.result(_target(pool, ">>"))

    def __gt__(self, pool: Any) -> Future[tuple]:
        return self.future(_target(pool, ">"))

    def __matmul__(self, pool: Any) -> tuple[list, ...]:
        return self.broadcast(_target(pool, "@"))

    def __len__(self) -> int:
        return len(self.calls)


def gather(*calls: Call, stream: bool = False, ordered: bool = False) -> Group:
    """Run calls concurrently: `gather(*calls) >> pool` is a tuple of their values;
    with stream=True an iterator yielding each value as it finishes (ordered=True: in the
    calls' order, each as soon as it and those before it are done)."""
    if len(calls) == 1 and not isinstance(calls[0], Call) and hasattr(calls[0], "__iter__"):
        calls = tuple(calls[0])  # gather([f(1), f(2)]) as well as gather(f(1), f(2))
    return Group(list(calls), stream=stream, ordered=ordered)
