"""The wire between the client and a node's function worker: length-prefixed frames.

Standard library only (cloudpickle is imported when values are pickled), and Python 3.8+
syntax: this module is shipped to nodes and runs on their `python3`.

A frame is a header (kind, part count, call id), one 8-byte length per part, then the parts
back to back. A message with a large value is never assembled whole: its pickle is written
with protocol 5 and large buffers (numpy arrays, bytes/bytearray over 64 KiB) travel
out-of-band as their own parts, written straight from the object's memory in slices and
read straight into one preallocated buffer on the other side.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import types
from collections.abc import Callable
from typing import Any

# Written once by the worker before its first frame: whatever precedes it on the stream is
# start-up noise (a shell error, an ImportError traceback) that the client shows as is.
MAGIC = b"\x00skyhop-functions/1\n"

HELLO, INIT, READY, CALL, RESULT, ERROR, OUTPUT, START, CANCEL, SHUTDOWN = range(1, 11)
NAMES = {HELLO: "HELLO", INIT: "INIT", READY: "READY", CALL: "CALL", RESULT: "RESULT",
         ERROR: "ERROR", OUTPUT: "OUTPUT", START: "START", CANCEL: "CANCEL",
         SHUTDOWN: "SHUTDOWN"}

HEADER = struct.Struct("!BIQ")  # kind, number of parts, call id
LENGTH = struct.Struct("!Q")
CALL_META = struct.Struct("!16sd")  # function digest, timeout in seconds (0: none)
SMALL = 256 * 1024  # messages up to this size go out in one write
SLICE = 4 * 1024 * 1024  # larger parts are written in slices of this size
OOB_MIN = 64 * 1024  # bytes values from this size travel out-of-band
BYTES_ID = "skyhop:bytes"  # the persistent id of an out-of-band bytes value
MAX_PARTS = 1 << 20

Part = Any  # bytes, bytearray or memoryview


def encode(kind: int, ident: int, parts: list[Part]) -> list[Part]:
    """The buffers to write for one frame: one bytes object when the frame is small."""
    sizes = [memoryview(p).nbytes for p in parts]
    head = HEADER.pack(kind, len(parts), ident) + b"".join(LENGTH.pack(n) for n in sizes)
    if sum(sizes) <= SMALL:
        return [head + b"".join(parts)]
    return [head, *parts]


class FrameWriter:
    """Writes whole frames with `write(buffer)` (which must write all of it)."""

    def __init__(self, write: Callable[[Part], None]):
        self._write = write

    def send(self, kind: int, ident: int = 0, parts: list[Part] | None = None) -> None:
        for buffer in encode(kind, ident, list(parts or [])):
            view = memoryview(buffer).cast("B")
            if view.nbytes <= SLICE:
                self._write(view)
                continue
            for start in range(0, view.nbytes, SLICE):  # big values: slice, never copy whole
                self._write(view[start:start + SLICE])

    def send_json(self, kind: int, value: Any, ident: int = 0) -> None:
        self.send(kind, ident, [json.dumps(value).encode()])


class FrameReader:
    """Reads frames with `readinto(memoryview) -> count` (0 at the end of the stream).

    Small frames are parsed out of one read buffer, so a burst of responses costs one read;
    a large part is read directly into its own buffer."""

    def __init__(self, readinto: Callable[[memoryview], int], size: int = 256 * 1024):
        self._readinto = readinto
        self._buf = bytearray(size)
        self._start = 0
        self._end = 0

    def _available(self) -> int:
        return self._end - self._start

    def _fill(self, need: int) -> bool:
        """At least `need` bytes buffered; False at the end of the stream."""
        while self._available() < need:
            if len(self._buf) - self._start < need:  # make room at the front
                data = self._buf[self._start:self._end]
                if len(self._buf) < need:
                    self._buf = bytearray(max(need, 2 * len(self._buf)))
                self._buf[:len(data)] = data
                self._start, self._end = 0, len(data)
            count = self._readinto(memoryview(self._buf)[self._end:])
            if not count:
                return False
            self._end += count
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buf[self._start:self._start + size])
        self._start += size
        return data

    def _read_part(self, size: int) -> Part:
        if size <= len(self._buf) // 2:
            if not self._fill(size):
                raise EOFError
            return self._take(size)
        target = bytearray(size)
        have = min(size, self._available())
        target[:have] = self._buf[self._start:self._start + have]
        self._start += have
        view = memoryview(target)
        while have < size:
            count = self._readinto(view[have:])
            if not count:
                raise EOFError
            have += count
        return target

    def skip_to_magic(self, limit: int = 1 << 20) -> bytes | None:
        """Consume the stream up to MAGIC; returns what came before it (None: the stream
        ended or `limit` bytes came without it)."""
        seen = b""
        while True:
            buffered = bytes(self._buf[self._start:self._end])
            at = (seen + buffered).find(MAGIC)
            if at >= 0:
                consumed = at + len(MAGIC) - len(seen)
                self._start += consumed
                return (seen + buffered)[:at]
            seen += buffered
            self._start = self._end = 0
            if len(seen) > limit:
                return None
            count = self._readinto(memoryview(self._buf))
            if not count:
                return None
            self._end = count

    def read(self) -> tuple[int, int, list[Part]] | None:
        """The next frame as (kind, id, parts), or None at the end of the stream."""
        if not self._fill(HEADER.size):
            return None
        kind, count, ident = HEADER.unpack_from(self._buf, self._start)
        if count > MAX_PARTS:
            raise ValueError(f"corrupt frame: {count} parts")
        self._start += HEADER.size
        try:
            if not self._fill(LENGTH.size * count):
                raise EOFError
            sizes = [LENGTH.unpack_from(self._buf, self._start + LENGTH.size * i)[0]
                     for i in range(count)]
            self._start += LENGTH.size * count
            return kind, ident, [self._read_part(size) for size in sizes]
        except EOFError:
            return None


# -- values ------------------------------------------------------------------------------

_pickler_class: Any = None


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:
        from skyhop.errors import UserError

        raise UserError("skyhop functions need cloudpickle, which is not installed here",
                        hint="pip install cloudpickle") from None
    return cloudpickle


def _pickler() -> Any:
    """cloudpickle's Pickler, sending large bytes out-of-band too (pickle does that only for
    bytearray and buffer-protocol types such as numpy arrays; bytes, which torch's storages
    pickle into, would otherwise be copied into the pickle)."""
    global _pickler_class
    if _pickler_class is None:
        cloudpickle = _cloudpickle()
        code_reduce = cloudpickle.cloudpickle._code_reduce

        class Pickler(cloudpickle.Pickler):
            def __init__(self, file: Any, protocol: int, buffer_callback: Any = None):
                super().__init__(file, protocol=protocol, buffer_callback=buffer_callback)
                self._out_of_band = buffer_callback

            def persistent_id(self, obj: Any) -> Any:
                # called for every object, unlike reducer_override (not for bytes)
                if (type(obj) is bytes and len(obj) >= OOB_MIN
                        and self._out_of_band is not None):
                    self._out_of_band(pickle.PickleBuffer(obj))
                    return BYTES_ID
                return None

            def reducer_override(self, obj: Any) -> Any:
                if type(obj) is types.CodeType:
                    # keep the real file name (cloudpickle writes "<dynamic-code>"), so
                    # remote tracebacks point at the user's file and line
                    make, args = code_reduce(obj)
                    return make, tuple(obj.co_filename if a == "<dynamic-code>" else a
                                       for a in args)
                return super().reducer_override(obj)

        _pickler_class = Pickler
    return _pickler_class


class _Unpickler(pickle.Unpickler):
    """Takes the out-of-band buffers in pickling order, for pickle's own (numpy arrays,
    bytearrays) and for large bytes alike."""

    def __init__(self, data: Part, buffers: list[Part]):
        self._buffers = iter(buffers)
        super().__init__(io.BytesIO(data), buffers=self._buffers)

    def persistent_load(self, pid: Any) -> Any:
        if pid == BYTES_ID:
            return bytes(next(self._buffers))
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def dumps(value: Any) -> list[Part]:
    """[pickle, *out-of-band buffers] for a value (functions and classes by value where
    cloudpickle decides so)."""
    buffers: list[Any] = []
    out = io.BytesIO()
    _pickler()(out, protocol=5, buffer_callback=buffers.append).dump(value)
    return [out.getbuffer(), *(b.raw() for b in buffers)]


def loads(parts: list[Part]) -> Any:
    if len(parts) == 1:
        return pickle.loads(parts[0])
    return _Unpickler(parts[0], parts[1:]).load()


def dumps_function(fn: Any) -> bytes:
    """A self-contained pickle of a function (no out-of-band buffers)."""
    out = io.BytesIO()
    _pickler()(out, protocol=5).dump(fn)
    return out.getvalue()


def read_json(parts: list[Part]) -> Any:
    return json.loads(bytes(parts[0]).decode())
