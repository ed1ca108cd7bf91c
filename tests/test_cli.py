"""The `skyhop` command as a user runs it: real processes, real output, exit codes."""

import json

from conftest import ROOT, run_cli

EXAMPLES = ROOT / "examples"


def test_optimize_json_has_the_documented_shape():
    result = run_cli("optimize", str(EXAMPLES / "plan_pipeline.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)  # nothing but JSON on stdout
    assert set(plan) == {"objective", "total_cost", "total_hours", "tasks", "egress"}
    assert [t["name"] for t in plan["tasks"]] == ["preprocess", "train", "eval"]
    assert set(plan["tasks"][0]) == {"name", "provider", "region", "zone", "instance_type",
                                     "accelerators", "use_spot", "num_nodes", "hourly_price",
                                     "est_hours", "est_cost"}
    assert all(set(e) == {"src", "dst", "gigabytes", "cost"} for e in plan["egress"])
    total = sum(t["est_cost"] for t in plan["tasks"]) + sum(e["cost"] for e in plan["egress"])
    assert abs(total - plan["total_cost"]) < 1e-4


def test_optimize_table_shows_considered_chosen_and_egress():
    result = run_cli("optimize", str(EXAMPLES / "plan_pipeline.yaml"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Considered resources" in out and "✔" in out and "Data movement" in out
    assert "Total: $" in out


def test_minimize_time_with_budget_and_deadline_flags():
    ok = run_cli("optimize", str(EXAMPLES / "plan_pipeline.yaml"), "--minimize", "time", "--json")
    fast = json.loads(ok.stdout)
    assert fast["objective"] == "time"
    cheap = json.loads(run_cli("optimize", str(EXAMPLES / "plan_pipeline.yaml"), "--json").stdout)
    assert fast["total_hours"] <= cheap["total_hours"]
    late = run_cli("optimize", str(EXAMPLES / "plan_pipeline.yaml"), "--deadline", "1h")
    assert late.returncode == 2 and "deadline" in late.stderr and "Traceback" not in late.stderr


def test_bad_yaml_is_one_message_with_location_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nresources:\n  acelerators: V100\nrun: echo\n")
    result = run_cli("optimize", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}:3:3: unknown field 'acelerators'")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("resources: {cpus: lots}\n")
    result = run_cli("--debug", "optimize", str(bad))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_unknown_gpu_and_infeasible_constraints_exit_2(tmp_path):
    task = tmp_path / "t.yaml"
    task.write_text("resources:\n  accelerators: H1000:8\n")
    result = run_cli("optimize", str(task))
    assert result.returncode == 2 and "did you mean 'H100'" in result.stderr
    task.write_text("resources:\n  accelerators: H100:8\n  max_hourly_cost: 0.5\n")
    result = run_cli("optimize", str(task))
    assert result.returncode == 2 and "max_hourly_cost" in result.stderr


def test_bad_flags_exit_2():
    for args in (["--minimize", "speed"], ["--infra", "awz"], ["--block", "aws/a/b/c/d"],
                 ["--deadline", "soon"]):
        result = run_cli("optimize", str(EXAMPLES / "train.yaml"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_missing_file_exit_2():
    result = run_cli("optimize", "no-such-file.yaml")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_catalog_gpus_lists_cheapest_per_provider_and_count():
    result = run_cli("catalog", "gpus", "a100", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["accelerator"] for r in rows} == {"A100"}
    assert {"aws", "gcp", "azure", "lambda"} <= {r["provider"] for r in rows}
    keys = [(r["count"], r["provider"]) for r in rows]
    assert len(keys) == len(set(keys))  # one row per provider and count
    aws = run_cli("catalog", "gpus", "A100", "--provider", "aws", "--all-regions", "--json")
    regions = json.loads(aws.stdout)
    assert {r["provider"] for r in regions} == {"aws"} and len(regions) > 1
    summary = json.loads(run_cli("catalog", "gpus", "--json").stdout)
    assert any(r["accelerator"] == "H100" for r in summary)


def test_catalog_offers_sorted_by_price():
    result = run_cli("catalog", "offers", "--gpus", "A100:8", "--cpus", "8+", "--memory", "32+",
                     "--infra", "aws/us-east-1", "--spot", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and all(r["provider"] == "aws" and r["region"] == "us-east-1" for r in rows)
    prices = [r["price"] for r in rows]
    assert prices == sorted(prices) and all(r["use_spot"] for r in rows)


def test_catalog_offers_bad_input():
    result = run_cli("catalog", "offers", "--gpus", "A100:x")
    assert result.returncode == 2 and "--gpus" in result.stderr
    result = run_cli("catalog", "gpus", "Z9000")
    assert result.returncode == 2 and "unknown accelerator" in result.stderr


def test_help_and_version():
    assert run_cli("--help").returncode == 0
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("skyhop ")
