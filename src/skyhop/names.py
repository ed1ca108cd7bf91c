"""One rule for the names users give (clusters, tasks, managed jobs, pools) and for the
paths and environment variables built from them. A leaf module: imports only skyhop.errors.

A name becomes a directory, a cloud tag, part of a shell line on a node: so it is checked
where it enters (CLI, SDK, task file, config) before anything is created, and every path
built from one goes through `path_under`, which refuses anything that escapes its root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from skyhop.errors import UserError

MAX_NAME_LENGTH = 63
NAME_RULE = (f"a letter first, then letters, digits, '-', '_' or '.'; at most "
             f"{MAX_NAME_LENGTH} characters")
_NAME = re.compile(rf"[A-Za-z][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}")
# Shell patterns for names (`dev-*`, `run-[0-9]`): the name characters plus * ? [ ] !
_PATTERN = re.compile(r"[A-Za-z0-9._*?\[\]!-]{1,255}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_NAME_LENGTH = 255


class InvalidNameError(UserError, ValueError):
    """A name (cluster, task, job, pool, env variable) that breaks the naming rule. Also a
    ValueError, so a pydantic validator may raise it and keep its hint."""


def shown(value: object, limit: int = 40) -> str:
    """A value for an error message: repr'd, and cut short when long."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(value))} characters)"


def is_valid_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(value: object, kind: str, where: str | None = None) -> str:
    """`value` if it follows the naming rule; else an InvalidNameError saying what, where and
    how (`kind`: 'cluster', 'task', 'managed job', 'pool', ...)."""
    if is_valid_name(value):
        return value  # type: ignore[return-value]
    if not isinstance(value, str):
        problem = f"must be a string, not {type(value).__name__}"
    elif not value:
        problem = "is empty"
    elif len(value) > MAX_NAME_LENGTH:
        problem = f"is {len(value)} characters long (at most {MAX_NAME_LENGTH})"
    elif not value[0].isascii() or not value[0].isalpha():
        problem = "must start with a letter"
    else:
        bad = next(ch for ch in value if not (ch.isascii() and (ch.isalnum() or ch in "._-")))
        problem = f"contains {bad!r}"
    raise InvalidNameError(f"{kind} name {shown(value)} {problem}", where=where,
                           hint=f"a {kind} name is {NAME_RULE}, e.g. 'dev-1'")


def check_pattern(value: str, kind: str, where: str | None = None) -> str:
    """A name or a shell pattern over names (`'dev-*'`)."""
    if not any(ch in value for ch in "*?["):
        return check_name(value, kind, where)
    if _PATTERN.fullmatch(value) is None:
        raise InvalidNameError(f"{kind} pattern {shown(value)} has characters no {kind} name "
                               "can have", where=where,
                               hint=f"a {kind} name is {NAME_RULE}; patterns add * ? [ ]")
    return value


def is_env_name(value: object) -> bool:
    return (isinstance(value, str) and len(value) <= MAX_ENV_NAME_LENGTH
            and _ENV_NAME.fullmatch(value) is not None)


def env_name_problem(value: object) -> str | None:
    """Why `value` is not a POSIX environment variable name, or None when it is one."""
    if is_env_name(value):
        return None
    return (f"{shown(value)} is not a valid environment variable name (a letter or '_' "
            f"first, then letters, digits or '_'; at most {MAX_ENV_NAME_LENGTH} characters)")


def check_env_name(value: object, where: str | None = None) -> str:
    problem = env_name_problem(value)
    if problem is not None:
        raise InvalidNameError(problem, where=where, hint="rename it, e.g. MY_VAR")
    return value  # type: ignore[return-value]


def path_under(root: str | os.PathLike[str], *parts: str) -> Path:
    """`root/parts...`, refused (InvalidNameError) unless it stays under `root` once `..`
    and symbolic links are resolved. Returns the joined (unresolved) path."""
    base = Path(root)
    path = base.joinpath(*parts)
    for part in parts:
        if not part or "\0" in part or os.path.isabs(part) or len(part.encode()) > 255:
            raise InvalidNameError(f"{shown(part)} cannot be part of a path under {base}",
                                   hint=f"names are {NAME_RULE}")
    real_root = os.path.realpath(base)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise InvalidNameError(f"{shown(os.path.join(*parts))} leads outside {base}",
                               hint=f"names are {NAME_RULE}")
    return path
