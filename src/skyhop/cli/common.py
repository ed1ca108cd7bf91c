"""What every CLI command module shares: common options, `--env` parsing, JSON and table
output, and one way to write ages and durations. Kept light (no rich at import): the
fast commands (`--help`, `status`) import it."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from skyhop.errors import UserError
from skyhop.names import check_env_name

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
EnvOption = Annotated[list[str] | None, typer.Option(
    "--env", help="Set an env var or secret: KEY=VALUE (repeatable).")]


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
