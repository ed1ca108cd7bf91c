"""Managed jobs on the local provider, end to end: real controller processes, real agents,
real nodes killed under them."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, use_home
from skyhop.execute.runner import processes_marked

EXAMPLE = ROOT / "examples" / "managed" / "checkpoint.yaml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = use_home(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("SKYHOP_JOBS_POLL_S", "0.3")
    yield home
    finish_all(home)
    assert processes_marked(f"{home}/") == []


def finish_all(home: Path) -> None:
    """Cancel every job, wait for them to end, stop the controller, take clusters down."""
    try:
        sky("jobs", "cancel", "--all")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                j["status"] not in FINAL for j in queue()):
            time.sleep(0.3)
    finally:  # whatever went wrong above, leave no controller or cluster behind
        stop_controller(home)
        for cluster in json.loads(sky("status", "--json").stdout or "[]"):
            sky("down", cluster["name"], "-y")


FINAL = {"SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_NO_RESOURCE", "CANCELLED"}


def sky(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def queue() -> list[dict]:
    result = sky("jobs", "queue", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def job(job_id: int) -> dict:
    return next(j for j in queue() if j["id"] == job_id)


def wait_for(job_id: int, predicate, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = job(job_id)
        if predicate(current):
            return current
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never got there: {job(job_id)}")


def controller_pid(home: Path) -> int | None:
    """The PID of this home's controller, only if that process is really it (a stale PID
    may belong to anything by now)."""
    try:
        pid = int((home / "jobs" / "controller.lock").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    if b"skyhop.jobs.controller" in cmdline and f"SKYHOP_HOME={home}\0".encode() in environ:
        return pid
    return None


def stop_controller(home: Path) -> None:
    pid = controller_pid(home)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def submit(home: Path, *args: str) -> int:
    result = sky("jobs", "launch", *args, "-d")
    assert result.returncode == 0, result.stderr
    return int(result.stderr.split("managed job ")[1].split()[0])


def log_text(job_id: int) -> str:
    return sky("jobs", "logs", str(job_id)).stdout


def preempt(cluster: str) -> None:
    """What a cloud does to a spot VM: its machine (processes, disk) is gone."""
    from skyhop.provision.providers.local import LocalProvider

    provider = LocalProvider()
    provider.terminate(cluster, [i.instance_id for i in provider.instances(cluster)])


def test_a_job_runs_to_success_and_its_output_is_kept(home):
    result = sky("jobs", "launch", str(ROOT / "examples" / "hello.yaml"))
    assert result.returncode == 0, result.stderr
    home_id = (home / "home_id").read_text().strip()
    assert f"task id: skyhop-managed-{home_id}-1" in result.stdout
    [done] = queue()
    assert done["status"] == "SUCCEEDED"
    assert [e["status"] for e in done["events"] if e["status"] != "NOTE"] == [
        "PENDING", "STARTING", "RUNNING", "SUCCEEDED"]
    assert all(e["at"] > 0 for e in done["events"])
    assert json.loads(sky("status", "--json").stdout) == []  # its cluster is gone
    assert "hello from node 0" in log_text(1)


def test_preempted_node_recovers_from_checkpoint_with_the_same_task_id(home, tmp_path):
    ckpt = tmp_path / "ckpt"
    job_id = submit(home, str(EXAMPLE), "--env", f"CKPT_DIR={ckpt}", "--env", "STEPS=12",
                    "--env", "STEP_SECONDS=0.5")
    running = wait_for(job_id, lambda j: j["status"] == "RUNNING")
    task_id = running["task_id"]
    checkpoint = ckpt / task_id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and int(checkpoint.read_text() if checkpoint.exists()
                                              else 0) < 3:
        time.sleep(0.1)
    preempt(running["cluster"])
    done = wait_for(job_id, lambda j: j["status"] in FINAL)
    assert done["status"] == "SUCCEEDED", done
    assert done["recoveries"] == 1
    statuses = [e["status"] for e in done["events"] if e["status"] != "NOTE"]
    assert statuses == ["PENDING", "STARTING", "RUNNING", "RECOVERING", "RUNNING", "SUCCEEDED"]
    out = log_text(job_id)
    starts = [line for line in out.splitlines() if "starting at step" in line]
    assert len(starts) == 2 and starts[0] == f"task {task_id} starting at step 0"
    resumed = int(starts[1].rsplit(" ", 1)[1])
    assert resumed >= 3 and starts[1].startswith(f"task {task_id} ")  # same id, resumed
    assert "done after 12 steps" in out
    assert checkpoint.read_text().strip() == "12"


def test_a_killed_controller_is_replaced_and_the_job_runs_exactly_once(home, tmp_path):
    marks = tmp_path / "starts"
    task = tmp_path / "once.yaml"
    task.write_text(f"run: echo start >> {marks}; sleep 3; echo finished\n")
    job_id = submit(home, str(task))
    wait_for(job_id, lambda j: j["status"] == "RUNNING")
    pid = controller_pid(home)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # mid-run
    # Anything that looks at the jobs starts a new controller, which adopts the job.
    done = wait_for(job_id, lambda j: j["status"] in FINAL, timeout=120)
    assert done["status"] == "SUCCEEDED", done
    assert controller_pid(home) != pid
    assert marks.read_text() == "start\n"  # exactly once
    assert "finished" in log_text(job_id)


def test_cancel_stops_the_run_and_leaves_nothing(home, tmp_path):
    task = tmp_path / "long.yaml"
    task.write_text("run: sleep 600\n")
    job_id = submit(home, str(task))
    wait_for(job_id, lambda j: j["status"] == "RUNNING")
    assert sky("jobs", "cancel", str(job_id)).returncode == 0
    done = wait_for(job_id, lambda j: j["status"] in FINAL)
    assert done["status"] == "CANCELLED"
    assert [e["status"] for e in done["events"]][-2:] == ["CANCELLING", "CANCELLED"]
    assert json.loads(sky("status", "--json").stdout) == []
    assert processes_marked(f"{home}/") == []


def test_failures_restart_up_to_the_limit_then_fail(home, tmp_path):
    marks = tmp_path / "tries"
    task = tmp_path / "flaky.yaml"
    task.write_text(f"""
resources:
  job_recovery: {{max_restarts_on_errors: 2}}
run: echo try >> {marks}; exit 7
""")
    job_id = submit(home, str(task))
    done = wait_for(job_id, lambda j: j["status"] in FINAL)
    assert done["status"] == "FAILED" and done["restarts"] == 2
    assert marks.read_text().count("try") == 3


def test_an_exit_code_to_recover_on_is_rerun(home, tmp_path):
    marks = tmp_path / "tries"
    task = tmp_path / "retry.yaml"
    task.write_text(f"""
resources:
  job_recovery: {{recover_on_exit_codes: [33]}}
run: |
  echo try >> {marks}
  [ $(wc -l < {marks}) -ge 2 ] || exit 33
  echo ok
""")
    job_id = submit(home, str(task))
    done = wait_for(job_id, lambda j: j["status"] in FINAL)
    assert done["status"] == "SUCCEEDED" and marks.read_text().count("try") == 2


def test_a_pipeline_runs_as_one_job_in_order(home):
    job_id = submit(home, str(ROOT / "examples" / "pipeline.yaml"))
    done = wait_for(job_id, lambda j: j["status"] in FINAL)
    assert done["status"] == "SUCCEEDED" and done["task_index"] == done["num_tasks"] - 1


def test_setup_failure_and_bad_input(home, tmp_path):
    task = tmp_path / "bad_setup.yaml"
    task.write_text("setup: exit 4\nrun: echo never\n")
    job_id = submit(home, str(task))
    assert wait_for(job_id, lambda j: j["status"] in FINAL)["status"] == "FAILED_SETUP"
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text("resources: {accelerators: H100:8}\nrun: echo\n")
    result = sky("jobs", "launch", str(impossible), "-d")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    bad = sky("jobs", "launch", str(task), "--recovery", "SOMETIMES", "-d")
    assert bad.returncode == 2 and "FAILOVER or EAGER_NEXT_REGION" in bad.stderr


def test_a_controller_whose_home_is_deleted_exits(tmp_path, monkeypatch):
    """Its state is gone with the home: it must not keep running on unlinked files."""
    home = use_home(monkeypatch, tmp_path / "gone")
    monkeypatch.setenv("SKYHOP_JOBS_POLL_S", "0.3")
    assert sky("jobs", "queue").returncode == 0  # creates the home and its state
    controller = subprocess.Popen([sys.executable, "-m", "skyhop.jobs.controller"],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while controller_pid(home) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert controller_pid(home) == controller.pid and controller.poll() is None
        shutil.rmtree(home)
        # (it would otherwise idle for a minute before exiting)
        assert controller.wait(timeout=20) == 0, controller.stderr.read()
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()


def test_a_missing_mount_source_is_refused_before_the_job_is_stored(home, tmp_path):
    task = tmp_path / "t.yaml"
    task.write_text(f"run: true\nfile_mounts:\n  ~/data: {tmp_path / 'gone'}\n")
    result = sky("jobs", "launch", str(task), "-d")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and f"{task}:3:" in result.stderr
    assert queue() == [] and controller_pid(home) is None


@pytest.mark.parametrize("exit_code, final", [(0, "SUCCEEDED"), (3, "FAILED")])
def test_a_controller_dying_between_teardown_and_the_final_status_never_reruns_the_job(
        home, tmp_path, monkeypatch, exit_code, final):
    """The controller dies right after tearing a finished run's cluster down, before the
    final status is written: the next controller must finish the job, not run it again."""
    marks, crashed = tmp_path / "starts", tmp_path / "crashed"
    monkeypatch.setenv("SKYHOP_TEST_CRASH", f"after-teardown:{crashed}")
    task = tmp_path / "once.yaml"
    task.write_text(f"run: echo start >> {marks}; exit {exit_code}\n")
    job_id = submit(home, str(task))
    deadline = time.monotonic() + 120
    while not crashed.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert crashed.exists(), job(job_id)
    done = wait_for(job_id, lambda j: j["status"] in FINAL, timeout=120)
    assert done["status"] == final, done
    assert marks.read_text() == "start\n"  # exactly once
    assert json.loads(sky("status", "--json").stdout or "[]") == []  # its cluster is gone
