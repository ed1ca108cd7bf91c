"""What every CLI command module shares: common options, `--env` parsing, JSON and table
output, and one way to write ages and durations. Kept light (no rich at import): the
fast commands (`--help`, `status`) import it."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated

import typer

from skyhop.errors import UserError
from skyhop.names import check_env_name

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
EnvOption = Annotated[list[str] | None, typer.Option(
    "--env", help="Set an env var or secret: KEY=VALUE (repeatable).")]


SecretOption = Annotated[list[str] | None, typer.Option(
    "--secret", help="A secret for the job: NAME takes the value of NAME in your environment "
                     "(it never shows in argv or ps); NAME=VALUE also works but shows in ps. "
                     "Repeatable.")]
EnvFileOption = Annotated[str | None, typer.Option(
    "--env-file", help="Env vars from a dotenv file (KEY=VALUE lines); keys the task lists "
                       "under secrets: stay secrets.")]


def parse_secrets(values: list[str] | None) -> dict[str, str]:
    """`--secret NAME` (value from this process's environment) or `--secret NAME=VALUE`."""
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        check_env_name(key, where="--secret")
        if not sep:
            found = os.environ.get(key)
            if found is None:
                raise UserError(f"--secret {key}: {key} is not set in your environment",
                                hint=f"export {key}=... first (or write --secret "
                                     f"{key}=VALUE, which shows in ps)")
            value = found
        out[key] = value
    return out


def read_env_file(path: str | None) -> dict[str, str]:
    """A dotenv file: `KEY=VALUE` lines, `#` comments, an optional `export `, values
    optionally in matching quotes. Bad lines are refused with file:line."""
    if path is None:
        return {}
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            text = fh.read(MAX_ENV_FILE + 1)
    except OSError as exc:
        raise UserError(f"--env-file {path!r}: {exc.strerror}",
                        hint="give a readable dotenv file (KEY=VALUE lines)") from None
    if len(text) > MAX_ENV_FILE:
        raise UserError(f"--env-file {path!r} is over {MAX_ENV_FILE >> 20} MiB",
                        hint="put large data in a file under workdir or file_mounts")
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        where = f"{path}:{number}"
        if not sep:
            raise UserError(f"{line[:80]!r} is not KEY=VALUE", where=where,
                            hint="one KEY=VALUE per line; # starts a comment")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[check_env_name(key.strip(), where=where)] = value
    return out


MAX_ENV_FILE = 32 << 20  # as much as a job's envs and secrets together may hold


def parse_env(values: list[str] | None) -> dict[str, str]:
    """`--env KEY=VALUE` options as a dict."""
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--env {item[:80]!r} is not KEY=VALUE",
                            hint="write it as --env NAME=value")
        out[check_env_name(key, where="--env")] = value
    return out


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(rows: list[dict]) -> None:
    from skyhop.cli.render import print_rows

    print_rows(rows, title="")


def span(seconds: float) -> str:
    """A duration, short: '42s', '3m', '2.5h', '1.2d'."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def age(timestamp: float | None, now: float | None = None) -> str:
    """How long ago a Unix time was ('3m ago'), or '-' when there is none."""
    if not timestamp:
        return "-"
    return span((now if now is not None else time.time()) - timestamp) + " ago"
