"""The engine: one job through its lifecycle, on any provider, always torn down.

The engine owns the guarantees every provider shares: the limits are checked
against the operator's maxima, the lifecycle advances through the state
machine, every transition is audited, and ``destroy`` runs on every path that
created something: success, failure, timeout, cancellation, exceptions and
Ctrl-C.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.audit import AuditSink, NullAuditSink
from orchestrator.cancel import CancelToken
from orchestrator.errors import OrchestratorError
from orchestrator.lifecycle import Lifecycle, LifecycleEvent
from orchestrator.output import OutputCapture, OutputListener
from orchestrator.providers import create_provider
from orchestrator.providers.base import ExecOutcome, ExecRequest, Provider, Sandbox
from orchestrator.result import Artifact, ErrorInfo, JobResult, JobStatus, PhaseTimings
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec

SCRIPT_PATH = "/.orchestrator/script"
ARTIFACT_CAP_BYTES = 256 * 1024 * 1024


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class RunOptions:
    job_id: str | None = None
    cancel: CancelToken | None = None
    listeners: list[OutputListener] = field(default_factory=list)
    artifacts_dir: Path | None = None
    on_event: Callable[[LifecycleEvent], None] | None = None
    on_sandbox: Callable[[Sandbox | None], None] | None = None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Engine:
    def __init__(self, settings: Settings, *, audit: AuditSink | None = None):
        self.settings = settings
        self.audit = audit or NullAuditSink()
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def provider(self, name: str | None) -> Provider:
        name = name or self.settings.default_provider
        with self._lock:
            if name not in self._providers:
                self._providers[name] = create_provider(name, self.settings)
            return self._providers[name]

    def validate(self, spec: JobSpec) -> Provider:
        """Everything that can be refused before a sandbox exists; raises SpecError subclasses."""
        self.settings.max_limits.check(spec.limits)
        provider = self.provider(spec.provider)
        check = getattr(provider, "validate", None)
        if callable(check):
            check(spec)
        return provider

    def run(self, spec: JobSpec, options: RunOptions | None = None) -> JobResult:
        options = options or RunOptions()
        job_id = options.job_id or new_job_id()
        cancel = options.cancel or CancelToken()
        started = time.monotonic()
        lifecycle = Lifecycle(job_id)
        self._emit(lifecycle.events[-1], options)
        provider_name = spec.provider or self.settings.default_provider
        capture = OutputCapture(spec.limits.output_bytes, options.listeners)
        timings = PhaseTimings()
        outcome: ExecOutcome | None = None
        error: ErrorInfo | None = None
        artifacts = []
        sandbox: Sandbox | None = None
        interrupted: BaseException | None = None
        status = JobStatus.ERROR

        def step(event: LifecycleEvent) -> None:
            self._emit(event, options)

        try:
            provider = self.validate(spec)
            if cancel.cancelled:
                raise _Cancelled()
            step(lifecycle.provisioning())
            t0 = time.monotonic()
            sandbox = provider.create(job_id, spec)
            if options.on_sandbox:
                options.on_sandbox(sandbox)
            timings.provision_ms = _ms(time.monotonic() - t0)
            step(lifecycle.provisioned(provision_ms=timings.provision_ms))
            t0 = time.monotonic()
            outcome = provider.exec(sandbox, exec_request(provider, spec), capture, cancel)
            timings.run_ms = _ms(time.monotonic() - t0)
            status, error = judge_outcome(outcome, cancel)
            step(lifecycle.exited(status, exit_code=outcome.exit_code, run_ms=timings.run_ms))
            t0 = time.monotonic()
            if status is not JobStatus.CANCELLED:
                try:
                    artifacts = provider.collect(sandbox, spec.artifacts, options.artifacts_dir, ARTIFACT_CAP_BYTES)
                except OrchestratorError as exc:
                    error = ErrorInfo(code=exc.code, message=exc.message, details=exc.details)
                    status = JobStatus.ERROR
            timings.collect_ms = _ms(time.monotonic() - t0)
            step(lifecycle.collected(artifacts=len(artifacts)))
        except _Cancelled:
            status, error = JobStatus.CANCELLED, ErrorInfo(code="job.cancelled", message=cancel.reason)
            step(lifecycle.failed(status))
        except OrchestratorError as exc:
            status, error = JobStatus.ERROR, ErrorInfo(code=exc.code, message=exc.message, details=exc.details)
            step(lifecycle.failed(status, code=exc.code))
        except (KeyboardInterrupt, SystemExit) as exc:
            interrupted = exc
            status, error = JobStatus.CANCELLED, ErrorInfo(code="job.cancelled", message="interrupted")
            step(lifecycle.failed(status, code="job.interrupted"))
        except Exception as exc:  # noqa: BLE001 - any bug still ends in teardown and an error result
            status = JobStatus.ERROR
            error = ErrorInfo(code="orchestrator.internal", message=f"{type(exc).__name__}: {exc}")
            step(lifecycle.failed(status, code="orchestrator.internal"))
        finally:
            t0 = time.monotonic()
            if sandbox is not None:
                teardown_error = self._destroy(provider_name, sandbox)
                if teardown_error is not None and error is None:
                    status, error = JobStatus.ERROR, teardown_error
            timings.teardown_ms = _ms(time.monotonic() - t0)
            if not lifecycle.state.terminal:  # a job cancelled while queued is already terminal
                step(lifecycle.torn_down(status, teardown_ms=timings.teardown_ms, status=status.value))
            if options.on_sandbox:
                options.on_sandbox(None)
        result = job_result(
            job_id, spec, provider_name, status, error, outcome, capture, started, timings, artifacts=artifacts
        )
        if interrupted is not None:
            raise interrupted
        return result

    def _destroy(self, provider_name: str, sandbox: Sandbox) -> ErrorInfo | None:
        try:
            report = self.provider(provider_name).destroy(sandbox)
        except Exception as exc:  # noqa: BLE001 - reported, never swallowed silently
            return ErrorInfo(code="sandbox.teardown_failed", message=f"{type(exc).__name__}: {exc}")
        if not report.clean:
            return ErrorInfo(
                code="sandbox.teardown_failed",
                message="teardown left resources behind",
                details={"leftovers": report.leftovers},
            )
        return None

    def _emit(self, event: LifecycleEvent, options: RunOptions) -> None:
        self.audit.emit(event)
        if options.on_event is not None:
            options.on_event(event)


def job_result(
    job_id: str,
    spec: JobSpec,
    provider_name: str,
    status: JobStatus,
    error: ErrorInfo | None,
    outcome: ExecOutcome | None,
    capture: OutputCapture,
    started: float,
    timings: PhaseTimings,
    *,
    artifacts: list[Artifact] | None = None,
) -> JobResult:
    """The result document of a job that began at ``started`` (monotonic) and wrote to ``capture``."""
    image = outcome.usage.get("image") if outcome else None
    return JobResult(
        id=job_id,
        status=status,
        exit_code=outcome.exit_code if outcome else None,
        signal=outcome.signal if outcome else None,
        stdout=capture.stdout.text(),
        stderr=capture.stderr.text(),
        stdout_truncated=capture.stdout.truncated,
        stderr_truncated=capture.stderr.truncated,
        duration_ms=_ms(time.monotonic() - started),
        provider=provider_name,
        error=error,
        artifacts=artifacts or [],
        timings=timings,
        usage=outcome.usage if outcome else {},
        image=str(image) if image else spec.image,
    )


def exec_request(provider: Provider, spec: JobSpec) -> ExecRequest:
    """The program a spec asks for; a provider whose guests are not POSIX maps it itself."""
    custom = getattr(provider, "default_request", None)
    if callable(custom):
        request: ExecRequest = custom(spec)
        return request
    return ExecRequest.for_spec(spec, spec.argv(SCRIPT_PATH))


class _Cancelled(Exception):
    pass


def judge_outcome(outcome: ExecOutcome, cancel: CancelToken) -> tuple[JobStatus, ErrorInfo | None]:
    if outcome.error_code is not None:
        return JobStatus.ERROR, ErrorInfo(code=outcome.error_code, message=outcome.error_message)
    if cancel.cancelled:
        return JobStatus.CANCELLED, ErrorInfo(code="job.cancelled", message=cancel.reason or "cancelled")
    if outcome.timed_out:
        return JobStatus.TIMED_OUT, ErrorInfo(code="limit.timeout", message="the wall-clock limit was reached")
    if outcome.limit is not None:
        return JobStatus.LIMIT_EXCEEDED, ErrorInfo(
            code=f"limit.{outcome.limit}", message=f"the job exceeded its {outcome.limit} limit"
        )
    return JobStatus.COMPLETED, None


def result_exit_code(result: JobResult) -> int:
    """Docker's convention: the job's code, 124 timed out, 137 killed by a limit, 125 our failure."""
    if result.status is JobStatus.COMPLETED:
        return result.exit_code if result.exit_code is not None else 125
    if result.status is JobStatus.TIMED_OUT:
        return 124
    if result.status is JobStatus.LIMIT_EXCEEDED:
        return 137
    if result.status is JobStatus.CANCELLED:
        return 130
    return 125
