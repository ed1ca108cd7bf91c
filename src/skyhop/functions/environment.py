"""A pool's environment on each node, and the command that starts its worker.

- the interpreter: on local nodes this client's own Python (or `python=`, with skyhop's
  runtime zip on its path); on remote nodes `python3` (or `python=`) with the runtime zip,
  which carries skyhop's node side and cloudpickle
- `apt`: installed with apt-get on remote nodes (a local pool uses this machine as it is)
- `pip`: installed with `pip install --target` into a directory keyed by the interpreter
  and the requirement list, kept between pools (remote: under ~/.skyhop/runtime, which node
  cleanup keeps; local: under $SKYHOP_HOME/functions/pip), so a warm pool skips it
- `include`: local files and folders copied (only what changed) to the node's code folder
  (`~/.skyhop/functions/code`, before pip runs), which goes on sys.path; a local pool
  links them instead
- `env`: set in the worker before any call
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyhop import paths
from skyhop.errors import UserError
from skyhop.execute import runtime
from skyhop.execute.runner import LocalRunner
from skyhop.names import check_env_name

CODE_DIR = "~/.skyhop/functions/code"
WORKER = "-m skyhop.functions.worker"


@dataclass
class Environment:
    pip: list[str] = field(default_factory=list)
    apt: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    include: list[Path] = field(default_factory=list)
    python: str | None = None

    def validate(self) -> None:
        for name, value in (("pip", self.pip), ("apt", self.apt)):
            if not all(isinstance(v, str) and v.strip() for v in value):
                raise UserError(f"skyhop.Compute: {name} must be a list of package names",
                                hint=f"{name}=['name', ...]")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise UserError("skyhop.Compute: env must map names to strings",
                            hint="env={'HF_HOME': '/data/hf'}")
        for key in self.env:
            check_env_name(key, where="skyhop.Compute(env=...)")
        for path in self.include:
            if not path.exists():
                raise UserError(f"skyhop.Compute: include: {str(path)!r} does not exist",
                                hint="include local files or folders, e.g. include=['src/mypkg']")


@dataclass
class NodeSetup:
    """What a node's worker is started with."""

    command: str
    sys_path: list[str]
    env: dict[str, str]


def _local_runtime() -> str:
    """The runtime zip on this machine, for a local pool on another interpreter."""
    if runtime._cache is None:
        runtime._cache = runtime.package_zip()
    digest, data = runtime._cache
    path = paths.home() / "runtime" / f"skyhop-{digest}.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return str(path)


def python_command(runner: Any, python: str | None) -> str:
    if isinstance(runner, LocalRunner):
        if python is None:
            return shlex.quote(sys.executable)
        return f"env PYTHONPATH={shlex.quote(_local_runtime())} {shlex.quote(python)}"
    command = runner.python()  # uploads the runtime zip once per version
    if python is not None:
        command = command.rsplit(" ", 1)[0] + " " + shlex.quote(python)
    return command


def pip_key(python: str, packages: list[str]) -> str:
    """The install's identity: the interpreter (not skyhop's runtime version) and the list."""
    interpreter = python.rsplit(" ", 1)[-1]
    return hashlib.sha256(json.dumps([interpreter, packages]).encode()).hexdigest()[:16]


def install_pip(runner: Any, python: str, packages: list[str], label: str) -> str:
    """Install the packages for this interpreter once; returns the directory."""
    key = pip_key(python, packages)
    target = (str(paths.home() / "functions" / "pip" / key) if isinstance(runner, LocalRunner)
              else runner.resolve(f"~/{runtime.REMOTE_DIR}/pip-{key}"))
    quoted = shlex.quote(target)
    args = " ".join(_node_quote(p) for p in packages)
    lines: list[str] = []
    code = runner.run(
        f"test -f {quoted}/.complete && exit 0; rm -rf {quoted}; "
        f"{python} -m pip install --quiet --disable-pip-version-check --target {quoted} "
        f"{args} && touch {quoted}/.complete", cwd="~", output=lines.append)
    if code != 0:
        tail = "".join(lines).strip()[-1500:]
        raise UserError(f"{label}: pip install {' '.join(packages)} failed (exit code {code})"
                        + (f":\n{tail}" if tail else ""),
                        hint="check the names and versions; a node installs from the package "
                             "indexes its own pip is configured for")
    return target


def _node_quote(arg: str) -> str:
    """Quoted for the node's shell, keeping a leading `~/` (the node's home) live."""
    return "~/" + shlex.quote(arg[2:]) if arg.startswith("~/") else shlex.quote(arg)


def install_apt(runner: Any, packages: list[str], label: str) -> None:
    args = " ".join(shlex.quote(p) for p in packages)
    lines: list[str] = []
    code = runner.run(
        f'if [ "$(id -u)" = 0 ]; then s=; else s="sudo -n"; fi; '
        f"DEBIAN_FRONTEND=noninteractive $s apt-get install -y -q {args} >/dev/null "
        f"|| {{ $s apt-get update -q >/dev/null && "
        f"DEBIAN_FRONTEND=noninteractive $s apt-get install -y -q {args}; }}",
        cwd="~", output=lines.append)
    if code != 0:
        tail = "".join(lines).strip()[-1500:]
        raise UserError(f"{label}: apt-get install {' '.join(packages)} failed "
                        f"(exit code {code})" + (f":\n{tail}" if tail else ""),
                        hint="apt needs root or passwordless sudo on the node")


def install_code(runner: Any, include: list[Path]) -> str:
    """The node's code folder holding the included files and folders."""
    code_dir = runner.resolve(CODE_DIR)
    if isinstance(runner, LocalRunner):  # same machine: link, so edits show up at once
        root = Path(code_dir)
        root.mkdir(parents=True, exist_ok=True)
        for path in include:
            link = root / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
        return code_dir
    from skyhop.execute import sync

    for path in include:
        if path.is_dir():
            sync.sync_dir(runner, path.resolve(), f"{CODE_DIR}/{path.name}")
        else:
            runner.copy_files(path.resolve().parent, [path.name], code_dir)
    return code_dir


def prepare(runner: Any, environment: Environment, label: str,
            pip_dir: str | None = None) -> NodeSetup:
    """Make the node ready for its worker (apt, code, pip), in this order."""
    python = python_command(runner, environment.python)
    local = isinstance(runner, LocalRunner)
    if environment.apt and not local:
        install_apt(runner, environment.apt, label)
    sys_path: list[str] = []
    if environment.include:  # first: pip may install wheels that came this way
        sys_path.append(install_code(runner, environment.include))
    if environment.pip:
        sys_path.insert(0, pip_dir or install_pip(runner, python, environment.pip, label))
    if local and environment.python is None:
        # this machine's code is that node's code: what imports here imports there
        sys_path += [p for p in sys.path if p and Path(p).is_dir()]
    return NodeSetup(f"{python} {WORKER}", sys_path, dict(environment.env))
