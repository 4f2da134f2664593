"""The fork server every sandbox starts through: limits and cgroup in place before bubblewrap runs."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from orchestrator.engine import Engine
from orchestrator.providers.linux import cgroups, spawn
from orchestrator.providers.linux.provider import LinuxProvider
from orchestrator.providers.linux.spawner import FORK_SERVER
from orchestrator.result import JobResult, JobStatus
from orchestrator.spec import parse_job_spec
from tests.conftest import IS_ROOT

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_limits_are_in_place_before_the_job_starts(engine: Engine) -> None:
    code = "import resource as r; print(r.getrlimit(r.RLIMIT_CPU), r.getrlimit(r.RLIMIT_CORE))"
    result = engine.run(parse_job_spec({"command": ["python3", "-c", code], "limits": {"cpu_s": 3}}))
    assert result.status is JobStatus.COMPLETED, result
    assert result.stdout == "(3, 4) (0, 0)\n"


def test_jobs_start_with_default_signals_whatever_the_control_plane_ignores(engine: Engine) -> None:
    """Python ignores SIGPIPE and SIGXFSZ, ``nohup`` SIGHUP: a job must get the defaults all the same."""
    FORK_SERVER.close()  # the next job starts a fork server that inherits SIGHUP ignored
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        code = "grep -E '^Sig(Ign|Blk)' /proc/self/status"
        result = engine.run(parse_job_spec({"command": ["sh", "-c", code]}))
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert result.status is JobStatus.COMPLETED, result
    fields = dict(line.split(":") for line in result.stdout.splitlines())
    glibc_internal = (1 << 31) | (1 << 32)  # signals 32 and 33: glibc's, out of anyone's reach
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigIgn"], 16) & ~glibc_internal == 0, fields


@pytest.mark.skipif(not IS_ROOT, reason="per-job cgroups need root")
def test_the_whole_sandbox_runs_inside_its_cgroup(engine: Engine) -> None:
    """bubblewrap itself and the job's pid 1 are members from their first instruction."""
    provider = engine.provider("linux")
    assert isinstance(provider, LinuxProvider)
    sandbox = provider.create("spawn-cgroup", parse_job_spec({"command": ["true"]}))
    try:
        assert sandbox.cgroup is not None
        started = spawn.start(
            provider, sandbox, ["sleep", "30"], {}, "/workspace",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(started.status_fd)
        members = set(sandbox.cgroup.pids())
        assert {started.proc.pid, started.child_pid} <= members, members
    finally:
        provider.destroy(sandbox)


@pytest.mark.skipif(not IS_ROOT, reason="per-job cgroups need root")
def test_a_cgroup_that_cannot_be_joined_fails_the_job_cleanly(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups.JobCgroup, "join_files", lambda self: ["/proc/1/nonexistent/tasks"])
    result = engine.run(parse_job_spec({"command": ["true"]}))
    assert result.status is JobStatus.ERROR, result
    assert result.error is not None and result.error.code == "sandbox.create_failed"
    assert "/proc/1/nonexistent/tasks" in result.error.message


def test_sandboxes_die_with_the_fork_server_and_the_next_job_gets_a_new_one(engine: Engine) -> None:
    results: list[JobResult] = []
    job = threading.Thread(
        target=lambda: results.append(engine.run(parse_job_spec({"command": ["sleep", "60"]}))), daemon=True
    )
    job.start()
    deadline = time.monotonic() + 20
    while not FORK_SERVER._live and time.monotonic() < deadline:
        time.sleep(0.01)
    server = FORK_SERVER._process
    assert server is not None and FORK_SERVER._live
    server.kill()
    job.join(timeout=20)
    assert results and results[0].error is not None and results[0].error.code == "sandbox.lost", results
    again = engine.run(parse_job_spec({"command": ["echo", "again"]}))
    assert again.status is JobStatus.COMPLETED and again.stdout == "again\n", again
    assert FORK_SERVER._process is not server


def test_a_forked_child_gets_its_own_fork_server(engine: Engine) -> None:
    """After fork() the parent's server, sockets and locks are not the child's; both keep working."""
    assert engine.run(parse_job_spec({"command": ["true"]})).status is JobStatus.COMPLETED
    parent_server = FORK_SERVER._process
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            result = engine.run(parse_job_spec({"command": ["echo", "child"]}))
            code = 0 if result.stdout == "child\n" and FORK_SERVER._process is not parent_server else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0
    assert engine.run(parse_job_spec({"command": ["true"]})).status is JobStatus.COMPLETED
    assert FORK_SERVER._process is parent_server


def test_a_fork_server_that_stops_answering_is_replaced(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.providers.linux import spawner

    FORK_SERVER.close()
    monkeypatch.setattr(spawner, "_REPLY_TIMEOUT_S", 1.0)
    assert engine.run(parse_job_spec({"command": ["true"]})).status is JobStatus.COMPLETED
    stuck = FORK_SERVER._process
    assert stuck is not None
    os.kill(stuck.pid, signal.SIGSTOP)
    started = time.monotonic()
    result = engine.run(parse_job_spec({"command": ["echo", "replaced"]}))
    assert result.status is JobStatus.COMPLETED and result.stdout == "replaced\n", result
    assert time.monotonic() - started < 10
    assert stuck.poll() is not None and FORK_SERVER._process is not stuck
    FORK_SERVER.close()  # the next test gets the usual timeout
