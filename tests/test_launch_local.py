"""`skyhop launch` on the embedded local provider, end to end, as a user runs it."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, use_home
from skyhop.execute.runner import processes_marked

EXAMPLES = ROOT / "examples"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated SKYHOP_HOME; afterwards every cluster is down and nothing runs."""
    home = use_home(monkeypatch, tmp_path / "home")
    yield home
    for cluster in json.loads(sky("status", "--json").stdout or "[]"):
        sky("down", cluster["name"], "-y")
    assert processes_marked(f"{home}/") == []


def sky(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def status(name: str) -> dict | None:
    clusters = json.loads(sky("status", "--json").stdout)
    return next((c for c in clusters if c["name"] == name), None)


def await_status(name: str, wanted: str | None, timeout: float = 30) -> str | None:
    """Polls until the cluster's status is `wanted` (None: forgotten) or time runs out;
    returns the last status seen."""
    deadline = time.monotonic() + timeout
    while (seen := (status(name) or {}).get("status")) != wanted \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def test_hello_runs_and_down_leaves_nothing(home):
    result = sky("launch", str(EXAMPLES / "hello.yaml"), "-c", "hi")
    assert result.returncode == 0, result.stderr
    assert "hello from node 0 of 1" in result.stdout
    assert "setting up on" in result.stdout
    assert "task id: skyhop-" in result.stdout
    assert status("hi")["status"] == "UP"
    assert processes_marked(f"{home}/local/hi/")  # the agent runs with the cluster
    down = sky("down", "hi", "-y")
    assert down.returncode == 0, down.stderr
    assert status("hi") is None
    assert not (home / "local" / "hi").exists()
    assert processes_marked(f"{home}/local/hi/") == []
    with sqlite3.connect(home / "state.db") as conn:
        assert conn.execute("SELECT count(*) FROM clusters").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM nodes").fetchone() == (0,)


def test_two_nodes_see_their_ranks_under_both_names(home, tmp_path):
    task = write(tmp_path / "t.yaml", "num_nodes: 2\nrun: |\n"
                 "  echo \"R=$SKYHOP_NODE_RANK/$SKYPILOT_NODE_RANK N=$SKYHOP_NUM_NODES/"
                 "$SKYPILOT_NUM_NODES IPS=$(echo \"$SKYHOP_NODE_IPS\" | wc -l)\"\n"
                 "  test -n \"$SKYPILOT_TASK_ID\" && test -n \"$SKYHOP_CLUSTER_INFO\"\n")
    result = sky("launch", str(task), "-c", "two")
    assert result.returncode == 0, result.stderr
    lines = sorted(line for line in result.stdout.splitlines() if "R=" in line)
    assert lines == ["(node-0) R=0/0 N=2/2 IPS=2", "(node-1) R=1/1 N=2/2 IPS=2"]


def test_failing_run_returns_its_exit_code(home):
    result = sky("launch", "echo about to fail; exit 7", "-c", "fails")
    assert result.returncode == 7
    assert "about to fail" in result.stdout
    again = sky("exec", "fails", "exit 3")
    assert again.returncode == 3
    ok = sky("exec", "fails", "true")
    assert ok.returncode == 0


def test_ctrl_c_stops_the_job_and_keeps_the_cluster_consistent(home, tmp_path):
    pid_file = tmp_path / "job.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyhop.cli.main", "launch", "-c", "intr",
         f"echo $$ > {pid_file}; echo started; sleep 300"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), proc.stderr.read() if proc.poll() is not None else "no pid"
    job_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 10
    while Path(f"/proc/{job_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{job_pid}/cmdline").exists() or \
        Path(f"/proc/{job_pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    jobs = json.loads(sky("queue", "intr", "--json").stdout)
    assert [j["status"] for j in jobs] == ["CANCELLED"]
    assert status("intr")["status"] == "UP"
    assert sky("exec", "intr", "echo still fine").stdout.strip() == "still fine"


def test_queue_is_fifo_within_the_cluster_resources(home):
    assert sky("launch", "true", "-c", "q").returncode == 0
    cpus = json.loads(sky("status", "--json").stdout)[0]
    assert cpus["name"] == "q"
    whole = os.cpu_count()
    task = f"resources: {{cpus: {whole}}}\nrun: sleep 1; date +%s.%N\n"
    path = write(home.parent / "big.yaml", task)
    first = sky("exec", "q", str(path), "-d")
    second = sky("exec", "q", str(path), "-d")
    small = sky("exec", "q", "echo small", "-d")
    assert first.returncode == second.returncode == small.returncode == 0
    assert sky("logs", "q", "4", "--follow").returncode == 0
    jobs = {j["id"]: j for j in json.loads(sky("queue", "q", "--json").stdout)}
    assert [jobs[i]["status"] for i in (2, 3, 4)] == ["SUCCEEDED"] * 3
    # Each whole-machine job waits for the one before; the small one waits its turn (FIFO).
    assert jobs[3]["started_at"] >= jobs[2]["ended_at"]
    assert jobs[4]["started_at"] >= jobs[3]["started_at"]


def test_cancel_pending_and_running_jobs(home):
    assert sky("launch", "true", "-c", "cx").returncode == 0
    whole = os.cpu_count()
    path = write(home.parent / "hog.yaml", f"resources: {{cpus: {whole}}}\nrun: sleep 300\n")
    sky("exec", "cx", str(path), "-d")
    sky("exec", "cx", str(path), "-d")
    result = sky("cancel", "cx", "--all")
    assert result.returncode == 0 and "2, 3" in result.stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = json.loads(sky("queue", "cx", "--json").stdout)
        if all(j["status"] != "RUNNING" for j in jobs):
            break
        time.sleep(0.1)
    assert [j["status"] for j in jobs] == ["SUCCEEDED", "CANCELLED", "CANCELLED"]
    assert sky("cancel", "cx").returncode == 2  # nothing named: a clear error


def test_logs_are_kept(home):
    assert sky("launch", "echo first line; echo second line", "-c", "lg").returncode == 0
    result = sky("logs", "lg", "1")
    assert result.stdout.splitlines() == ["first line", "second line"]
    assert sky("logs", "lg", "99").returncode == 2


def test_workdir_sync_honours_ignores_and_sends_changes(home, tmp_path):
    work = tmp_path / "work"
    write(work / "train.py", "print('v1')\n")
    write(work / "data" / "keep.txt", "k\n")
    write(work / "cache" / "big.bin", "x" * 1000)
    write(work / ".gitignore", "cache/\n*.log\n")
    write(work / "run.log", "noise\n")
    task = write(tmp_path / "t.yaml", f"workdir: {work}\nrun: find . -type f | sort\n")
    result = sky("launch", str(task), "-c", "wd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["./.gitignore", "./data/keep.txt", "./train.py"]
    write(work / ".skyignore", "data/\n")  # .skyignore replaces .gitignore
    (work / "train.py").write_text("print('v2')\n")
    result = sky("launch", str(task), "-c", "wd")
    assert result.stdout.split() == ["./.gitignore", "./.skyignore", "./cache/big.bin",
                                     "./run.log", "./train.py"]
    assert sky("exec", "wd", "python3 train.py").stdout.strip() == "v2"


def test_setup_runs_once_unless_changed(home, tmp_path):
    counter = tmp_path / "setups"
    task = write(tmp_path / "t.yaml", f"setup: echo x >> {counter}\nrun: true\n")
    for _ in range(2):
        assert sky("launch", str(task), "-c", "su").returncode == 0
    assert counter.read_text().count("x") == 1
    write(tmp_path / "t.yaml", f"setup: echo x >> {counter}; echo changed\nrun: true\n")
    assert sky("launch", str(task), "-c", "su").returncode == 0
    assert counter.read_text().count("x") == 2


def test_envs_and_secrets_never_stored_in_clear(home, tmp_path):
    task = write(tmp_path / "t.yaml", "envs: {GREETING: hi, NEEDED: null}\n"
                 "secrets: {TOKEN: null}\n"
                 "run: echo \"$GREETING $NEEDED len=${#TOKEN}\"\n")
    missing = sky("launch", str(task), "-c", "sec")
    assert missing.returncode == 2 and "--env NEEDED=" in missing.stderr
    assert status("sec") is None  # nothing half-done
    result = sky("launch", str(task), "-c", "sec", "--env", "NEEDED=there",
                 "--env", "TOKEN=s3cr3t-value")
    assert result.returncode == 0, result.stderr
    assert "hi there len=12" in result.stdout
    assert "s3cr3t-value" not in result.stdout + result.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert b"s3cr3t-value" not in path.read_bytes(), path


def test_stop_and_start(home):
    assert sky("launch", "true", "-c", "ss").returncode == 0
    assert sky("stop", "ss").returncode == 0
    assert status("ss")["status"] == "STOPPED"
    assert processes_marked(f"{home}/local/ss/") == []
    assert sky("exec", "ss", "true").returncode == 2  # clear: stopped
    assert sky("start", "ss").returncode == 0
    assert sky("exec", "ss", "echo back").stdout.strip() == "back"


def test_autostop_down_is_enforced_by_the_cluster(home):
    assert sky("launch", "true", "-c", "auto").returncode == 0
    result = sky("autostop", "auto", "-i", "0", "--down")
    assert result.returncode == 0, result.stderr
    assert await_status("auto", None) is None
    deadline = time.monotonic() + 10
    while processes_marked(f"{home}/local/auto/") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_marked(f"{home}/local/auto/") == []


def test_autostop_waiting_for_nothing_stops_a_busy_cluster(home):
    """`--wait-for none`: stop that long after autostop is set, even with a job running
    (a hard limit); the default would wait for the job."""
    assert sky("launch", "-d", "sleep 600", "-c", "cap").returncode == 0
    assert sky("autostop", "cap", "-i", "0", "--wait-for", "bogus").returncode == 2
    assert sky("autostop", "cap", "-i", "0", "--wait-for", "none").returncode == 0
    assert await_status("cap", "STOPPED") == "STOPPED"
    assert sky("down", "cap", "-y").returncode == 0
    assert processes_marked(f"{home}/local/cap/") == []


def test_stop_start_down_take_patterns_and_all(home):
    for name in ("dev-1", "dev-2", "prod"):
        assert sky("launch", "true", "-c", name).returncode == 0
    missing = sky("stop", "dev-*", "nope-*")
    assert missing.returncode == 2 and "no cluster matches 'nope-*'" in missing.stderr
    assert status("dev-1")["status"] == "UP"  # refused before anything was done
    assert sky("stop", "dev-*").returncode == 0
    assert [status(n)["status"] for n in ("dev-1", "dev-2", "prod")] == ["STOPPED", "STOPPED",
                                                                          "UP"]
    assert sky("stop", "dev-*").returncode == 0  # patterns pick only what can be stopped
    assert sky("stop", "dev-1").returncode == 2  # a name is explicit: it is not UP
    assert sky("start", "--all").returncode == 0
    assert status("dev-2")["status"] == "UP"
    assert sky("down", "-a", "-y").returncode == 0
    assert json.loads(sky("status", "--json").stdout) == []
    assert processes_marked(f"{home}/local/") == []


def test_ssh_into_a_local_node_is_a_shell_in_its_folder(home):
    assert sky("launch", "true", "-c", "sh1").returncode == 0
    where = sky("ssh", "sh1", "--", "pwd")
    assert where.returncode == 0, where.stderr
    assert where.stdout.split()[0] == str(home / "local" / "sh1" / "node-0")
    assert sky("ssh", "sh1", "--", "exit 4").returncode == 4
    wrong = sky("ssh", "sh1", "--node", "2")
    assert wrong.returncode == 2 and "nodes 0..0, not 2" in wrong.stderr
    assert sky("down", "sh1", "-y").returncode == 0


def test_cost_report_uses_recorded_prices(home):
    assert sky("launch", "true", "-c", "cr").returncode == 0
    sky("down", "cr", "-y")
    rows = json.loads(sky("cost-report", "--json").stdout)
    (row,) = [r for r in rows if r["cluster"] == "cr"]
    assert row["status"] == "TERMINATED" and row["hourly_price"] == 0 and row["hours"] > 0


def test_two_launches_at_once_share_one_cluster(home):
    procs = [subprocess.Popen([sys.executable, "-m", "skyhop.cli.main", "launch", "-c", "race",
                               f"echo run {i}"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(o[0].strip() for o in outs) == ["run 0", "run 1"]
    clusters = json.loads(sky("status", "--json").stdout)
    assert [c["name"] for c in clusters] == ["race"]
    assert len(json.loads(sky("queue", "race", "--json").stdout)) == 2


def test_requests_the_machine_cannot_meet_are_explained(home):
    result = sky("launch", "-c", "big", "--", str(write(home.parent / "g.yaml",
                 "resources: {accelerators: H100:8}\nrun: nvidia-smi\n")))
    assert result.returncode == 2
    assert "H100:8" in result.stderr and "Traceback" not in result.stderr
    assert status("big") is None
    huge = write(home.parent / "c.yaml", "resources: {cpus: 100000+}\nrun: true\n")
    result = sky("launch", str(huge))
    assert result.returncode == 2 and "cpus 100000+" in result.stderr


def test_dry_run_plans_only(home):
    result = sky("launch", str(EXAMPLES / "hello.yaml"), "--dry-run")
    assert result.returncode == 0 and "local" in result.stdout
    assert json.loads(sky("status", "--json").stdout) == []


def test_pipeline_runs_in_dependency_order(home):
    result = sky("launch", str(EXAMPLES / "pipeline.yaml"), "-c", "pl", "--down")
    assert result.returncode == 0, result.stderr
    steps = [line.split(":")[0] for line in result.stdout.splitlines()]
    assert steps == ["prepare", "train", "evaluate"]
    assert json.loads(sky("status", "--json").stdout) == []


def test_sdk(home):
    import skyhop
    from skyhop.execute.report import SilentReporter

    reporter = SilentReporter()
    task = skyhop.Task(name="py", run="echo from the sdk $SKYHOP_NUM_NODES")
    result = skyhop.launch(task, "sdk", reporter=reporter)
    assert result.exit_code == 0 and "from the sdk 1\n" in reporter.lines
    result = skyhop.exec("sdk", "exit 4", reporter=reporter)
    assert result.exit_code == 4
    assert [c.name for c in skyhop.status()] == ["sdk"]
    skyhop.down("sdk", reporter=reporter)
    assert skyhop.status() == []


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    """An `nvidia-smi` on PATH reporting two A100 80GB cards (this machine has none)."""
    bin_dir = tmp_path / "bin"
    write(bin_dir / "nvidia-smi", "#!/bin/sh\nprintf 'NVIDIA A100-SXM4-80GB, 81920\\n"
          "NVIDIA A100-SXM4-80GB, 81920\\n'\n").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_gpus_are_detected_and_handed_out_by_index(home, fake_gpus, tmp_path):
    task = write(tmp_path / "g.yaml", "resources: {accelerators: a100-80gb:1}\n"
                 "run: echo \"gpus=$CUDA_VISIBLE_DEVICES of $SKYHOP_NUM_GPUS_PER_NODE\"\n")
    result = sky("launch", str(task), "-c", "gpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gpus=0 of 2"
    assert status("gpu")["accelerators"] == {"A100-80GB": 2.0}
    hold = write(tmp_path / "h.yaml", "resources: {accelerators: A100-80GB:1}\n"
                 "run: echo $CUDA_VISIBLE_DEVICES; sleep 1\n")
    sky("exec", "gpu", str(hold), "-d")
    sky("exec", "gpu", str(hold), "-d")
    both = write(tmp_path / "b.yaml", "resources: {accelerators: A100-80GB:2}\n"
                 "run: echo $CUDA_VISIBLE_DEVICES\n")
    assert sky("exec", "gpu", str(both)).stdout.strip() == "0,1"
    jobs = {j["id"]: j for j in json.loads(sky("queue", "gpu", "--json").stdout)}
    # The two 1-GPU jobs ran side by side on different GPUs; the 2-GPU job waited for both.
    assert sorted(sky("logs", "gpu", str(i)).stdout.strip() for i in (2, 3)) == ["0", "1"]
    assert jobs[4]["started_at"] >= max(jobs[2]["ended_at"], jobs[3]["ended_at"])
    too_many = write(tmp_path / "t.yaml", "resources: {accelerators: A100-80GB:4}\nrun: true\n")
    result = sky("launch", str(too_many), "-c", "gpu")
    assert result.returncode == 2 and "2x A100-80GB" in result.stderr


def test_file_mounts_copy_local_files_and_dirs(home, tmp_path):
    write(tmp_path / "src" / "a.txt", "A\n")
    write(tmp_path / "src" / "sub" / "b.txt", "B\n")
    write(tmp_path / "config.json", "{}\n")
    task = write(tmp_path / "t.yaml", f"file_mounts:\n  ~/data: {tmp_path / 'src'}\n"
                 f"  ~/etc/app.json: {tmp_path / 'config.json'}\n"
                 "run: cat ~/data/a.txt ~/data/sub/b.txt ~/etc/app.json\n")
    result = sky("launch", str(task), "-c", "fm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["A", "B", "{}"]
    bad = write(tmp_path / "bad.yaml", "file_mounts: {~/x: /no/such/path}\nrun: true\n")
    result = sky("launch", str(bad), "-c", "fm2")
    assert result.returncode == 2 and "/no/such/path" in result.stderr


def sky_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI run from `cwd` (relative task paths start there)."""
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_a_single_file_mount_with_another_name_never_touches_local_files(home, tmp_path):
    proj = tmp_path / "proj"
    write(proj / "local.txt", "L\n")
    write(proj / "y.cfg", "Y\n")
    before = {name: (proj / name).stat() for name in ("local.txt", "y.cfg")}
    # The absolute target is the source's own folder: on this machine it must not be
    # written, the node's folder holds it.
    write(proj / "t.yaml", f"file_mounts:\n  {proj}/other.txt: {proj}/local.txt\n"
          "  ~/x.cfg: ./y.cfg\n"
          f'run: cat ~/x.cfg "$HOME{proj}/other.txt"\n')
    result = sky_in(proj, "launch", "t.yaml", "-c", "fmr")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Y", "L"]
    for name, st in before.items():  # the local files are there, unchanged
        assert (proj / name).stat().st_ino == st.st_ino
        assert (proj / name).stat().st_mtime_ns == st.st_mtime_ns
    assert (proj / "local.txt").read_text() == "L\n" and (proj / "y.cfg").read_text() == "Y\n"
    assert sorted(p.name for p in proj.iterdir()) == ["local.txt", "t.yaml", "y.cfg"]
    node = home / "local" / "fmr" / "node-0"
    assert (node / "x.cfg").read_text() == "Y\n" and not (node / "y.cfg").exists()
    copied = (node / "x.cfg").stat()
    assert "2 file(s) sent, 0 unchanged" in result.stderr
    # Unchanged: the second launch leaves the node's copy alone (not even rewritten).
    again = sky_in(proj, "launch", "t.yaml", "-c", "fmr")
    assert again.returncode == 0 and "0 file(s) sent, 2 unchanged" in again.stderr
    assert (node / "x.cfg").stat().st_ctime_ns == copied.st_ctime_ns


def test_a_mount_path_leading_out_of_the_node_is_refused_before_anything_is_made(
        home, tmp_path):
    write(tmp_path / "a.txt", "A\n")
    task = write(tmp_path / "t.yaml", f"run: true\nfile_mounts:\n"
                 f"  ~/../../escaped.txt: {tmp_path / 'a.txt'}\n")
    result = sky("launch", str(task), "-c", "esc", "--infra", "local")
    assert result.returncode == 2, result.stderr
    assert "leads outside the local node's folder" in result.stderr
    assert f"{task}:3:" in result.stderr and "Traceback" not in result.stderr
    assert status("esc") is None and not (home / "local" / "esc").exists()
    assert not (home / "local" / "escaped.txt").exists()
    assert not (home / "escaped.txt").exists()


@pytest.mark.parametrize("field", ["workdir", "file_mounts"])
def test_missing_sources_are_found_before_anything_is_made(home, tmp_path, field):
    missing = tmp_path / "no such dir"
    text = (f"workdir: {missing}\n" if field == "workdir"
            else f"file_mounts:\n  ~/data: {missing}\n")
    task = write(tmp_path / "t.yaml", "run: true\n" + text)
    result = sky("launch", str(task), "-c", "miss")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and str(missing) in result.stderr
    line = 2 if field == "workdir" else 3
    assert f"{task}:{line}:" in result.stderr and "Traceback" not in result.stderr
    assert status("miss") is None and not (home / "local" / "miss").exists()


def test_state_on_postgresql(home, tmp_path, monkeypatch):
    from pg import PostgresServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as server:
        monkeypatch.setenv("SKYHOP_DB_URL", server.url)
        result = sky("launch", str(EXAMPLES / "multinode.yaml"), "-c", "pgc")
        assert result.returncode == 0, result.stderr
        assert status("pgc")["num_nodes"] == 2
        assert not (home / "state.db").exists()  # nothing went to SQLite
        assert sky("down", "pgc", "-y").returncode == 0
        assert status("pgc") is None
        assert [r["cluster"] for r in json.loads(sky("cost-report", "--json").stdout)] == [
            "pgc"]


def test_optimize_considers_this_machine_only_when_asked(home):
    plan = json.loads(sky("optimize", str(EXAMPLES / "hello.yaml"), "--json").stdout)
    assert plan["tasks"][0]["provider"] != "local"
    plan = json.loads(sky("optimize", str(EXAMPLES / "hello.yaml"), "--infra", "local",
                          "--json").stdout)
    assert plan["tasks"][0]["provider"] == "local" and plan["total_cost"] == 0


def test_autostop_finds_the_state_without_skyhop_home(tmp_path, monkeypatch):
    """Users rarely set SKYHOP_HOME: the agent must still reach ~/.skyhop of the client."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SKYHOP_HOME", raising=False)
    monkeypatch.delenv("SKYHOP_DB_URL", raising=False)
    assert sky("launch", "true", "-c", "ah").returncode == 0
    assert (tmp_path / ".skyhop" / "state.db").exists()
    assert sky("autostop", "ah", "-i", "0").returncode == 0  # stop, not down
    assert await_status("ah", "STOPPED") == "STOPPED"
    assert sky("down", "ah", "-y").returncode == 0
    assert processes_marked(f"{tmp_path}/.skyhop/") == []


def test_relaunch_on_a_cluster_that_fits_reuses_it_without_planning(home, tmp_path):
    assert sky("launch", "true", "-c", "re").returncode == 0
    again = sky("launch", "echo again", "-c", "re")
    assert again.returncode == 0 and again.stdout.strip() == "again"
    assert "on re (local/local" in again.stderr and "reusing" in again.stderr
    assert [c["name"] for c in json.loads(sky("status", "--json").stdout)] == ["re"]
    task = write(tmp_path / "big.yaml", "num_nodes: 3\nrun: true\n")
    misfit = sky("launch", str(task), "-c", "re")
    assert misfit.returncode == 2 and "cannot run this task" in misfit.stderr
    assert "it has 1 node(s), the task needs 3" in misfit.stderr
    assert "Traceback" not in misfit.stderr


def test_logs_resume_from_an_offset_and_never_split_a_character(home, tmp_path):
    """A long log comes in bounded chunks; each chunk ends on a character boundary (the
    first chunk boundary falls inside an 'é' here), and a reader resumes where it stopped."""
    from skyhop.execute.agent import LOG_CHUNK
    from skyhop.execute.launcher import Launcher
    from skyhop.state.clusters import ClusterStore

    text = "a" + "é" * (LOG_CHUNK // 2 + 1000) + "\n"
    script = write(tmp_path / "say.py", f"print('a' + '\\u00e9' * {LOG_CHUNK // 2 + 1000})\n")
    assert sky("launch", f"python3 {script}", "-c", "lg2").returncode == 0
    agent = Launcher(ClusterStore()).agent(ClusterStore().get("lg2"))
    chunks: list[str] = []
    job = agent.logs(1, False, chunks.append)
    assert "".join(chunks) == text and len(chunks) >= 2
    assert job["log_offset"] == len(text.encode())
    rest: list[str] = []
    assert agent.logs(1, False, rest.append, offset=job["log_offset"])["log_offset"] == \
        job["log_offset"] and rest == []
    tail: list[str] = []
    agent.logs(1, False, tail.append, offset=len(text.encode()) - 5)
    assert "".join(tail) == "éé\n"


def test_utf8_boundary_holds_back_only_a_split_character():
    from skyhop.execute.agent import utf8_boundary

    e, euro, emoji = "é".encode(), "€".encode(), "🙂".encode()
    assert utf8_boundary(b"abc") == 3 and utf8_boundary(b"") == 0
    assert utf8_boundary(b"a" + e) == 3 and utf8_boundary(b"a" + e[:1]) == 1
    assert utf8_boundary(euro + euro[:2]) == 3 and utf8_boundary(emoji[:3]) == 0
    assert utf8_boundary(b"a" + emoji) == 5
    assert utf8_boundary(b"\x80\x80") == 2  # stray bytes are not held back


def test_autostop_from_the_task_file_and_from_launch_flags(home, tmp_path):
    """SkyPilot's `resources.autostop` and `launch -i N [--down]` arm the cluster's agent
    once the job is queued: the job still runs whole, then the cluster stops or goes."""
    # The job outlives the time a stop takes to start (it once did not wait for the job).
    task = write(tmp_path / "t.yaml", "resources:\n  autostop: {idle_minutes: 0, down: true}\n"
                                      "run: sleep 4; echo finished\n")
    result = sky("launch", str(task), "-c", "tf")
    assert result.returncode == 0 and "finished" in result.stdout, result.stderr
    assert "down after 0 idle min" in result.stderr
    stopped = sky("launch", "echo ran", "-c", "fl", "-i", "0")
    assert stopped.returncode == 0 and "ran" in stopped.stdout
    assert await_status("tf", None) is None and await_status("fl", "STOPPED") == "STOPPED"


def test_a_negative_autostop_is_refused_before_anything_runs(home):
    result = sky("launch", "echo should not run", "-c", "neg", "-i", "-5")
    assert result.returncode == 2 and "must be >= 0" in result.stderr
    assert "should not run" not in result.stdout and "Traceback" not in result.stderr
    assert status("neg") is None
