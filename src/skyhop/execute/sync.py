"""Workdir and file-mount sync: send only what changed, honour .skyignore / .gitignore.

As in SkyPilot, a `.skyignore` in the workdir replaces `.gitignore`; `.git/` is never sent.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from skyhop.errors import UserError
from skyhop.execute.runner import WORKDIR, Runner


@dataclass
class SyncResult:
    copied: int
    removed: int
    unchanged: int


def _ignore_spec(root: Path):
    import pathspec

    lines = [".git/"]
    for name in (".skyignore", ".gitignore"):
        path = root / name
        if path.is_file():
            lines += path.read_text(errors="replace").splitlines()
            break
    return pathspec.PathSpec.from_lines("gitignore", lines)


def local_files(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of the files to send from `root`."""
    spec = _ignore_spec(root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not spec.match_file(f"{rel_dir}{d}/")]
        for name in filenames:
            rel = f"{rel_dir}{name}"
            if spec.match_file(rel):
                continue
            st = (Path(dirpath) / name).stat()
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def sync_dir(runner: Runner, src: Path, dst: str) -> SyncResult:
    """Make `dst` on the node mirror `src` (after ignores), copying only changed files."""
    if not src.is_dir():
        raise UserError(f"workdir {str(src)!r} is not a directory")
    want = local_files(src)
    have = runner.list_files(dst)
    changed = [p for p, meta in want.items() if have.get(p) != meta]
    stale = [p for p in have if p not in want]
    if changed:
        runner.copy_files(src, changed, dst)
    if stale:
        runner.remove_files(dst, stale)
    return SyncResult(len(changed), len(stale), len(want) - len(changed))


def sync_workdir(runner: Runner, workdir: str | None) -> SyncResult | None:
    if not workdir:
        return None
    return sync_dir(runner, Path(workdir).expanduser().resolve(), f"~/{WORKDIR}")


def sync_file_mounts(runner: Runner, mounts: dict[str, object]) -> None:
    """Local sources only (`/remote/path: /local/path`); bucket mounts come with storage."""
    for remote, source in mounts.items():
        if not isinstance(source, str) or "://" in source:
            raise UserError(f"file_mounts[{remote!r}]: only local paths are supported so far",
                            hint="object-store mounts arrive with the storage layer")
        local = Path(source).expanduser()
        if local.is_dir():
            sync_dir(runner, local, remote)
        elif local.is_file():
            target = Path(runner.resolve(remote))
            runner.copy_files(local.parent, [local.name], str(target.parent))
            if target.name != local.name:
                os.replace(target.parent / local.name, target)
        else:
            raise UserError(f"file_mounts[{remote!r}]: {source!r} does not exist")


def content_hash(*parts: str, workdir: str | None = None) -> str:
    """Identity of a setup: its text, environment and workdir contents (names+sizes+mtimes)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    if workdir:
        root = Path(workdir).expanduser().resolve()
        if root.is_dir():
            for rel, meta in sorted(local_files(root).items()):
                h.update(f"{rel}:{meta[0]}:{meta[1]}\n".encode())
    return h.hexdigest()
