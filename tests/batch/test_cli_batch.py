"""``orchestrator batch`` as a real process: output, summary, resume, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from orchestrator.settings import Settings
from tests.batch.conftest import (
    CORRECT,
    CRASH,
    PROBLEM,
    WRONG,
    batch_argv,
    batch_env,
    read_jsonl,
    run_batch_cli,
    write_jsonl,
)
from tests.conftest import assert_nothing_left


def test_humaneval_end_to_end_with_summary_and_resume(settings: Settings, tmp_path: Path) -> None:
    problems = write_jsonl(tmp_path / "problems.jsonl", [PROBLEM])
    completions = [CORRECT, WRONG, CRASH, CORRECT]
    samples = write_jsonl(tmp_path / "samples.jsonl.gz", [{"task_id": "T/0", "completion": c} for c in completions])
    out = tmp_path / "results.jsonl"
    args = [str(samples), "-o", str(out), "--format", "humaneval", "--problems", str(problems), "--k", "1,2,10"]
    proc = run_batch_cli(settings, *args, "--parallel", "2", "--cpu-time", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(out)
    assert sorted((r["id"], r["verdict"]) for r in records) == [
        ("T/0#0", "passed"), ("T/0#1", "failed"), ("T/0#2", "failed"), ("T/0#3", "passed")
    ]  # fmt: skip
    assert set(records[0]) >= {"id", "task", "verdict", "exit_code", "duration_ms", "stdout_tail", "stderr_tail"}
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert summary["verdicts"] == {"passed": 2, "failed": 2, "timed_out": 0, "limit_exceeded": 0, "infra_error": 0}
    assert summary["pass_at_k"] == {"pass@1": 0.5, "pass@2": 0.833333}  # 1 - C(2,2)/C(4,2); no pass@10 for n=4
    assert summary["samples_per_s"] > 0
    assert "pass@1 0.5000" in proc.stdout
    assert_nothing_left(settings)

    # a torn last line (killed mid-write) is dropped; finished samples are skipped
    kept = out.read_text().splitlines(keepends=True)[:2]
    out.write_text("".join(kept) + '{"id": "T/0#')
    proc = run_batch_cli(settings, *args, "--resume", "--quiet")
    assert proc.returncode == 0, proc.stderr
    again = read_jsonl(out)
    assert [r["id"] for r in again[:2]] == [json.loads(line)["id"] for line in kept]
    assert sorted(r["id"] for r in again) == ["T/0#0", "T/0#1", "T/0#2", "T/0#3"]
    assert json.loads((tmp_path / "results.summary.json").read_text())["ran_this_session"] == 2


def test_bad_input_exits_125_with_a_stable_code(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "command": ["true"], "limits": {"timeout_s": -1}}\n')
    proc = run_batch_cli(settings, str(bad), "-o", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 125 and "[batch.invalid_input]" in proc.stderr and "line 1" in proc.stderr
    proc = run_batch_cli(settings, str(bad), "-o", str(tmp_path / "o.jsonl"), "--provider", "x", "--server", "y")
    assert proc.returncode == 125 and "[batch.invalid_option]" in proc.stderr


def test_ctrl_c_keeps_finished_results_and_leaves_nothing(settings: Settings, tmp_path: Path) -> None:
    lines = [{"id": f"quick{i}", "command": ["true"]} for i in range(2)]
    lines += [{"id": f"slow{i}", "command": ["sh", "-c", "sleep 60 & sleep 60"]} for i in range(3)]
    warm = "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n"
    lines += [{"id": f"slow-warm{i}", "script": warm, "interpreter": ["python3"]} for i in range(3)]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", lines)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        batch_argv(str(jobs), "-o", str(out), "--parallel", "3", "--quiet"),
        env=batch_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sandboxes = settings.runtime_dir / "sandboxes"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # both quick ones written and slow ones running
        written = out.read_text().count("\n") if out.exists() else 0
        if written >= 2 and sandboxes.is_dir() and len(list(sandboxes.iterdir())) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    records = read_jsonl(out)  # every line is complete JSON
    assert sorted(r["id"] for r in records) == ["quick0", "quick1"]
    assert all(r["verdict"] == "passed" for r in records)
    assert json.loads((tmp_path / "out.summary.json").read_text())["interrupted"] is True
    assert_nothing_left(settings)


def test_a_killed_batch_leaves_nothing_after_the_next_start(settings: Settings, tmp_path: Path) -> None:
    """kill -9 mid-run (warm and cold samples running): the next batch removes what is left."""
    warm = "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n"
    lines = [
        {"id": "cold", "command": ["sh", "-c", "sleep 60 & sleep 60"]},
        {"id": "warm", "script": warm, "interpreter": ["python3"]},
    ]
    jobs = write_jsonl(tmp_path / "jobs.jsonl", lines)
    proc = subprocess.Popen(
        batch_argv(str(jobs), "-o", str(tmp_path / "out.jsonl"), "--parallel", "2", "--quiet"),
        env=batch_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sandboxes = settings.runtime_dir / "sandboxes"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (sandboxes.is_dir() and len(list(sandboxes.iterdir())) >= 2):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=10)
    empty = write_jsonl(tmp_path / "none.jsonl", [])
    again = run_batch_cli(settings, str(empty), "-o", str(tmp_path / "again.jsonl"), "--quiet")
    assert again.returncode == 0, again.stderr
    assert_nothing_left(settings)
