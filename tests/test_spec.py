"""The task language: SkyPilot files load unchanged; bad input points at file:line:col."""

import pytest

from skyhop.errors import SpecError
from skyhop.spec import Dag, Resources, Task, load_dag, parse_dag
from skyhop.spec.fields import Amount, InfraPattern

# From SkyPilot's docs (docs/source/reference/yaml-spec.rst and examples/), unchanged.
SKYPILOT_DOC_TASK = """\
name: my-task

workdir: ~/my-task-code

num_nodes: 4

resources:
  # Infra to use. Click to see schema and example values.
  infra: aws

  # Hardware.
  accelerators: H100:8
  accelerator_args:
    runtime_version: tpu-vm-base
  cpus: 4+
  memory: 32+
  instance_type: p3.8xlarge
  use_spot: false
  disk_size: 256
  disk_tier: medium
  network_tier: best

  # Config.
  image_id: ami-0868a20f5a3bf9702
  ports: 8081
  labels:
    my-label: my-value

  any_of:
    - infra: aws/us-west-2
      accelerators: H100
    - infra: gcp/us-central1
      accelerators: H100

  job_recovery:
    strategy: FAILOVER
    max_restarts_on_errors: 3

  autostop:
    idle_minutes: 10
    down: true

envs:
  MY_BUCKET: skypilot-temp-gcs-test
  MY_LOCAL_PATH: tmp-workdir
  MODEL_SIZE: 13b

secrets:
  HF_TOKEN: my-secret-value
  WANDB_API_KEY: null

file_mounts:
  # Uses rsync to sync local files/directories to all nodes of the cluster.
  /remote/path: /local/path

  /remote/dir/file: /local/dir/file
  /datasets-storage:
    name: sky-dataset
    source: /local/path/datasets
    store: s3
    persistent: true
    mode: MOUNT

setup: |
  echo "Begin setup."
  pip install -r requirements.txt
  echo "Setup complete."

run: |
  echo "Begin run."
  python train.py
  echo Env var MODEL_SIZE has value: ${MODEL_SIZE}

config:
  kubernetes:
    provision_timeout: 600
"""

SKYPILOT_PIPELINE = """\
name: pipeline

---

name: train
resources:
  accelerators: L4:4
run: python train.py

---

name: eval
resources:
  accelerators: L4:1
run: python eval.py
"""


def test_skypilot_reference_task_parses_unchanged():
    dag = parse_dag(SKYPILOT_DOC_TASK, "task.yaml")
    task = dag.tasks[0]
    assert task.name == "my-task" and task.num_nodes == 4
    r = task.resources
    assert r.infra == InfraPattern("aws")
    assert r.accelerators == (("H100", 8.0),)
    assert r.cpus == Amount(4, or_more=True)
    assert r.ports == ("8081",)
    alternatives = r.alternatives()
    assert [str(a.infra) for a in alternatives] == ["aws/us-west-2", "gcp/us-central1"]
    assert all(a.accelerators == (("H100", 1.0),) for a in alternatives)
    assert all(a.cpus == Amount(4, or_more=True) for a in alternatives)  # shared fields kept
    assert task.envs["MODEL_SIZE"] == "13b"
    assert task.secrets["WANDB_API_KEY"] is None
    assert (r.autostop.idle_minutes, r.autostop.down) == (10, True)


@pytest.mark.parametrize("written, expected", [
    ("true", (5, False, "jobs_and_ssh")), ("false", None), ("10", (10, False, "jobs_and_ssh")),
    ("10m", (10, False, "jobs_and_ssh")), ("'1h'", (60, False, "jobs_and_ssh")),
    ("0", (0, False, "jobs_and_ssh")), ("{idle_minutes: 3}", (3, False, "jobs_and_ssh")),
    ("{idle_minutes: 2h, down: true, wait_for: jobs}", (120, True, "jobs")),
    ("{wait_for: none}", (5, False, "none"))])
def test_autostop_takes_skypilots_forms(written, expected):
    a = parse_dag(f"resources:\n  autostop: {written}\nrun: x\n").tasks[0].resources.autostop
    assert (None if a is None else (a.idle_minutes, a.down, a.wait_for)) == expected


@pytest.mark.parametrize("written, message", [
    ("banana", "is not an idle time"), ("-3", ">= 0"), ("{hook: 'git push'}", "hooks"),
    ("{wait_for: ssh}", "wait_for 'ssh' is not one of"), ("{idle: 3}", "unknown autostop field"),
    ("{down: maybe}", "down must be true or false")])
def test_bad_autostop_says_where_and_how(written, message):
    with pytest.raises(SpecError) as err:
        parse_dag(f"resources:\n  autostop: {written}\nrun: x\n", "t.yaml")
    assert str(err.value).startswith("t.yaml:2:") and message in str(err.value)


def test_secret_values_never_show_in_repr_or_dump():
    task = parse_dag(SKYPILOT_DOC_TASK).tasks[0]
    assert "my-secret-value" not in repr(task)
    assert "my-secret-value" not in str(task.model_dump())
    assert task.secrets["HF_TOKEN"].get_secret_value() == "my-secret-value"


def test_multi_document_file_is_a_chain_named_by_header():
    dag = parse_dag(SKYPILOT_PIPELINE)
    assert dag.name == "pipeline"
    assert [t.name for t in dag.tasks] == ["train", "eval"]
    assert dag.edges == [(0, 1)]


def test_depends_on_builds_any_dag():
    text = "\n---\n".join([
        "name: a\nrun: x", "name: b\ndepends_on: a\nrun: x", "name: c\ndepends_on: [a]\nrun: x",
        "name: d\ndepends_on: [b, c]\nrun: x"])
    dag = parse_dag(text)
    assert dag.edges == [(0, 1), (0, 2), (1, 3), (2, 3)]
    assert dag.order[0] == 0 and dag.order[-1] == 3


@pytest.mark.parametrize(("value", "expected"), [
    ("A100", (("A100", 1.0),)),
    ("A100:8", (("A100", 8.0),)),
    ({"A100": 8, "H100": 8}, (("A100", 8.0), ("H100", 8.0))),
    (["A100:8", "H100:4"], (("A100", 8.0), ("H100", 4.0))),
    ("tpu-v5p-8", (("tpu-v5p-8", 1.0),)),
])
def test_accelerator_forms(value, expected):
    assert Resources(accelerators=value).accelerators == expected


def test_memory_and_cpu_forms():
    r = Resources(cpus="8+", memory="4x")
    assert r.cpus == Amount(8, True)
    assert r.memory.per_cpu and r.memory.amount.value == 4
    assert Resources(memory=32).memory.amount == Amount(32, False)
    assert Resources(memory="32+").memory.amount == Amount(32, True)


def test_old_cloud_region_zone_fields_become_infra():
    r = Resources(cloud="gcp", zone="us-central1-a")
    assert str(r.infra) == "gcp/*/us-central1-a"


def test_estimated_hours_forms():
    assert parse_dag("run: x\nestimated_hours: 90m").tasks[0].estimated_hours == 1.5
    task = parse_dag("resources: {accelerators: {V100: 1, A100: 1}}\n"
                     "estimated_hours: {V100: 10, A100: 4}").tasks[0]
    assert task.estimated_hours == {"V100": 10.0, "A100": 4.0}


def test_inputs_and_outputs_forms():
    task = parse_dag("inputs: {s3://b/x: 100}\noutputs: 5\nrun: x").tasks[0]
    assert task.inputs[0].provider == "aws" and task.inputs[0].gigabytes == 100
    assert task.output_gigabytes == 5
    task = parse_dag("inputs: {gs://b: {gigabytes: 3, region: us-central1}}").tasks[0]
    assert (task.inputs[0].provider, task.inputs[0].region) == ("gcp", "us-central1")


BAD = [
    ("resources:\n  acclerators: A100\n", "f.yaml:2:3", "unknown field 'acclerators'; did you "
                                                        "mean 'accelerators'?"),
    ("name: x\nnum_nodes: two\n", "f.yaml:2:12", "num_nodes"),
    ("resources:\n  cpus: lots\n", "f.yaml:2:9", "cpus 'lots' is not a count"),
    ("resources:\n  infra: awz/us-east-1\n", "f.yaml:2:10", "did you mean 'aws'?"),
    ("resources:\n  any_of:\n    - accelerators: A100\n    - cpus: x\n", "f.yaml:4:13",
     "cpus 'x'"),
    ("run: [\n", "f.yaml:2:1", "invalid YAML"),
    ("name: a\nname: b\n", "f.yaml:2:1", "duplicate key 'name'"),
    ("name: a\ndepends_on: b\nrun: x\n---\nname: b\ndepends_on: a\nrun: x\n", "f.yaml:",
     "dependency cycle"),
    ("name: a\ndepends_on: zz\nrun: x\n", "f.yaml:2:13", "unknown task 'zz'"),
    ("resources:\n  cloud: aws\n  infra: gcp\n", "f.yaml:2:3", "not both"),
    ("resources:\n  accelerators: A100:x\n", "f.yaml:2:17", "not a number"),
    ("- just\n- a list\n", "f.yaml:1:1", "must be a mapping"),
]


@pytest.mark.parametrize(("text", "where", "message"), BAD)
def test_bad_input_reports_file_line_col(text, where, message):
    with pytest.raises(SpecError) as info:
        parse_dag(text, "f.yaml")
    assert str(info.value).startswith(where), str(info.value)
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_dag(tmp_path / "nope.yaml")


def test_python_construction():
    a = Task(name="a", run="echo a", resources=Resources(accelerators="A100:8"))
    b = Task(name="b", run="echo b", depends_on=["a"])
    dag = Dag.from_tasks([a, b])
    assert dag.edges == [(0, 1)]
    with pytest.raises(ValueError):
        Resources(cpus="many")
