"""Names, the paths built from them and the shell lines they reach: the rule, and what
the issue reproduced (a traversal or injection through a cluster name, a 5,000-character
name, a row with a bad name that blocked every command)."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, run_cli, use_home
from skyhop.errors import UserError
from skyhop.names import (
    InvalidNameError,
    check_env_name,
    check_name,
    check_pattern,
    path_under,
)

HELLO = "name: hello\nrun: echo hello from $SKYHOP_NODE_RANK\n"


@pytest.mark.parametrize("name", ["a", "dev-1", "My_cluster.v2", "x" * 63])
def test_good_names_pass(name):
    assert check_name(name, "cluster") == name


@pytest.mark.parametrize("name", ["", "1abc", "-a", ".a", "../..", "a/b", "x;id", "a b",
                                  "a\nb", "é", "x" * 64, "a" * 5000, "$(id)"])
def test_bad_names_are_user_errors_with_a_hint(name):
    with pytest.raises(InvalidNameError) as caught:
        check_name(name, "cluster")
    assert caught.value.exit_code == 2 and "letter first" in caught.value.hint
    assert len(caught.value.message) < 200  # a long name is cut short in the message


def test_patterns_allow_globs_over_name_characters_only():
    assert check_pattern("dev-*", "cluster") == "dev-*"
    assert check_pattern("run-[0-9]?", "cluster") == "run-[0-9]?"
    for bad in ("dev-*;rm", "*/..", "a b*"):
        with pytest.raises(InvalidNameError):
            check_pattern(bad, "cluster")


@pytest.mark.parametrize("name", ["A=B", "1BAD", "A B", "", "A-B", "a;b"])
def test_env_names_are_posix_names(name):
    with pytest.raises(UserError):
        check_env_name(name)
    assert check_env_name("_OK_1") == "_OK_1"


def test_path_under_refuses_escapes(tmp_path):
    assert path_under(tmp_path, "a", "node-0") == tmp_path / "a" / "node-0"
    (tmp_path / "link").symlink_to("/")
    for parts in (("..",), ("../x",), ("a", "../../x"), ("/etc",), ("link",), ("",),
                  ("a" * 300,)):
        with pytest.raises(InvalidNameError):
            path_under(tmp_path, *parts)


def test_local_provider_paths_stay_under_its_root(tmp_path):
    from skyhop.provision.providers.local import LocalProvider

    provider = LocalProvider(tmp_path / "local")
    with pytest.raises(InvalidNameError):
        provider.cluster_dir("../..")
    with pytest.raises(InvalidNameError):
        provider.teardown("../..")  # never a rmtree outside the root
    assert provider.node_dir("ok", 1) == tmp_path / "local" / "ok" / "node-1"


def test_task_file_names_are_checked_with_their_position():
    from skyhop.spec import parse_dag

    with pytest.raises(UserError) as caught:
        parse_dag("name: ../x\nrun: echo\n", "t.yaml")
    assert caught.value.where == "t.yaml:1:7" and caught.value.hint
    with pytest.raises(UserError) as caught:
        parse_dag("envs:\n  OK: 1\n  A=B: 2\nrun: echo\n", "t.yaml")
    assert caught.value.where == "t.yaml:3:3" and "'A=B'" in caught.value.message


def test_alias_bomb_is_refused():
    from skyhop.spec import parse_dag

    levels = [f"l0: &l0 [{', '.join(['lol'] * 9)}]"] + [
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]
    with pytest.raises(UserError) as caught:
        parse_dag("\n".join(levels) + "\nrun: echo\n", "bomb.yaml")
    assert "aliases" in caught.value.message and caught.value.where == "bomb.yaml:1:1"


def test_traversal_and_injection_names_create_nothing(tmp_path, monkeypatch):
    home = use_home(monkeypatch, tmp_path / "home")
    (tmp_path / "hello.yaml").write_text(HELLO)
    for name in ("../..", f"x;touch {tmp_path}/pwned;#", "a" * 5000):
        result = run_cli("launch", str(tmp_path / "hello.yaml"), "-c", name, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "hint:" in result.stderr
    assert not (tmp_path / "pwned").exists()
    assert not (home / "local").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.yaml"] + (
        ["home"] if home.exists() else [])


def _insert_bad_rows() -> list[str]:
    """Rows as an older skyhop left them, under names the rule now refuses."""
    from skyhop.state.clusters import ClusterStore

    store = ClusterStore()
    names = ["a" * 5000, "../..", "x;touch /tmp/x;#"]
    for name in names:
        assert store.reserve(name, provider="local", num_nodes=1, hourly_price=0.0,
                             owner="gone-host:1")
    store.update(names[0], status="TERMINATING")
    return names


def test_a_row_with_a_bad_name_does_not_block_other_commands(tmp_path, monkeypatch):
    home = use_home(monkeypatch, tmp_path / "home")
    (tmp_path / "hello.yaml").write_text(HELLO)
    up = run_cli("launch", str(tmp_path / "hello.yaml"), "-c", "good-1", "-d", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    _insert_bad_rows()
    outside = tmp_path / "outside"
    outside.mkdir()  # what `../..` would reach from the local root: must survive
    for argv in (["status", "--refresh"], ["gc"]):
        result = run_cli(*argv, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "not a valid cluster name" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    down = run_cli("down", "--all", "-y", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr
    status = run_cli("status", "--json", cwd=tmp_path)
    assert json.loads(status.stdout) == []
    assert outside.is_dir() and (home / "local").is_dir()
    assert not any((home / "local").iterdir())


def test_a_bad_row_can_be_named_by_down_and_nothing_else(tmp_path, monkeypatch):
    use_home(monkeypatch, tmp_path / "home")
    names = _insert_bad_rows()
    refused = run_cli("stop", names[1], cwd=tmp_path)
    assert refused.returncode == 2 and "hint:" in refused.stderr
    down = run_cli("down", names[1], "-y", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    left = {r["name"] for r in json.loads(run_cli("status", "--json").stdout)}
    assert left == {names[0], names[2]}


def test_patterns_still_select_clusters(tmp_path, monkeypatch):
    from skyhop.execute.operations import Operations
    from skyhop.state.clusters import ClusterStore

    use_home(monkeypatch, tmp_path / "home")
    store = ClusterStore()
    for name in ("dev-1", "dev-2", "prod"):
        store.reserve(name, provider="local", num_nodes=1, hourly_price=0.0)
        store.update(name, status="UP")
    _insert_bad_rows()
    ops = Operations()
    assert ops.select(["dev-*"]) == ["dev-1", "dev-2"]
    assert ops.select(["*"], status="UP") == ["dev-1", "dev-2", "prod"]  # bad rows left out
    assert len(ops.select([], everything=True, invalid_ok=True)) == 6


def test_a_home_with_shell_characters_still_launches(tmp_path, monkeypatch):
    """The agent's start line quotes its paths: a home folder with a space and a `;`."""
    use_home(monkeypatch, tmp_path / "my home;x")
    (tmp_path / "hello.yaml").write_text(HELLO)
    result = run_cli("launch", str(tmp_path / "hello.yaml"), "-c", "quoted", "--down",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hello from 0" in result.stdout


def test_local_node_count_is_capped_before_anything_is_created(tmp_path, monkeypatch):
    from skyhop.provision.providers.local import MAX_NODES

    home = use_home(monkeypatch, tmp_path / "home")
    task = tmp_path / "big.yaml"
    task.write_text("num_nodes: 1000000\nrun: echo\n")
    result = run_cli("launch", str(task), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{task}:1:12" in result.stderr and f"at most {MAX_NODES}" in result.stderr
    assert not (home / "local").exists()
    assert str(MAX_NODES) in (ROOT / "README.md").read_text()  # the cap is documented


def test_env_names_reaching_a_shell_are_refused_at_the_last_step():
    from skyhop.execute import remote

    assert b"export OK='a b'" in remote.script("true", {"OK": "a b"})
    with pytest.raises(ValueError):
        remote.script("true", {"A=B;id": "x"})
