"""The function API on the local provider: dispatch operators, values and errors across the
wire, output, timeouts and retries, the environment, multi-node rendezvous, and the
ephemeral guarantees (exit, exception, Ctrl-C, SIGKILL of the client)."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

import skyhop
from conftest import ROOT, use_home
from skyhop.errors import UserError
from skyhop.execute.runner import processes_marked
from skyhop.functions.compute import VersionMismatchWarning
from skyhop.functions.errors import RemoteError, WorkerLostError


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated SKYHOP_HOME; afterwards no cluster is left and nothing runs."""
    home = use_home(monkeypatch, tmp_path / "home")
    yield home
    assert clusters(home) == []
    assert processes_marked(f"{home}/") == []


def clusters(home: Path) -> list[str]:
    db = home / "state.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM clusters")]


def assert_gone(home: Path, pool) -> None:
    assert clusters(home) == []
    assert processes_marked(f"{home}/") == []
    assert not (home / "local" / pool.name).exists()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """One 2-node pool for the tests that only send calls."""
    from skyhop.state import db

    home = tmp_path_factory.mktemp("shared") / "home"
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, home)
        with skyhop.Compute(infra="local", nodes=2, env={"GREETING": "hi there"},
                            quiet=True) as compute:
            yield compute
        assert clusters(home) == []
    db.engine_for.cache_clear()


@skyhop.function
def add(a, b):
    return a + b


@skyhop.function
def whoami():
    info = skyhop.instance_info()
    return {"rank": info.rank, "nodes": info.node_count, "pid": os.getpid(),
            "greeting": os.environ.get("GREETING"), "head": info.head_addr}


@skyhop.function
def echo(value):
    return value


@skyhop.function
def shout(text):
    print(f"out: {text}")
    print(f"err: {text}", file=sys.stderr)
    return len(text)


class Oops(Exception):
    pass


@skyhop.function
def fail(message):
    raise Oops(message)


@skyhop.function
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


# -- dispatch ------------------------------------------------------------------------------
def test_operators(pool):
    assert add(1, 2) >> pool == 3
    ranks = [r["rank"] for r in whoami() @ pool]
    assert ranks == [0, 1]
    future = add(3, 4) > pool
    assert future.result(timeout=30) == 7
    assert (add(1, 1) & add(2, 2) & add(3, 3)) >> pool == (2, 4, 6)
    assert skyhop.gather(*[add(i, i) for i in range(20)]) >> pool == tuple(
        2 * i for i in range(20))
    assert skyhop.gather([add(1, 0), add(2, 0)]) >> pool == (1, 2)
    streamed = list(skyhop.gather(sleep_then(0.5, "slow"), sleep_then(0, "fast"),
                                  stream=True) >> pool)
    assert sorted(streamed) == ["fast", "slow"]
    assert list(skyhop.gather(sleep_then(0.3, 1), add(1, 1), stream=True, ordered=True)
                >> pool) == [1, 2]
    group_future = skyhop.gather(add(1, 2), add(3, 4)) > pool
    assert group_future.result(timeout=30) == (3, 7)
    per_node = (whoami() & add(0, 1)) @ pool
    assert [r["rank"] for r in per_node[0]] == [0, 1] and per_node[1] == [1, 1]


def test_calls_spread_over_nodes_and_threads(pool):
    pids = {r["pid"] for r in skyhop.gather(*[whoami() for _ in range(40)]) >> pool}
    assert len(pids) == 2, "both nodes' workers served calls"
    results: list = []

    def client(k: int) -> None:
        results.extend(add(k, i) >> pool for i in range(50))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(k + i for k in range(4) for i in range(50))


def test_map_keeps_order_and_a_bounded_window(pool):
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    results = pool.map(echo, items(), max_in_flight=4)
    assert next(results) == 0
    assert len(pulled) <= 5, "no more than the window is sent ahead of the consumer"
    assert list(results) == list(range(1, 100))
    assert list(pool.map(lambda x: x * x, range(10))) == [x * x for x in range(10)]


def test_the_implicit_target_is_the_open_pool(pool):
    assert add(2, 3).result() == 5
    assert [r["rank"] for r in whoami().broadcast()] == [0, 1]
    assert add(1, 1).future().result(timeout=30) == 2
    assert skyhop.gather(add(1, 0), add(0, 2)).result() == (1, 2)


def test_environment_and_instance_info(pool):
    infos = whoami() @ pool
    assert {(i["greeting"], i["nodes"], i["head"]) for i in infos} == {
        ("hi there", 2, "127.0.0.1")}
    with pytest.raises(UserError, match="only available inside a function"):
        skyhop.instance_info()


# -- values and errors ---------------------------------------------------------------------
def test_frames_survive_any_read_size_and_start_up_noise():
    from skyhop.functions import protocol as p

    big = os.urandom(300_000)
    wire = bytearray(b"bash: a warning\n" + p.MAGIC)
    for kind, ident, parts in [(p.HELLO, 0, [b"{}"]), (p.RESULT, 7, p.dumps({"big": big})),
                               (p.OUTPUT, 1, [b"line\n"])]:
        for buffer in p.encode(kind, ident, parts):
            wire += bytes(buffer)
    data, at = bytes(wire), [0]

    def stingy(view: memoryview) -> int:  # at most 7 bytes per read
        n = min(7, len(view), len(data) - at[0])
        view[:n] = data[at[0]:at[0] + n]
        at[0] += n
        return n

    reader = p.FrameReader(stingy, size=1024)
    assert reader.skip_to_magic() == b"bash: a warning\n"
    assert reader.read()[0] == p.HELLO
    kind, ident, parts = reader.read()
    assert (kind, ident, len(parts)) == (p.RESULT, 7, 2)
    assert len(parts[0]) < 200, "the large bytes travelled out-of-band, not in the pickle"
    assert p.loads(parts) == {"big": big}
    assert reader.read()[2] == [b"line\n"] and reader.read() is None


def test_large_values_round_trip(pool):
    blob = os.urandom(50 * 1024 * 1024)
    assert echo(blob) >> pool == blob
    import numpy as np

    array = np.arange(3_000_000, dtype=np.float64)
    back = echo(array) >> pool
    assert back.dtype == array.dtype and np.array_equal(back, array)
    nested = {"a": [bytearray(b"x" * 100_000), b"y" * 200_000], "b": (1, "two")}
    assert echo(nested) >> pool == nested


def test_remote_exceptions_keep_their_type_and_traceback(pool):
    with pytest.raises(Oops, match="it broke") as info:
        fail("it broke") >> pool
    remote = str(info.value.__cause__)
    assert "test_functions_local.py" in remote and "raise Oops(message)" in remote
    assert any("raised on node-" in note for note in info.value.__notes__)

    @skyhop.function
    def unpicklable_error():
        class Local(Exception):  # a class that only exists on the node
            def __reduce__(self):
                raise TypeError("no")

        raise Local("inner detail")

    with pytest.raises(RemoteError, match="inner detail"):
        unpicklable_error() >> pool
    assert add(1, 1) >> pool == 2, "the worker survives its calls' errors"


def test_output_is_streamed_with_node_prefixes(pool, capfd):
    assert shout("hello") >> pool == 5
    out, err = capfd.readouterr()
    assert "(node-0) out: hello" in out or "(node-1) out: hello" in out
    assert "err: hello" in err and "(node-" in err
    shout("everywhere") @ pool
    out, _ = capfd.readouterr()
    assert "(node-0) out: everywhere" in out and "(node-1) out: everywhere" in out


def test_timeout_interrupts_the_call_and_keeps_the_worker(pool):
    quick = sleep_then.options(timeout=0.5)
    before = {r["pid"] for r in whoami() @ pool}
    with pytest.raises(TimeoutError, match=r"timeout of 0\.5 s") as info:
        quick(30, "late") >> pool
    assert "time.sleep" in str(info.value.__cause__), "where it was when time ran out"
    assert quick(0, "on time") >> pool == "on time"
    assert {r["pid"] for r in whoami() @ pool} == before


def test_timeout_restarts_a_worker_that_does_not_stop(pool):
    @skyhop.function(timeout=0.5)
    def stubborn():
        signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the interruption cannot reach it
        time.sleep(30)

    before = {r["pid"] for r in whoami() @ pool}
    with pytest.raises(TimeoutError, match="restarted"):
        stubborn() >> pool
    after = {r["pid"] for r in whoami() @ pool}
    assert len(after) == 2 and after != before


def test_retries_after_errors_and_lost_workers(pool, tmp_path):
    marker = tmp_path / "attempts"

    @skyhop.function(retries=2)
    def flaky(path):
        count = int(Path(path).read_text()) if Path(path).exists() else 0
        Path(path).write_text(str(count + 1))
        if count == 0:
            raise RuntimeError("first attempt fails")
        if count == 1:
            os._exit(3)  # the worker dies with the call
        return count

    assert flaky(str(marker)) >> pool == 2
    marker.unlink()
    with pytest.raises(RuntimeError, match="first attempt"):
        flaky.options(retries=0)(str(marker)) >> pool

    @skyhop.function
    def die():
        os._exit(4)

    with pytest.raises(WorkerLostError, match="lost"):
        die() >> pool
    assert sorted(r["rank"] for r in whoami() @ pool) == [0, 1], "a fresh worker took over"


def test_cancelled_queued_calls_do_not_run(pool, tmp_path):
    marker = tmp_path / "ran"

    @skyhop.function
    def touch(path):
        Path(path).write_text("ran")

    blockers = [sleep_then(1.0, None) > pool for _ in range(2)]
    queued = [touch(str(marker)) > pool for _ in range(2)]
    for future in queued:
        future.cancel()
    for future in blockers:
        future.result(timeout=30)
    assert add(1, 1) >> pool == 2
    assert not marker.exists()


# -- bad input -----------------------------------------------------------------------------
def test_bad_input_is_one_clear_user_error(pool):
    with pytest.raises(UserError, match="nodes must be"):
        skyhop.Compute(nodes=0)
    with pytest.raises(UserError, match=r"must be skyhop\.Spec"):
        skyhop.Compute("local")
    with pytest.raises(UserError, match="cpus"):
        skyhop.Compute(cpus="lots")
    with pytest.raises(UserError, match="timeout must be"):
        skyhop.function(timeout=-1)
    with pytest.raises(UserError, match="retries must be"):
        skyhop.function(retries="x")
    with pytest.raises(UserError, match="right side of `>>`"):
        add(1, 2) >> 5
    with pytest.raises(UserError, match="include"):
        skyhop.Compute(include=["/no/such/path"])
    with pytest.raises(UserError, match="cannot be pickled"):
        echo(threading.Lock()) >> pool


def test_no_open_pool_and_closed_pool_are_clear(home, monkeypatch):
    from skyhop.functions import compute

    monkeypatch.setattr(compute, "_active", [])  # as if the module's pool were not open
    with pytest.raises(UserError, match=r"no skyhop\.Compute pool is open"):
        add(1, 2).result()
    with skyhop.Compute(infra="local", quiet=True) as compute:
        pass
    with pytest.raises(UserError, match="not open"):
        add(1, 2) >> compute
    with pytest.raises(UserError, match="already used"):
        compute.__enter__()


# -- environment ---------------------------------------------------------------------------
def _wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel, made by hand (no build tools, no index)."""
    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {f"{name}.py": f"__version__ = {version!r}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name_in_zip, text in files.items():
            zf.writestr(name_in_zip, text)
    return path


def test_pip_include_and_a_library_version_mismatch(home, tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "skyhoplib", "2.0")
    here = tmp_path / "client-site"  # this client has skyhoplib 1.0
    here.mkdir()
    (here / "skyhoplib.py").write_text("__version__ = '1.0'\n")
    (here / "skyhoplib-1.0.dist-info").mkdir()
    (here / "skyhoplib-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: skyhoplib\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(here))
    import skyhoplib

    assert skyhoplib.__version__ == "1.0"
    project = tmp_path / "project"
    (project / "helpers").mkdir(parents=True)
    (project / "helpers" / "__init__.py").write_text("def triple(x):\n    return 3 * x\n")

    @skyhop.function
    def probe():
        import helpers
        import skyhoplib

        return skyhoplib.__version__, helpers.triple(2)

    with pytest.warns(VersionMismatchWarning, match="skyhoplib 2.0, this client 1.0"), \
            skyhop.Compute(infra="local", quiet=True, include=[project / "helpers"], pip=[
                "--no-index", "--find-links", str(wheels), "skyhoplib==2.0"]) as compute:
        assert probe() >> compute == ("2.0", 6)
    assert_gone(home, compute)


def test_a_python_version_mismatch_is_refused_at_start(home):
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    others = [p for p in sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))
              if not p.parent.parent.name.startswith(here + ".")
              and int(p.parent.parent.name.split(".")[1]) >= 8]  # the worker needs 3.8+
    others += [Path(f"/usr/bin/python3.{m}") for m in range(8, 15)
               if f"3.{m}" != here and Path(f"/usr/bin/python3.{m}").exists()]
    if not others:
        pytest.skip("no Python other than this one's major.minor on this machine")
    with pytest.raises(UserError, match=r"runs Python 3\.\d+.*same Python major\.minor"), \
            skyhop.Compute(infra="local", python=str(others[0]), quiet=True):
        pytest.fail("the pool must not start")
    assert clusters(home) == []


# -- ephemeral -----------------------------------------------------------------------------
def test_teardown_on_exit_exception_and_ctrl_c(home):
    with skyhop.Compute(infra="local", nodes=2, quiet=True) as compute:
        assert compute.provider == "local" and add(1, 1) >> compute == 2
        assert clusters(home) == [compute.name]
    assert_gone(home, compute)
    with pytest.raises(Oops), skyhop.Compute(infra="local", quiet=True) as compute:
        raise Oops("user code failed")
    assert_gone(home, compute)
    with pytest.raises(KeyboardInterrupt), skyhop.Compute(infra="local", quiet=True) as compute:
        raise KeyboardInterrupt
    assert_gone(home, compute)


SCRIPT = """
import os, signal, sys, time
import skyhop

class Point:  # defined in __main__: travels by value
    def __init__(self, x):
        self.x = x

@skyhop.function
def scale(p, k):
    return Point(p.x * k)

@skyhop.function
def pid():
    return os.getpid()

with skyhop.Compute(infra="local", nodes=2, quiet=True) as pool:
    assert (scale(Point(2), 21) >> pool).x == 42
    print("READY", pool.name, *(pid() @ pool), flush=True)
    time.sleep(300)
"""


def _start_client(tmp_path: Path, home: Path) -> tuple[subprocess.Popen, list[str]]:
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path,
                               env={**os.environ, "SKYHOP_HOME": str(home)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("READY"), line + process.stderr.read()
    return process, line.split()[1:]


def _wait_gone(pids: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_in_a_client_script_tears_the_pool_down(home, tmp_path, signum):
    process, (name, *pids) = _start_client(tmp_path, home)
    assert clusters(home) == [name]
    assert all(Path(f"/proc/{p}").exists() for p in pids)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    if signum == signal.SIGINT:
        assert process.returncode != 0 and "KeyboardInterrupt" in err
    else:
        assert process.returncode == 128 + signal.SIGTERM, err
    assert clusters(home) == [] and _wait_gone([int(p) for p in pids])


def test_a_sigkilled_client_is_reclaimed(home, tmp_path):
    process, (name, *pids) = _start_client(tmp_path, home)
    row = json.loads(subprocess.run(
        [sys.executable, "-m", "skyhop.cli.main", "status", "--json"], cwd=ROOT,
        capture_output=True, text=True, env={**os.environ, "SKYHOP_HOME": str(home)}).stdout)
    assert [c["name"] for c in row] == [name]
    assert all(Path(f"/proc/{p}").exists() for p in pids)
    process.kill()
    process.wait()
    # The workers notice their channel closed and exit on their own.
    assert _wait_gone([int(p) for p in pids]), "workers outlived their client"
    assert clusters(home) == [name], "the row stays until reconciliation"
    refresh = subprocess.run([sys.executable, "-m", "skyhop.cli.main", "status", "--refresh"],
                             cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "SKYHOP_HOME": str(home)}, timeout=120)
    assert refresh.returncode == 0, refresh.stderr
    assert name in refresh.stdout + refresh.stderr
    assert clusters(home) == []
    assert processes_marked(f"{home}/") == [], "the agent and everything else are gone"
    assert not (home / "local" / name).exists()


# -- multi-node ----------------------------------------------------------------------------
@skyhop.function
def rendezvous():
    """Rank 0 listens on the head's address and port, rank 1 connects: what torch's TCP
    store does, without torch."""
    info = skyhop.instance_info()
    if info.is_head:
        with socket.create_server((info.head_addr, info.port)) as server:
            server.settimeout(30)
            conn, _ = server.accept()
            with conn:
                return f"head got {conn.recv(64).decode()}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((info.head_addr, info.port), timeout=5) as conn:
                conn.sendall(f"hello from rank {info.rank}".encode())
                return "sent"
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_multi_node_rendezvous_without_torch(pool):
    assert rendezvous() @ pool == ["head got hello from rank 1", "sent"]


def test_ddp_example_trains_on_two_local_nodes(home, tmp_path):
    pytest.importorskip("torch", reason="the DDP example needs torch (pip install torch)")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "functions" / "ddp.py")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "SKYHOP_HOME": str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(node-0)" in result.stdout and "(node-1)" in result.stdout
    assert "ranks agree" in result.stdout
