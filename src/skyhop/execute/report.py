"""How the executor tells the user what happens: stages and streamed output.

The library calls a `Reporter`; the CLI passes one that draws with rich, the SDK a plain one.
Job output goes to stdout, stages to stderr, so `skyhop launch ... > out.txt` keeps only
the job's output.
"""

from __future__ import annotations

import sys
from typing import Protocol


class Reporter(Protocol):
    def stage(self, name: str, detail: str = "") -> None: ...

    def output(self, text: str) -> None: ...


class PlainReporter:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def stage(self, name: str, detail: str = "") -> None:
        if not self.quiet:
            sys.stderr.write(f"[{name}] {detail}\n")
            sys.stderr.flush()

    def output(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()


class SilentReporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, name: str, detail: str = "") -> None:
        pass

    def output(self, text: str) -> None:
        self.lines.append(text)
