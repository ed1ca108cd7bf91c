"""Workdir and file-mount sync: send only what changed, honour .skyignore / .gitignore.

As in SkyPilot, a `.skyignore` in the workdir replaces `.gitignore`; `.git/` is never sent.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skyhop.errors import UserError
from skyhop.execute.runner import WORKDIR, Runner

if TYPE_CHECKING:
    from skyhop.spec.task import Task


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
            try:
                st = (Path(dirpath) / name).stat()
            except FileNotFoundError:  # a dangling symbolic link: nothing to send
                continue
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


def sync_file(runner: Runner, local: Path, remote: str) -> bool:
    """Copy one file to the node path `remote` unless it is there unchanged (same size and
    modification time); the node names it, whatever the local name. True when copied."""
    st = local.stat()
    if runner.file_meta(remote) == (st.st_size, st.st_mtime_ns):
        return False
    runner.put_file(local, remote)
    return True


def sync_file_mounts(runner: Runner, mounts: dict[str, object]) -> SyncResult:
    """Local sources only (`/remote/path: /local/path`); bucket mounts come with storage."""
    total = SyncResult(0, 0, 0)
    for remote, source in mounts.items():
        local = _mount_source(remote, source)
        if local.is_dir():
            result = sync_dir(runner, local, remote)
            total.copied += result.copied
            total.removed += result.removed
            total.unchanged += result.unchanged
        elif sync_file(runner, local, remote):
            total.copied += 1
        else:
            total.unchanged += 1
    return total


def _mount_source(remote: str, source: object) -> Path:
    """The local file or folder a mount copies (UserError when it cannot)."""
    if not isinstance(source, str) or "://" in source:
        raise UserError(f"file_mounts[{remote!r}]: only local paths are supported so far",
                        hint="object-store mounts arrive with the storage layer")
    local = Path(source).expanduser()
    if not (local.is_dir() or local.is_file()):
        raise UserError(f"file_mounts[{remote!r}]: {source!r} does not exist"
                        + ("" if local.is_absolute() else f" (in {os.getcwd()})"),
                        hint="give an existing local file or folder; relative paths start "
                             "at the current directory")
    return local


def check_task_files(task: Task, providers: Iterable[object] = ()) -> None:
    """Before anything is provisioned: the workdir and every file-mount source exist, and
    every mount target is a path the providers can give (a provider with
    `check_node_path`, such as the local one, says which it cannot)."""
    if task.workdir:
        workdir = Path(task.workdir).expanduser()
        if not workdir.is_dir():
            what = "is not a directory" if workdir.exists() else "does not exist"
            raise UserError(f"workdir {task.workdir!r} {what}"
                            + ("" if workdir.is_absolute() else f" (in {os.getcwd()})"),
                            where=task.where("workdir"),
                            hint="give an existing local folder; relative paths start at "
                                 "the current directory")
    for remote, source in task.file_mounts.items():
        try:
            if not isinstance(remote, str) or not remote.strip():
                raise UserError(f"file_mounts: {remote!r} is not a node path",
                                hint="write `/path/on/node: local/path`")
            _mount_source(remote, source)
            for provider in providers:
                check = getattr(provider, "check_node_path", None)
                if check is not None:
                    check(remote)
        except UserError as exc:
            exc.where = exc.where or task.where("file_mounts", remote)
            raise


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
