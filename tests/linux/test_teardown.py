"""Every way a job can end tears its sandbox down, checked against a real sandbox."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.audit import MemoryAuditSink
from orchestrator.cancel import CancelToken
from orchestrator.engine import Engine, RunOptions
from orchestrator.errors import SandboxError
from orchestrator.output import OutputCapture
from orchestrator.providers import register
from orchestrator.providers.base import ExecOutcome, ExecRequest, TeardownReport
from orchestrator.providers.linux import LinuxProvider
from orchestrator.result import JobStatus
from orchestrator.settings import Settings
from orchestrator.spec import parse_job_spec
from tests.conftest import assert_nothing_left

pytestmark = pytest.mark.usefixtures("no_leaks")


class FaultyProvider(LinuxProvider):
    """The real linux provider with a fault injected at one step."""

    fail_at: str = ""
    error: BaseException = SandboxError("injected failure")

    def _maybe_fail(self, step: str) -> None:
        if self.fail_at == step:
            raise self.error

    def _provision(self, sandbox: Any) -> None:
        super()._provision(sandbox)  # workspace mounted, cgroup made, uid leased: then it fails
        self._maybe_fail("create")

    def exec(self, sandbox: Any, request: ExecRequest, output: OutputCapture, cancel: CancelToken) -> ExecOutcome:
        if self.fail_at == "exec-midway":
            timer = threading.Timer(0.3, lambda: cancel.cancel("injected"))
            timer.start()
            super().exec(sandbox, request, output, cancel)
            timer.cancel()
            raise SandboxError("lost the sandbox mid-job")
        self._maybe_fail("exec")
        return super().exec(sandbox, request, output, cancel)

    def collect(self, sandbox: Any, patterns: list[str], dest: Path | None, max_bytes: int) -> Any:
        self._maybe_fail("collect")
        return super().collect(sandbox, patterns, dest, max_bytes)

    def destroy(self, sandbox: Any) -> TeardownReport:
        if self.fail_at == "destroy" and not getattr(sandbox, "_failed_once", False):
            sandbox._failed_once = True
            super().destroy(sandbox)
            raise SandboxError("teardown failed")
        return super().destroy(sandbox)


def faulty_engine(settings: Settings, step: str, error: BaseException | None = None) -> tuple[Engine, MemoryAuditSink]:
    def factory(s: Settings) -> FaultyProvider:
        provider = FaultyProvider(s)
        provider.fail_at = step
        if error is not None:
            provider.error = error
        return provider

    register("faulty", factory)
    audit = MemoryAuditSink()
    return Engine(settings, audit=audit), audit


@pytest.mark.parametrize("step", ["create", "exec", "exec-midway", "collect", "destroy"])
def test_failure_at_any_step_tears_down(settings: Settings, step: str) -> None:
    engine, audit = faulty_engine(settings, step)
    result = engine.run(parse_job_spec({"command": ["sleep", "5"], "provider": "faulty", "artifacts": ["*"]}))
    assert result.status is JobStatus.ERROR
    assert result.error is not None
    assert result.error.code in ("sandbox.error", "sandbox.teardown_failed")
    events = [e["event"] for e in audit.events]
    assert events[-2:] == ["tearing_down", "error"], events
    assert_nothing_left(settings)


def test_unexpected_exception_still_tears_down(settings: Settings) -> None:
    engine, audit = faulty_engine(settings, "exec", RuntimeError("a bug"))
    result = engine.run(parse_job_spec({"command": ["true"], "provider": "faulty"}))
    assert result.status is JobStatus.ERROR and result.error is not None
    assert result.error.code == "orchestrator.internal"
    assert audit.events[-1]["event"] == "error"


def test_ctrl_c_during_the_job_tears_down_then_propagates(settings: Settings) -> None:
    engine, audit = faulty_engine(settings, "exec", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        engine.run(parse_job_spec({"command": ["true"], "provider": "faulty"}))
    assert audit.events[-1]["event"] == "cancelled"
    assert_nothing_left(settings)


def test_cancel_from_another_thread_stops_the_job_at_once(engine: Engine) -> None:
    token = CancelToken()
    threading.Timer(0.3, lambda: token.cancel("user asked")).start()
    started = time.monotonic()
    result = engine.run(parse_job_spec({"command": ["sh", "-c", "sleep 30 & sleep 30"]}), RunOptions(cancel=token))
    assert result.status is JobStatus.CANCELLED
    assert result.error is not None and result.error.code == "job.cancelled"
    assert time.monotonic() - started < 5


def test_cancel_before_start_runs_nothing(engine: Engine) -> None:
    token = CancelToken()
    token.cancel()
    audit = MemoryAuditSink()
    engine.audit = audit
    result = engine.run(parse_job_spec({"command": ["true"]}), RunOptions(cancel=token))
    assert result.status is JobStatus.CANCELLED
    assert [e["event"] for e in audit.events] == ["queued", "cancelled"]


def test_events_follow_the_state_machine_and_go_to_the_audit_log(engine: Engine) -> None:
    audit = MemoryAuditSink()
    engine.audit = audit
    seen: list[str] = []
    result = engine.run(
        parse_job_spec({"command": ["sh", "-c", "exit 3"]}), RunOptions(on_event=lambda e: seen.append(e.state.value))
    )
    assert result.status is JobStatus.COMPLETED and result.exit_code == 3
    expected = ["queued", "provisioning", "running", "collecting", "tearing_down", "completed"]
    assert seen == expected
    assert [e["event"] for e in audit.events] == expected
    assert all(e["job_id"] == result.id for e in audit.events)
