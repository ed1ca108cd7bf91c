"""Bad input, swept: names, task files, flags, config and functions, each through the real
`skyhop` command (or an SDK script run as a user runs it) in a fresh SKYHOP_HOME. Every case
must end with exit code 2, exactly one message saying what, where and how to fix it, no
traceback, and nothing created: no cluster or job rows, no node folders, no processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, use_home

HELLO = "name: hello\nrun: echo hello\n"
BOMB = "".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)]
    + ["run: echo\n"])
LONG = "a" * 5000


@dataclass
class Case:
    id: str
    argv: list[str]  # {tmp} is the test's folder; a leading "sdk" runs python code instead
    where: str  # what the message must name: the file:line:col, the flag, the value
    files: dict[str, str] = field(default_factory=dict)
    config: str | None = None


def task(case_id: str, text: str, where: str, *extra: str) -> Case:
    return Case(case_id, ["launch", "{tmp}/task.yaml", *extra], where, {"task.yaml": text})


def pool_config(pool: str = "lab", host: str = "127.0.0.1", user: str = "me",
                port: str = "22") -> str:
    return (f"ssh_pools:\n  {pool}:\n    user: {user}\n    identity_file: ~/.ssh/id\n"
            f"    port: {port}\n    hosts: [{host}]\n")


def sdk(case_id: str, code: str, where: str) -> Case:
    return Case(case_id, ["sdk", code], where)


CASES = [
    # -- names given on the command line --------------------------------------------------
    Case("launch-traversal", ["launch", "{tmp}/hello.yaml", "-c", "../.."], "'../..'",
         {"hello.yaml": HELLO}),
    Case("launch-injection", ["launch", "{tmp}/hello.yaml", "-c", "x;touch {tmp}/pwned;#"],
         "cluster name 'x;touch", {"hello.yaml": HELLO}),
    Case("launch-5000-chars", ["launch", "{tmp}/hello.yaml", "-c", LONG], "5000 characters",
         {"hello.yaml": HELLO}),
    Case("launch-digit-first", ["launch", "{tmp}/hello.yaml", "-c", "1abc"], "'1abc'",
         {"hello.yaml": HELLO}),
    Case("launch-empty-name", ["launch", "{tmp}/hello.yaml", "-c", ""], "is empty",
         {"hello.yaml": HELLO}),
    Case("launch-space", ["launch", "{tmp}/hello.yaml", "-c", "a b"], "'a b'",
         {"hello.yaml": HELLO}),
    Case("launch-slash", ["launch", "echo hi", "-c", "a/b"], "'a/b'"),
    Case("exec-traversal", ["exec", "../..", "echo hi"], "'../..'"),
    Case("logs-traversal", ["logs", "../.."], "'../..'"),
    Case("queue-substitution", ["queue", "$(id)"], "'$(id)'"),
    Case("cancel-traversal", ["cancel", "../..", "--all"], "'../..'"),
    Case("ssh-injection", ["ssh", "x;id"], "'x;id'"),
    Case("autostop-traversal", ["autostop", "../..", "-i", "5"], "'../..'"),
    Case("stop-traversal", ["stop", "../.."], "'../..'"),
    Case("start-slash", ["start", "a/b"], "'a/b'"),
    Case("down-traversal", ["down", "../..", "-y"], "'../..'"),
    Case("down-bad-pattern", ["down", "dev-*;rm", "-y"], "'dev-*;rm'"),
    Case("jobs-name", ["jobs", "launch", "{tmp}/hello.yaml", "--name", "../x", "-d"], "--name",
         {"hello.yaml": HELLO}),
    # -- task files -------------------------------------------------------------------------
    task("yaml-syntax", "name: x\nrun: [echo\n", "task.yaml:3:1"),
    task("unknown-field", "name: x\nrunn: echo\n", "task.yaml:2:1"),
    task("bad-gpu", "resources:\n  accelerators: NOPE:1\nrun: x\n", "task.yaml:2:17"),
    task("impossible", "resources:\n  cpus: 100000+\nrun: x\n", "task.yaml:2:"),
    task("task-name", "name: a;b\nrun: x\n", "task.yaml:1:7"),
    task("task-name-long", f"name: {LONG}\nrun: x\n", "task.yaml:1:7"),
    task("env-digit-first", "envs:\n  GOOD: 1\n  1BAD: 2\nrun: x\n", "task.yaml:3:3"),
    task("env-equals", "envs:\n  A=B: 1\nrun: x\n", "task.yaml:2:3"),
    task("secret-space", "secrets:\n  \"A B\": 1\nrun: x\n", "task.yaml:2:3"),
    task("alias-bomb", BOMB, "task.yaml:1:1"),
    task("recursive-alias", "a: &a [*a]\nrun: x\n", "task.yaml:1:4"),
    task("huge-num-nodes", "num_nodes: 1000000\nrun: x\n", "task.yaml:1:12"),
    task("zero-num-nodes", "num_nodes: 0\nrun: x\n", "task.yaml:1:12"),
    task("word-num-nodes", "num_nodes: two\nrun: x\n", "task.yaml:1:12"),
    task("duplicate-key", "run: x\nrun: y\n", "task.yaml:2:1"),
    task("pipeline-name", "name: ../p\n---\nname: a\nrun: x\n---\nname: b\nrun: y\n",
         "task.yaml:1:7"),
    task("not-a-mapping", "[1, 2]\n", "task.yaml"),
    task("empty-file", "", "task.yaml"),
    Case("pipeline-cluster-name-too-long",
         ["launch", "{tmp}/task.yaml", "-c", "c" * 60],
         "task.yaml:3:7", {"task.yaml": "name: p\n---\nname: train\nrun: x\n---\n"
                                        "name: evaluate\nrun: y\n"}),
    Case("missing-file", ["launch", "{tmp}/nope.yaml"], "nope.yaml"),
    Case("jobs-bad-env-in-file", ["jobs", "launch", "{tmp}/task.yaml", "-d"], "task.yaml:2:3",
         {"task.yaml": "envs:\n  A-B: 1\nrun: x\n"}),
    # -- flags ------------------------------------------------------------------------------
    Case("negative-idle", ["launch", "{tmp}/hello.yaml", "-i", "-5"], "-5",
         {"hello.yaml": HELLO}),
    Case("env-no-equals", ["launch", "{tmp}/hello.yaml", "--env", "NOEQUALS"], "--env",
         {"hello.yaml": HELLO}),
    Case("env-digit-first-flag", ["launch", "{tmp}/hello.yaml", "--env", "1BAD=x"], "--env",
         {"hello.yaml": HELLO}),
    Case("env-space-flag", ["exec", "dev", "echo", "--env", "A B=x"], "--env"),
    Case("jobs-env-flag", ["jobs", "launch", "{tmp}/hello.yaml", "--env", "A;B=1", "-d"],
         "--env", {"hello.yaml": HELLO}),
    Case("unknown-infra", ["launch", "{tmp}/hello.yaml", "--infra", "nowhere"], "--infra",
         {"hello.yaml": HELLO}),
    Case("infra-too-deep", ["launch", "{tmp}/hello.yaml", "--infra", "local/a/b/c"],
         "--infra", {"hello.yaml": HELLO}),
    # -- config -----------------------------------------------------------------------------
    Case("pool-name", ["launch", "{tmp}/hello.yaml"], "config.yaml:2:3",
         {"hello.yaml": HELLO}, pool_config(pool="'../lab'")),
    Case("pool-host-option", ["launch", "{tmp}/hello.yaml"], "config.yaml:6:",
         {"hello.yaml": HELLO}, pool_config(host="'-oProxyCommand=touch {tmp}/pwned'")),
    Case("pool-user", ["launch", "{tmp}/hello.yaml"], "config.yaml:6:",
         {"hello.yaml": HELLO}, pool_config(user="'a;b'")),
    Case("pool-port", ["launch", "{tmp}/hello.yaml"], "config.yaml:6:",
         {"hello.yaml": HELLO}, pool_config(port="lots")),
    Case("pool-no-hosts", ["launch", "{tmp}/hello.yaml"], "config.yaml:3:5",
         {"hello.yaml": HELLO}, "ssh_pools:\n  lab:\n    user: me\n"),
    Case("config-alias-bomb", ["launch", "{tmp}/hello.yaml"], "config.yaml:1:1",
         {"hello.yaml": HELLO}, BOMB),
    Case("config-syntax", ["launch", "{tmp}/hello.yaml"], "config.yaml:2:",
         {"hello.yaml": HELLO}, "ssh_pools: [\n"),
    # -- functions and the SDK --------------------------------------------------------------
    sdk("compute-traversal", "skyhop.Compute(name='../x')", "skyhop.Compute(name=...)"),
    sdk("compute-long-name", f"skyhop.Compute(name='{LONG}')", "skyhop.Compute(name=...)"),
    sdk("compute-zero-nodes", "skyhop.Compute(nodes=0)", "nodes"),
    sdk("compute-huge-nodes", "skyhop.Compute(nodes=10**6).__enter__()", "num_nodes"),
    sdk("compute-env-name", "skyhop.Compute(env={'A=B': 'x'})", "skyhop.Compute(env=...)"),
    sdk("compute-bad-gpu", "skyhop.Compute(accelerators='NOPE:1').__enter__()", "NOPE"),
    sdk("compute-spec", "skyhop.Compute('aws')", "skyhop.Spec"),
    sdk("sdk-launch-name", "skyhop.launch('echo hi', cluster_name='../..')", "'../..'"),
    sdk("sdk-exec-name", "skyhop.exec('x;id', 'echo hi')", "'x;id'"),
    sdk("sdk-down-name", "skyhop.down('../..')", "'../..'"),
    sdk("sdk-env-name", "skyhop.launch('echo hi', env={'A=B': '1'})", "env"),
]

# An SDK script as a user writes one: errors are printed as the CLI prints them.
SDK_SCRIPT = textwrap.dedent("""
    import sys
    import skyhop
    from skyhop.errors import UserError
    try:
        {code}
    except UserError as exc:
        sys.stderr.write(f"error: {{exc}}\\n")
        sys.exit(exc.exit_code)
""")


def _rows(db: Path, table: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:  # the table was never made
            return 0


def test_the_sweep_is_large_enough():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, tmp_path, monkeypatch):
    from skyhop.execute.runner import processes_marked

    home = use_home(monkeypatch, tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    for name, text in case.files.items():
        (work / name).write_text(text.replace("{tmp}", str(work)))
    if case.config is not None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.yaml").write_text(case.config.replace("{tmp}", str(work)))
    argv = [a.replace("{tmp}", str(work)) for a in case.argv]
    if argv[0] == "sdk":
        result = subprocess.run(
            [sys.executable, "-c", SDK_SCRIPT.format(code=argv[1])], cwd=work,
            capture_output=True, text=True, timeout=120)
    else:
        result = run_cli(*argv, cwd=work)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    assert result.stderr.count("error:") == 1, out  # one message
    assert case.where in result.stderr, out  # where (or what) it is
    assert "hint:" in result.stderr, out  # how to fix it
    # nothing created, nothing left running
    db = home / "state.db"
    assert _rows(db, "clusters") == 0 and _rows(db, "managed_jobs") == 0
    local = home / "local"
    assert not local.exists() or not any(local.iterdir())
    assert not (work / "pwned").exists()
    assert processes_marked(str(home)) == []
    assert not any(ROOT.parent.glob("node-*"))
