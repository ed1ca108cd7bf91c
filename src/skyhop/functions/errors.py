"""Errors of remote calls. User mistakes (bad arguments, no pool) are `UserError`s; these are
what a call itself can end with."""

from __future__ import annotations


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a node, attached as its `__cause__` so Python
    prints it above the local one."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text.rstrip()


class RemoteError(Exception):
    """An exception raised on a node that cannot be re-created here (its class does not
    exist locally, or it could not be pickled): its type name, message and traceback."""

    def __init__(self, type_name: str, message: str, node: str):
        super().__init__(f"{type_name}: {message} (raised on {node})")
        self.type_name = type_name
        self.remote_message = message
        self.node = node


class WorkerLostError(Exception):
    """The node's worker went away (the process died, the node or its network is gone) while
    the call was running or queued on it."""
