"""The SSH runner against a real OpenSSH server in a network namespace."""

import os
import shlex

import pytest

import sshhosts
from skyhop.errors import UserError
from skyhop.execute.ssh_runner import SSHRunner, Unreachable

pytestmark = pytest.mark.skipif(sshhosts.unavailable_reason() is not None,
                                reason=str(sshhosts.unavailable_reason()))

ADDRESS = "10.213.0.31"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with sshhosts.SSHHosts(tmp_path_factory.mktemp("ssh")) as pool:
        pool.add(ADDRESS)
        yield pool


def runner(hosts, known_hosts, address=ADDRESS) -> SSHRunner:
    return SSHRunner(address, sshhosts.USER, hosts.client_key, known_hosts=known_hosts)


def test_run_streams_output_passes_env_and_returns_the_exit_code(hosts, tmp_path):
    r = runner(hosts, tmp_path / "known_hosts")
    lines: list[str] = []
    code = r.run("echo $GREETING from $(hostname); echo err >&2; exit 3",
                 env={"GREETING": "it's \"quoted\" $HOME"}, output=lines.append)
    assert code == 3
    assert lines[0] == f"it's \"quoted\" $HOME from {hosts.hosts[ADDRESS].namespace}\n"
    assert "err\n" in lines
    assert r.home == f"/home/{sshhosts.USER}" and r.resolve("~/x") == r.home + "/x"
    # A finished command leaves no process-group record (a stale one could later name
    # someone else's processes).
    pids = hosts.hosts[ADDRESS].home / ".skyhop" / "pids"
    assert not pids.exists() or list(pids.iterdir()) == []


@pytest.mark.parametrize("use_rsync", [True, False])
def test_copy_list_and_remove_files(hosts, tmp_path, monkeypatch, use_rsync):
    r = runner(hosts, tmp_path / "known_hosts")
    if not use_rsync:
        monkeypatch.setattr(SSHRunner, "_has_rsync", lambda self: False)
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "pkg" / "b.py").write_text("print('b')\n")
    dst = f"~/copy-{use_rsync}"
    r.copy_files(src, ["a.txt", "pkg/b.py"], dst)
    listed = r.list_files(dst)
    assert set(listed) == {"a.txt", "pkg/b.py"}
    for rel, (size, mtime_ns) in listed.items():
        st = (src / rel).stat()
        assert size == st.st_size
        assert abs(mtime_ns - st.st_mtime_ns) < 1_000_000_000  # modification time kept
    home = hosts.hosts[ADDRESS].home
    assert (home / f"copy-{use_rsync}" / "pkg" / "b.py").read_text() == "print('b')\n"
    r.remove_files(dst, ["a.txt"])
    assert set(r.list_files(dst)) == {"pkg/b.py"}


def test_the_tar_fallback_streams_big_files_and_reports_a_failing_target(hosts, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(SSHRunner, "_has_rsync", lambda self: False)
    r = runner(hosts, tmp_path / "known_hosts")
    data = os.urandom(5 * 1024 * 1024 + 123)  # several 1 MiB writes, each drained
    (tmp_path / "big.bin").write_bytes(data)
    r.copy_files(tmp_path, ["big.bin"], "~/streamed")
    assert (hosts.hosts[ADDRESS].home / "streamed" / "big.bin").read_bytes() == data
    with pytest.raises(UserError) as err:  # a target that cannot be a directory
        r.copy_files(tmp_path, ["big.bin"], "~/streamed/big.bin")
    assert "copying files failed" in err.value.message


ODD_NAMES = ["a\nb.txt", "d\n../keep.txt", " spaced name.txt", "-dash.txt", "ünïcødé.txt",
             "tab\tname\t1\t2", "--files-from=x"]


@pytest.mark.parametrize("use_rsync", [True, False])
def test_any_file_name_syncs_and_never_removes_outside_the_folder(hosts, tmp_path,
                                                                  monkeypatch, use_rsync):
    from skyhop.execute import sync

    r = runner(hosts, tmp_path / "known_hosts")
    if not use_rsync:
        monkeypatch.setattr(SSHRunner, "_has_rsync", lambda self: False)
    src = tmp_path / "src"
    for name in ODD_NAMES:  # "d\n.." is a folder: its file's path holds "\n../keep.txt"
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(f"content of {name!r}")
    home = hosts.hosts[ADDRESS].home
    victim = home / "keep.txt"  # outside the synced folder, where "../keep.txt" points
    victim.write_text("must stay")
    dst = f"odd-{use_rsync}"
    first = sync.sync_dir(r, src, f"~/{dst}")
    assert first.copied == len(ODD_NAMES) and first.removed == 0
    assert set(r.list_files(f"~/{dst}")) == set(ODD_NAMES)
    for name in ODD_NAMES:
        assert (home / dst / name).read_text() == f"content of {name!r}"
    second = sync.sync_dir(r, src, f"~/{dst}")
    assert (second.copied, second.removed, second.unchanged) == (0, 0, len(ODD_NAMES))
    assert victim.read_text() == "must stay"
    (src / "-dash.txt").unlink()  # a removal reaches only that file
    third = sync.sync_dir(r, src, f"~/{dst}")
    assert (third.copied, third.removed) == (0, 1)
    assert not (home / dst / "-dash.txt").exists() and victim.exists()


@pytest.mark.parametrize("use_rsync", [True, False])
def test_unchanged_files_are_not_copied_again(hosts, tmp_path, monkeypatch, use_rsync):
    from skyhop.execute import sync

    r = runner(hosts, tmp_path / "known_hosts")
    if not use_rsync:
        monkeypatch.setattr(SSHRunner, "_has_rsync", lambda self: False)
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "pkg" / "b.py").write_text("b")
    os.utime(src / "a.txt", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    dst = f"~/same-{use_rsync}"
    assert sync.sync_dir(r, src, dst).copied == 2
    node = hosts.hosts[ADDRESS].home / f"same-{use_rsync}"
    for rel in ("a.txt", "pkg/b.py"):  # the modification time arrives to the nanosecond
        assert (node / rel).stat().st_mtime_ns == (src / rel).stat().st_mtime_ns
    before = {rel: (node / rel).stat().st_ctime_ns for rel in ("a.txt", "pkg/b.py")}
    again = sync.sync_dir(r, src, dst)
    assert (again.copied, again.unchanged) == (0, 2)
    assert {rel: (node / rel).stat().st_ctime_ns for rel in before} == before
    (src / "a.txt").write_text("alpha2")
    assert sync.sync_dir(r, src, dst).copied == 1
    assert (node / "a.txt").read_text() == "alpha2"


@pytest.mark.parametrize("use_rsync", [True, False])
def test_a_single_file_takes_its_node_name_on_the_node(hosts, tmp_path, monkeypatch,
                                                       use_rsync):
    from skyhop.execute import sync

    r = runner(hosts, tmp_path / "known_hosts")
    if not use_rsync:
        monkeypatch.setattr(SSHRunner, "_has_rsync", lambda self: False)
    local = tmp_path / "-y.cfg"
    local.write_text("Y")
    st = local.stat()
    remote = f"~/conf {use_rsync}/x.cfg"
    assert sync.sync_file(r, local, remote) is True
    node = hosts.hosts[ADDRESS].home / f"conf {use_rsync}"
    assert [p.name for p in node.iterdir()] == ["x.cfg"]
    assert (node / "x.cfg").read_text() == "Y"
    assert local.read_text() == "Y" and local.stat().st_ino == st.st_ino
    assert sync.sync_file(r, local, remote) is False  # unchanged: not sent again
    assert r.file_meta(remote) == (st.st_size, st.st_mtime_ns)
    assert r.file_meta("~/no-such-file") is None


def test_a_changed_host_key_is_refused_with_a_fix(hosts, tmp_path):
    known = tmp_path / "known_hosts"
    address = "10.213.0.32"
    hosts.add(address)
    runner(hosts, known, address).check()
    assert address in known.read_text()
    runner(hosts, known, address).close()
    hosts.remove(address)
    hosts.add(address)  # a new machine (new host key) at the same address
    with pytest.raises(Unreachable) as err:
        runner(hosts, known, address).check()
    assert "host key changed" in err.value.message and str(known) in err.value.hint
    hosts.remove(address)


def test_an_unreachable_host_is_a_clear_error(hosts, tmp_path):
    with pytest.raises(Unreachable) as err:
        runner(hosts, tmp_path / "kh", "10.213.0.99").check()
    assert "cannot reach" in err.value.message and "port 22" in err.value.hint


def test_a_refused_key_says_which_key(hosts, tmp_path):
    other = tmp_path / "other_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    with pytest.raises(Unreachable) as err:
        SSHRunner(ADDRESS, sshhosts.USER, other, known_hosts=tmp_path / "kh").check()
    assert str(other) in err.value.message and "refused" in err.value.message


def test_an_agent_whose_machine_vanishes_is_unreachable_not_a_crash(hosts, tmp_path):
    """The managed-job controller counts `Unreachable` toward declaring nodes lost: a
    connection lost mid-request, and the dead address after it, must both be that."""
    import threading

    from skyhop import errors
    from skyhop.execute.agent import socket_path
    from skyhop.execute.agent_client import AgentClient, AgentUnreachable

    address = "10.213.0.33"
    hosts.add(address)
    r = runner(hosts, tmp_path / "kh", address)
    agent_dir = tmp_path / "vanishing"
    agent_dir.mkdir()
    name = socket_path(str(agent_dir))
    # an "agent" that takes the request and never answers
    listener = ("import socket, time; s = socket.socket(socket.AF_UNIX); "
                f"s.bind({name!r}); s.listen(); c, _ = s.accept(); time.sleep(600)")
    assert r.run(f"nohup python3 -c {shlex.quote(listener)} >/dev/null 2>&1 &") == 0
    client = AgentClient("vanishing", str(agent_dir), r.connect_agent, token="t")
    threading.Timer(1.0, hosts.remove, [address]).start()
    with pytest.raises(AgentUnreachable):
        client.queue()  # in flight when the machine goes
    with pytest.raises(errors.Unreachable):
        client.queue()  # and nothing answers at that address any more
