"""Every limit, hit on purpose by a real job, and the host left clean."""

from __future__ import annotations

import os
import textwrap
import time

import pytest

from orchestrator.engine import Engine
from orchestrator.result import JobResult, JobStatus
from orchestrator.spec import parse_job_spec
from tests.conftest import IS_ROOT

pytestmark = pytest.mark.usefixtures("no_leaks")


# Forks sleeping children until the kernel refuses one, then prints how many it made and fails.
FORK_UNTIL_REFUSED = """
import os, sys, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        n += 1
except OSError:
    print("forks", n); sys.exit(1)
"""


def run(engine: Engine, command: list[str], **limits: object) -> JobResult:
    return engine.run(parse_job_spec({"command": command, "limits": limits}))


def py(engine: Engine, code: str, **limits: object) -> JobResult:
    return run(engine, ["python3", "-c", textwrap.dedent(code)], **limits)


def test_wall_timeout_kills_daemonized_and_double_forked_children(engine: Engine) -> None:
    marker = f"1.{int.from_bytes(os.urandom(3), 'big'):08d}"
    started = time.monotonic()
    result = run(
        engine,
        [
            "sh",
            "-c",
            f"sleep 3{marker} & (setsid sleep 3{marker} &) ; nohup sleep 3{marker} >/dev/null 2>&1 & sleep 30",
        ],
        timeout_s=1,
    )
    assert result.status is JobStatus.TIMED_OUT
    assert result.error is not None and result.error.code == "limit.timeout"
    assert time.monotonic() - started < 10
    survivors = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker.encode() in open(f"/proc/{entry.name}/cmdline", "rb").read():
                    survivors.append(entry.name)
            except OSError:
                pass
    assert survivors == []


def test_cpu_time_limit(engine: Engine) -> None:
    result = py(engine, "while True: pass", cpu_s=1, timeout_s=30)
    assert result.status is JobStatus.LIMIT_EXCEEDED, result
    assert result.error is not None and result.error.code == "limit.cpu"


def test_cpu_time_limit_counts_all_processes(engine: Engine) -> None:
    if not IS_ROOT:
        pytest.skip("a total across processes needs a cgroup (root)")
    code = """
    import os
    for _ in range(4):
        if os.fork() == 0:
            while True: pass
    while True: pass
    """
    result = py(engine, code, cpu_s=1.5, timeout_s=30)
    assert result.status is JobStatus.LIMIT_EXCEEDED, result
    assert result.error is not None and result.error.code == "limit.cpu"


def test_memory_limit(engine: Engine) -> None:
    result = py(engine, "x = bytearray(300 * 1024 * 1024); print('allocated')", memory_mb=64)
    assert result.status is JobStatus.LIMIT_EXCEEDED, result
    assert "allocated" not in result.stdout
    if IS_ROOT:
        assert result.error is not None and result.error.code == "limit.memory"


def test_fork_bomb_is_contained_and_host_stays_responsive(engine: Engine) -> None:
    started = time.monotonic()
    result = run(engine, ["bash", "-c", ":(){ :|:& };: ; sleep 2; exit 1"], pids=32, timeout_s=20)
    assert result.status in (JobStatus.LIMIT_EXCEEDED, JobStatus.COMPLETED), result
    assert time.monotonic() - started < 20
    # The host can still start processes at once.
    probe = time.monotonic()
    os.system("true")
    assert time.monotonic() - probe < 2


def test_pids_limit_reported(engine: Engine) -> None:
    result = py(engine, FORK_UNTIL_REFUSED, pids=20, timeout_s=20)
    forks = int(result.stdout.split()[-1])
    assert forks < 20
    if IS_ROOT:
        assert result.status is JobStatus.LIMIT_EXCEEDED, result
        assert result.error is not None and result.error.code == "limit.pids"


def test_disk_limit(engine: Engine) -> None:
    result = run(
        engine, ["sh", "-c", "dd if=/dev/zero of=/workspace/big bs=1M count=64 2>&1; exit 1"], disk_mb=8, memory_mb=256
    )
    assert result.status is JobStatus.LIMIT_EXCEEDED, result
    assert result.error is not None and result.error.code == "limit.disk"


def test_output_is_capped_without_blocking_the_job(engine: Engine) -> None:
    code = """
    import sys
    chunk = "x" * 65536
    for _ in range(160):  # 10 MiB on each stream
        sys.stdout.write(chunk); sys.stderr.write(chunk)
    sys.stdout.flush()
    print("done", file=sys.stderr)
    """
    result = py(engine, code, output_bytes=1000, timeout_s=30)
    assert result.status is JobStatus.COMPLETED, result
    assert result.exit_code == 0
    assert len(result.stdout) == 1000 and len(result.stderr) == 1000
    assert result.stdout_truncated and result.stderr_truncated


def test_unbounded_spec_still_gets_safe_defaults(engine: Engine) -> None:
    spec = parse_job_spec({"command": ["true"]})
    assert spec.limits.timeout_s <= 600 and spec.limits.memory_mb <= 4096 and spec.limits.pids <= 4096
    assert engine.run(spec).status is JobStatus.COMPLETED


def test_limits_hold_without_prlimit_in_the_sandbox(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rootfs without util-linux's prlimit: every limit is still set, between fork and exec."""
    from orchestrator.providers.linux import spawn

    monkeypatch.setattr(spawn, "PRLIMIT", "/nonexistent/prlimit")
    assert py(engine, "print('ok')").stdout == "ok\n"
    cpu = py(engine, "while True: pass", cpu_s=1, timeout_s=30)
    assert cpu.status is JobStatus.LIMIT_EXCEEDED and cpu.error is not None and cpu.error.code == "limit.cpu"
    forks = py(engine, FORK_UNTIL_REFUSED, pids=20, timeout_s=20)
    assert int(forks.stdout.split()[-1]) < 20
    uid = py(engine, "import os; print(os.getuid())")
    assert uid.stdout == "1000\n"
