"""Secrets given inline in a task file reach the job's environment and nothing at rest: no
file under the skyhop home (state database and its WAL, logs, job records) holds them in
clear, and the home itself is its owner's alone."""

import json
import stat
import time

import pytest

from conftest import run_cli, use_home

SECRET = "s3cr3t-" + "7f1c9a0e5b2d4c68"  # distinctive: found only where it really is


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = use_home(monkeypatch, tmp_path / "home")
    yield home
    run_cli("jobs", "cancel", "--all")
    run_cli("down", "-a", "-y")


def files_holding(root, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:
                pass
    return found


def test_inline_secrets_are_nowhere_in_clear_under_the_home(home, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(f"name: sec\nsecrets:\n  TOKEN: {SECRET}\n"
                    "run: test -n \"$TOKEN\" && echo token of ${#TOKEN} characters\n")
    launched = run_cli("launch", str(task), "-c", "sec")
    assert launched.returncode == 0, launched.stderr
    assert "token of 23 characters" in launched.stdout + launched.stderr
    submitted = run_cli("jobs", "launch", str(task), "-d")
    assert submitted.returncode == 0, submitted.stderr
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = json.loads(run_cli("jobs", "queue", "--json").stdout)
        if jobs and jobs[0]["status"] in ("SUCCEEDED", "FAILED", "FAILED_SETUP",
                                          "FAILED_NO_RESOURCE", "CANCELLED"):
            break
        time.sleep(0.3)
    assert jobs[0]["status"] == "SUCCEEDED", jobs
    assert "token of 23 characters" in run_cli("jobs", "logs", str(jobs[0]["id"])).stdout
    assert files_holding(home, SECRET.encode()) == []
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "state.db").stat().st_mode) == 0o600


def test_secret_flags_keep_values_out_of_argv_and_the_home(home, tmp_path, monkeypatch):
    """`--secret NAME` takes the value from the caller's environment and `--env-file` from a
    file, so no secret needs argv; neither value lands under the home, managed or not."""
    from_env, from_file = SECRET + "-env", SECRET + "-file"
    monkeypatch.setenv("API_TOKEN", from_env)
    env_file = tmp_path / "job.env"
    env_file.write_text(f"# read by --env-file\nexport DB_PASSWORD='{from_file}'\nPLAIN=1\n")
    task = tmp_path / "task.yaml"
    task.write_text("secrets:\n  DB_PASSWORD: null\n"
                    "run: echo lengths ${#API_TOKEN} ${#DB_PASSWORD} plain=$PLAIN\n")
    args = ("--secret", "API_TOKEN", "--env-file", str(env_file))
    launched = run_cli("launch", str(task), "-c", "flags", *args)
    assert launched.returncode == 0, launched.stderr
    assert "lengths 27 28 plain=1" in launched.stdout + launched.stderr
    executed = run_cli("exec", "flags", str(task), *args)
    assert executed.returncode == 0, executed.stderr
    assert "lengths 27 28 plain=1" in executed.stdout + executed.stderr
    submitted = run_cli("jobs", "launch", str(task), *args)  # follows to the end
    assert submitted.returncode == 0, submitted.stderr
    assert "lengths 27 28 plain=1" in submitted.stdout + submitted.stderr
    for value in (from_env, from_file):
        assert files_holding(home, value.encode()) == []


def test_a_secret_flag_naming_an_unset_variable_is_refused(home):
    result = run_cli("launch", "echo hi", "-c", "nosecret", "--secret", "SKYHOP_TEST_UNSET")
    assert result.returncode == 2
    assert "SKYHOP_TEST_UNSET is not set in your environment" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "local").exists()
