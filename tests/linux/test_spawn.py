"""The launcher every sandbox starts through: limits set before, cgroup joined before, nothing inherited."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.engine import Engine
from orchestrator.providers.linux import cgroups, spawn
from orchestrator.providers.linux.provider import LinuxProvider
from orchestrator.result import JobStatus
from orchestrator.spec import parse_job_spec
from tests.conftest import IS_ROOT

pytestmark = pytest.mark.usefixtures("no_leaks")


def _launch(tmp_path: Path, *, go: bool) -> tuple[int, bool]:
    marker = tmp_path / "ran"
    go_read, go_write = os.pipe2(os.O_CLOEXEC)
    argv = spawn.launcher(["touch", str(marker)], go_read, [])
    proc = subprocess.Popen(argv, pass_fds=(go_read,))
    os.close(go_read)
    if go:
        os.write(go_write, b"\n")
    os.close(go_write)
    return proc.wait(timeout=10), marker.exists()


def test_launcher_runs_nothing_until_told_to(tmp_path: Path) -> None:
    assert _launch(tmp_path, go=True) == (0, True)


def test_launcher_gives_up_when_the_control_plane_dies_before_go(tmp_path: Path) -> None:
    """A closed go pipe (the orchestrator died before setting limits) must not start an unlimited sandbox."""
    assert _launch(tmp_path, go=False) == (125, False)


def test_limits_are_in_place_before_the_job_starts(engine: Engine) -> None:
    code = "import resource as r; print(r.getrlimit(r.RLIMIT_CPU), r.getrlimit(r.RLIMIT_CORE))"
    result = engine.run(parse_job_spec({"command": ["python3", "-c", code], "limits": {"cpu_s": 3}}))
    assert result.status is JobStatus.COMPLETED, result
    assert result.stdout == "(3, 4) (0, 0)\n"


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
    assert result.error.message.startswith(spawn.LAUNCHER_NAME)
