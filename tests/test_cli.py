"""``orchestrator run`` and ``doctor`` as real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from tests.conftest import (
    assert_nothing_left,
    make_root_dir,
    orchestrator_env,
    sandbox_uid_processes,
)


def cli_env(settings: Settings) -> dict[str, str]:
    return orchestrator_env(settings)


def cli(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=cli_env(settings),
        timeout=timeout,
    )


def test_run_streams_output_and_returns_the_exit_code(settings: Settings) -> None:
    proc = cli(settings, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert proc.returncode == 7
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr
    assert_nothing_left(settings)


def test_run_json_result_document(settings: Settings, tmp_path: Path) -> None:
    source = make_root_dir("orch-cli-in-")
    (source / "input.txt").write_text("42\n")
    os.chmod(source / "input.txt", 0o644)
    out = tmp_path / "out"
    proc = cli(
        settings,
        "run", "--json", "--map", f"{source}:/data", "--env", "GREETING=hi", "--artifacts", "*.txt",
        "--output", str(out), "--memory", "128", "--timeout", "20",
        "--", "sh", "-c", "cat /data/input.txt > /workspace/copy.txt; echo $GREETING",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "completed" and doc["exit_code"] == 0 and doc["stdout"] == "hi\n"
    assert doc["provider"] == "linux" and doc["error"] is None
    assert [a["path"] for a in doc["artifacts"]] == ["copy.txt"]
    assert (out / "copy.txt").read_text() == "42\n"
    assert set(doc["timings"]) == {"provision_ms", "run_ms", "collect_ms", "teardown_ms"}
    assert_nothing_left(settings)
    events = [json.loads(line) for line in (settings.data_dir / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == [
        "queued",
        "provisioning",
        "running",
        "collecting",
        "tearing_down",
        "completed",
    ]
    assert {e["job_id"] for e in events} == {doc["id"]}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--provider", "nope", "--", "true"], "provider.unknown"),
        (["--map", "/does/not/exist:/in", "--", "true"], "spec.invalid_mount"),
        (["--map", "relative/path:/in", "--", "true"], "spec.invalid_mount"),
        (["--map", "/tmp:/usr/lib", "--", "true"], "spec.invalid_mount"),
        (["--map", "/tmp:/workspace/../etc", "--", "true"], "spec.invalid_mount"),
        (["--map", "/tmp:relative", "--", "true"], "spec.invalid_mount"),
        (["--timeout", "-5", "--", "true"], "spec.invalid"),
        (["--memory", "99999999", "--", "true"], "spec.invalid"),
        (["--timeout", "90000", "--", "true"], "spec.limit_exceeds_maximum"),
        (["--env", "NOEQUALS", "--", "true"], "spec.invalid_env"),
        (["--", "/no/such/program"], "job.command_not_found"),
        (["--spec", "/no/such/spec.json"], "spec.unreadable"),
        ([], "spec.invalid_command"),
    ],
)
def test_bad_input_exits_125_with_a_stable_code(settings: Settings, args: list[str], code: str) -> None:
    proc = cli(settings, "run", "--json", *args)
    assert proc.returncode == 125, proc.stderr
    doc = json.loads(proc.stdout)
    error = doc["error"]
    assert error["code"] == code, error
    assert f"[{code}]" in proc.stderr
    assert_nothing_left(settings)


def test_exit_codes_follow_docker(settings: Settings) -> None:
    assert cli(settings, "run", "--timeout", "0.5", "--", "sleep", "10").returncode == 124
    assert cli(settings, "run", "--cpu-time", "1", "--", "python3", "-c", "while 1: pass").returncode == 137
    assert_nothing_left(settings)


def test_big_inline_file_is_refused(settings: Settings, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    proc = cli(settings, "run", "--json", "--file", f"big.bin={big}", "--", "true")
    assert proc.returncode == 125
    assert json.loads(proc.stdout)["error"]["code"] in ("spec.invalid", "spec.too_large")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killing_the_cli_leaves_nothing_behind(settings: Settings, sig: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "--", "sh", "-c", "sleep 60 & sleep 60"],
        env=cli_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sandboxes = settings.runtime_dir / "sandboxes"
    for _ in range(500):
        if sandboxes.is_dir() and any(sandboxes.iterdir()):
            break
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    if sig != signal.SIGKILL:
        assert proc.returncode == 130
        assert_nothing_left(settings)
        return
    # After kill -9 the processes die with their parent; the next run reaps what is left on disk.
    deadline = time.monotonic() + 20
    while sandbox_uid_processes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any((settings.runtime_dir / "sandboxes").iterdir())
    assert cli(settings, "run", "--", "true").returncode == 0
    assert_nothing_left(settings)


def test_doctor_reports_linux_available(settings: Settings) -> None:
    proc = cli(settings, "doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = {entry["provider"]: entry for entry in json.loads(proc.stdout)}
    assert report["linux"]["available"] is True
    assert report["linux"]["default"] is True
    for name in ("hyperv", "wsb"):
        assert report[name]["available"] is False
        assert report[name]["reason"]


def test_doctor_notes_a_runtime_dir_on_disk(settings: Settings) -> None:
    from orchestrator.providers.linux.workspace import filesystem_type

    assert filesystem_type(Path("/proc/self")) == "proc"
    settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    on_disk = filesystem_type(settings.runtime_dir) != "tmpfs"
    proc = cli(settings, "doctor", "--json")
    linux = next(entry for entry in json.loads(proc.stdout) if entry["provider"] == "linux")
    assert ("note" in linux["details"]) is on_disk, linux["details"]
    if Path("/dev/shm").is_dir() and filesystem_type(Path("/dev/shm")) == "tmpfs":
        shm = Path(tempfile.mkdtemp(prefix="orch-doctor-", dir="/dev/shm"))
        try:
            env = {**cli_env(settings), "ORCH_RUNTIME_DIR": str(shm)}
            out = subprocess.run(
                [sys.executable, "-m", "orchestrator", "doctor", "--json"], capture_output=True, text=True, env=env
            )
            linux = next(entry for entry in json.loads(out.stdout) if entry["provider"] == "linux")
            assert "note" not in linux["details"], linux["details"]
        finally:
            shutil.rmtree(shm, ignore_errors=True)
