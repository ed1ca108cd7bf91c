"""`skyhop simulate` through its typer command (registered on a small app here, as the main app
registers it), on hand-made traces and task files; and on the real traces when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import SHARED_DATA
from skyhop.cli import simulate
from skyhop.errors import UserError

REAL_TRACES = (SHARED_DATA / "spot-traces" / "skypilot-org_spot-traces" / "availability"
               / "1-node" / "aws-10-26-2022")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """skyhop (test app)"""

    simulate.register(app)
    return app


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["simulate", *args])


def write_trace(path: Path, data: list[int], gap_s: int = 600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap_s}, "data": data}))
    return path


@pytest.fixture
def task(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text("name: train\nresources:\n  accelerators: V100:1\nestimated_hours: 4\n"
                    "run: python train.py\n")
    return path


def test_json_reports_costs_deadline_and_hours_for_one_trace(app, task, tmp_path):
    trace = write_trace(tmp_path / "us-east-1a_v100_1.json", [1] * 12 + [0] * 12 + [1] * 24)
    result = invoke(app, str(task), "--trace", str(trace), "--policy", "greedy",
                    "--deadline", "6h", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["policy"] == "greedy" and row["deadline_met"] and row["finish_h"] <= 6
    assert row["instance_type"] == "p3.2xlarge" and row["region"] == "us-east-1"
    assert row["compute_h"] == 4 and row["changeover_h"] == 0.2
    assert row["omniscient_cost"] <= row["cost"] <= row["on_demand_only_cost"]
    assert row["spot_hours"] > 0 and row["preemptions"] == 1


def test_a_folder_replays_every_single_node_trace_in_it(app, task, tmp_path):
    write_trace(tmp_path / "t" / "a" / "us-west-2a_v100_1.json", [1, 0] * 30)
    write_trace(tmp_path / "t" / "b" / "us-west-2b_v100_1.json", [0] * 60)
    write_trace(tmp_path / "t" / "b" / "us-west-2c_v100_1.json", [4, 2] * 30)  # 4-node trace
    result = invoke(app, str(task), "--trace", str(tmp_path / "t"), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["trace_file"] for r in rows] == ["a/us-west-2a_v100_1.json",
                                               "b/us-west-2b_v100_1.json"]
    assert all(r["policy"] == "skyhop" and r["deadline_met"] for r in rows)
    assert rows[1]["spot_hours"] == 0  # no spot at all: on-demand


def test_table_output_names_the_policy_job_and_columns(app, task, tmp_path):
    trace = write_trace(tmp_path / "us-east-2a_v100_1.json", [1] * 60)
    result = invoke(app, str(task), "--trace", str(trace), "--policy", "uniform-progress",
                    "--hours", "2h", "--changeover", "6m", "--start-hour", "1")
    assert result.exit_code == 0, result.output
    assert "uniform-progress: 2 h job, deadline 2.5 h, changeover 0.1 h" in result.output
    for column in ("OMNISCIENT", "ON DEMAND ONLY", "SPOT H", "PREEMPTIONS"):
        assert column in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--trace", "missing.json"], "does not exist"),
    (["--trace", "{empty}"], "has no data"),
    (["--trace", "{bad}"], "is not a spot trace"),
    (["--trace", "{ok}", "--deadline", "3h"], "shorter than the job"),
    (["--trace", "{ok}", "--deadline", "soon"], "--deadline"),
    (["--trace", "{ok}", "--policy", "greedie"], "did you mean 'greedy'"),
    (["--trace", "{ok}", "--deadline", "30h"], "too short"),
])
def test_bad_input_is_one_user_error(app, task, tmp_path, args, message):
    files = {"empty": write_trace(tmp_path / "us-east-1a_e.json", []),
             "ok": write_trace(tmp_path / "us-east-1a_v100_1.json", [1] * 60)}
    bad = tmp_path / "us-east-1a_bad.json"
    bad.write_text("{not json")
    files["bad"] = bad
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    result = invoke(app, str(task), *args)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception)


def test_the_job_length_must_be_known(app, tmp_path):
    task = tmp_path / "t.yaml"
    task.write_text("run: echo hi\n")
    trace = write_trace(tmp_path / "us-east-1a_v100_1.json", [1] * 60)
    result = invoke(app, str(task), "--trace", str(trace))
    assert isinstance(result.exception, UserError)
    assert "--hours" in str(result.exception)
    ok = invoke(app, str(task), "--trace", str(trace), "--hours", "90m", "--instance-type",
                "p3.2xlarge", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)[0]["compute_h"] == 1.5


@pytest.mark.skipif(not REAL_TRACES.is_dir(), reason=f"spot traces not present at {REAL_TRACES}")
def test_real_traces_every_policy_meets_a_60h_deadline(app, tmp_path):
    task = tmp_path / "job.yaml"
    task.write_text("resources:\n  accelerators: V100:1\nestimated_hours: 48\nrun: train\n")
    for policy in ("greedy", "uniform_progress", "skyhop"):
        result = invoke(app, str(task), "--trace", str(REAL_TRACES), "--policy", policy,
                        "--deadline", "60h", "--start-hour", "200", "--json")
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        assert len(rows) == 8 and all(r["deadline_met"] for r in rows)
        assert all(r["omniscient_cost"] <= r["cost"] + 1e-9 for r in rows)
