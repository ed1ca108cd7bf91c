"""Managed jobs on SSH pools: a machine that disappears mid-run (preemption) is detected
from the unreachable node, and the job recovers elsewhere with the same task id."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

import sshhosts
from conftest import use_home
from test_jobs_local import FINAL, finish_all, sky, submit, wait_for

pytestmark = pytest.mark.skipif(sshhosts.unavailable_reason() is not None,
                                reason=str(sshhosts.unavailable_reason()))

POOLS = {"east": ["10.213.0.51", "10.213.0.52"], "west": ["10.213.0.53", "10.213.0.54"]}


@pytest.fixture
def pools(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    # Checkpoints on storage every machine sees (here: this machine's /tmp, shared by the
    # namespaces), writable by the pool's login user.
    ckpt = Path(f"/tmp/skyhop-test-ckpt-{os.getpid()}-{time.monotonic_ns()}")
    ckpt.mkdir(mode=0o777)
    ckpt.chmod(0o777)
    with sshhosts.SSHHosts(tmp_path / "ssh") as hosts:
        for address in (a for pool in POOLS.values() for a in pool):
            hosts.add(address)
        (home / "config.yaml").write_text(json.dumps({"ssh_pools": {
            name: {"hosts": addresses, "user": sshhosts.USER,
                   "identity_file": str(hosts.client_key)}
            for name, addresses in POOLS.items()}}))
        use_home(monkeypatch, home)
        monkeypatch.setenv("SKYHOP_JOBS_POLL_S", "0.3")
        try:
            yield {"home": home, "hosts": hosts, "ckpt": ckpt}
        finally:
            finish_all(home)
            shutil.rmtree(ckpt, ignore_errors=True)


def _task(tmp_path: Path, ckpt: Path) -> Path:
    task = tmp_path / "train.yaml"
    task.write_text(f"""
resources: {{infra: ssh}}
run: |
  ckpt={ckpt}/$SKYHOP_TASK_ID
  step=$(cat $ckpt 2>/dev/null || echo 0)
  echo "task $SKYHOP_TASK_ID on $(hostname) from step $step"
  while [ $step -lt 16 ]; do sleep 0.5; step=$((step+1)); echo $step > $ckpt; done
  echo "done on $(hostname)"
""")
    return task


def _host_of(pools, cluster: str) -> str:
    record = json.loads(sky("status", "--json").stdout)
    [entry] = [c for c in record if c["name"] == cluster]
    return entry["nodes"][0]["address"]


def _run_until_step(pools, task_id: str, step: int) -> None:
    path = pools["ckpt"] / task_id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip().isdigit() and int(
                path.read_text()) >= step:
            return
        time.sleep(0.1)
    raise AssertionError("the job made no progress")


@pytest.mark.parametrize("strategy", ["FAILOVER", "EAGER_NEXT_REGION"])
def test_a_vanished_machine_is_recovered_elsewhere(pools, tmp_path, strategy):
    job_id = submit(pools["home"], str(_task(tmp_path, pools["ckpt"])), "--recovery", strategy)
    running = wait_for(job_id, lambda j: j["status"] == "RUNNING")
    first_host = _host_of(pools, running["cluster"])
    first_pool = next(p for p, hosts in POOLS.items() if first_host in hosts)
    _run_until_step(pools, running["task_id"], 3)
    pools["hosts"].remove(first_host)  # the machine is gone, with everything on it
    # (a lost machine is noticed after a few unanswered polls and connect timeouts)
    done = wait_for(job_id, lambda j: j["status"] in FINAL, timeout=300)
    assert done["status"] == "SUCCEEDED", done
    assert done["recoveries"] == 1 and done["task_id"] == running["task_id"]
    out = sky("jobs", "logs", str(job_id)).stdout
    starts = [line for line in out.splitlines() if " from step " in line]
    assert len(starts) == 2 and int(starts[1].rsplit(" ", 1)[1]) >= 3
    second_host = next(address for address, host in pools["hosts"].hosts.items()
                       if f"done on {host.namespace}" in out)
    assert second_host != first_host
    second_pool = next(p for p, hosts in POOLS.items() if second_host in hosts)
    if strategy == "EAGER_NEXT_REGION":  # the preempted pool still had a free host
        assert second_pool != first_pool
