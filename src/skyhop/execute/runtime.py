"""skyhop's node-side code, shipped to machines that do not have skyhop installed.

The agent and the SSH bridge use only the standard library, so the node needs nothing but
`python3`: the client zips its own `skyhop` package (Python's zipimport runs it), uploads it
once per version under `~/.skyhop/runtime/`, and runs `python3` with it on PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import skyhop

REMOTE_DIR = ".skyhop/runtime"
MIN_PYTHON = (3, 8)


def package_zip() -> tuple[str, bytes]:
    """(content hash, zip bytes) of the skyhop package's Python files."""
    root = Path(skyhop.__file__).parent
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            data = path.read_bytes()
            name = "skyhop/" + path.relative_to(root).as_posix()
            digest.update(name.encode() + b"\0" + data)
            # fixed timestamps: the same code gives the same zip
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
        # zipimport has no namespace packages: every folder needs an __init__.py
        folders = {p.parent for p in files} - {p.parent for p in files if p.name == "__init__.py"}
        for folder in sorted(folders):
            name = "skyhop/" + (folder.relative_to(root) / "__init__.py").as_posix()
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), b"")
        # Function workers unpickle with cloudpickle (pure Python): nodes get this client's
        # copy, so both ends always agree on its version.
        for name, data in _vendored("cloudpickle"):
            digest.update(name.encode() + b"\0" + data)
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return digest.hexdigest()[:16], buffer.getvalue()


def _vendored(package: str) -> list[tuple[str, bytes]]:
    """(name in the zip, contents) of an installed pure-Python package; [] without it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return [(f"{package}/{path.relative_to(root).as_posix()}", path.read_bytes())
            for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts]


_cache: tuple[str, bytes] | None = None


def ensure(runner: Any) -> str:
    """Upload the runtime if the node lacks this version; returns the python command."""
    global _cache
    if _cache is None:
        _cache = package_zip()
    digest, data = _cache
    path = f"~/{REMOTE_DIR}/skyhop-{digest}.zip"
    code, out = runner.output_of(
        "command -v python3 >/dev/null || exit 7; "
        f"python3 -c 'import sys; print(sys.version_info >= {MIN_PYTHON!r})'; "
        f"test -f {path} || exit 8")
    if code == 7 or out.strip().startswith("False"):
        from skyhop.errors import UserError

        raise UserError(f"{runner.label}: " + ("python3 is not installed" if code == 7 else
                                               "its python3 is older than 3.8"),
                        hint="skyhop's node agent needs python3 >= 3.8 on the machine")
    if code == 8:
        runner.write_file(path, data, mode=0o644)
    return f"env PYTHONPATH={path} python3"
