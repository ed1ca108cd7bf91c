"""User-facing errors. A leaf module: every layer may import it, it imports nothing.

A `UserError` is something the user can fix (bad YAML, unknown GPU, impossible
constraints). The CLI prints it as one message and exits with code 2; only `--debug`
shows a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user caused and can fix: printed as one clear message."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where  # "file:line:col" or a task name, when known
        self.hint = hint  # how to fix it

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(UserError):
    """A task file or task object is invalid."""


class UnknownAcceleratorError(UserError):
    """An accelerator name that no catalog knows."""


class InfeasibleError(UserError):
    """No placement satisfies the constraints."""

    culprit: str | None = None  # the filter that removed the last candidates, when known


class Unreachable(UserError):
    """A machine, or the agent on it, does not answer: it is down, gone or cut off. Managed
    jobs count these toward declaring a cluster lost, whatever the transport."""
