"""Run samples in parallel, one disposable sandbox each, and judge them.

A bounded thread pool drives an ``Executor`` (the local engine, or a control
plane with ``remote.RemoteExecutor``). Results are handed to the sink as they
arrive, from the calling thread only, so output lines are never interleaved.
Ctrl-C (``KeyboardInterrupt`` in the calling thread) cancels the shared token:
running sandboxes are torn down by their engine runs, queued samples never
start, finished results are kept, and the interrupt is re-raised.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.batch.formats import BatchInputError, Sample
from orchestrator.batch.verdicts import Verdict, judge
from orchestrator.cancel import CancelToken
from orchestrator.engine import Engine, RunOptions, job_result, judge_outcome, new_job_id
from orchestrator.errors import OrchestratorError
from orchestrator.output import OutputCapture
from orchestrator.result import ErrorInfo, JobResult, JobStatus, PhaseTimings
from orchestrator.spec import JobSpec, parse_job_spec

if TYPE_CHECKING:
    from orchestrator.providers.linux.warm import WarmPool

log = logging.getLogger(__name__)

DEFAULT_PYTHON = ["python3"]
# Program formats get these unless overridden: CPU time decides, the wall clock is a backstop.
PROGRAM_DEFAULT_LIMITS: dict[str, Any] = {"timeout_s": 20.0, "cpu_s": 10.0, "memory_mb": 512, "pids": 64}


class FatalBatchError(OrchestratorError):
    """A failure no retry can fix (bad credentials, unreachable server): the whole batch stops."""

    code = "batch.aborted"


class Executor(Protocol):
    def run(self, spec: JobSpec, cancel: CancelToken) -> JobResult: ...


class LocalExecutor:
    """Runs each spec through the engine on this host; with ``warm``, a Python program on the
    linux provider starts from a warm interpreter in fresh namespaces (``providers/linux/warm.py``)."""

    def __init__(self, engine: Engine, provider: str | None = None, *, warm: bool = False):
        self.engine = engine
        target = engine.provider(provider)
        # The first use of a provider prepares the host (files under runtime_dir); do it once
        # here, before the pool starts, so parallel first runs do not race on it.
        prepare = getattr(target, "prepare", None)
        if callable(prepare):
            prepare()
        self.warm: WarmPool | None = None
        self._pool: WarmPool | None = None
        if warm:
            from orchestrator.providers.linux import LinuxProvider
            from orchestrator.providers.linux.warm import WarmPool

            if isinstance(target, LinuxProvider):
                self.warm = self._pool = WarmPool(target)
        self.provider_name = provider or engine.settings.default_provider

    def run(self, spec: JobSpec, cancel: CancelToken) -> JobResult:
        warm = self.warm
        if warm is not None and self._warm_eligible(spec):
            from orchestrator.providers.linux.warm import WarmUnavailable

            try:
                return self._run_warm(warm, spec, cancel)
            except WarmUnavailable as exc:
                log.warning("warm starts are unavailable here, samples run cold: %s", exc.message)
                self.warm = None  # closed with the others by close()
        return self.engine.run(spec, RunOptions(cancel=cancel))

    def _warm_eligible(self, spec: JobSpec) -> bool:
        # Imported only with a warm pool: the linux modules do not load on a Windows control plane.
        from orchestrator.providers.linux.warm import eligible

        return eligible(spec) and (spec.provider or self.provider_name) == self.provider_name

    def _run_warm(self, warm: WarmPool, spec: JobSpec, cancel: CancelToken) -> JobResult:
        self.engine.validate(spec)
        started = time.monotonic()
        capture = OutputCapture(spec.limits.output_bytes)
        outcome = warm.run(spec, capture, cancel)
        status, error = judge_outcome(outcome, cancel)
        timings = PhaseTimings(run_ms=round((time.monotonic() - started) * 1000, 3))
        return job_result(new_job_id(), spec, self.provider_name, status, error, outcome, capture, started, timings)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


@dataclass
class BatchOptions:
    parallel: int = 2
    retries: int = 2
    retry_backoff_s: float = 0.5
    limits: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    python: list[str] = field(default_factory=lambda: list(DEFAULT_PYTHON))
    tail_chars: int = 2000


@dataclass
class BatchOutcome:
    records: list[dict[str, Any]]
    elapsed_s: float
    interrupted: bool = False


def build_spec(sample: Sample, options: BatchOptions) -> JobSpec:
    """The job for one sample; raises ``BatchInputError`` naming the input line."""
    if sample.spec is not None:
        data = dict(sample.spec)
        data["limits"] = {**options.limits, **dict(data.get("limits") or {})}
        if options.provider and not data.get("provider"):
            data["provider"] = options.provider
    else:
        data = {
            "script": sample.program,
            "interpreter": options.python,
            "limits": {**PROGRAM_DEFAULT_LIMITS, **options.limits},
            "labels": {"batch.task": sample.task[:200]},
        }
        if options.provider:
            data["provider"] = options.provider
    try:
        return parse_job_spec(data)
    except OrchestratorError as exc:
        raise BatchInputError(f"line {sample.line} ({sample.id}): {exc.message}", details=exc.details) from None


def _tail(text: str, size: int) -> str:
    return text[-size:] if len(text) > size else text


def record_for(sample: Sample, result: JobResult, verdict: Verdict, attempts: int, tail: int) -> dict[str, Any]:
    return {
        "id": sample.id,
        "task": sample.task,
        "verdict": verdict.value,
        "exit_code": result.exit_code,
        "status": result.status.value,
        "error_code": result.error.code if result.error else None,
        "duration_ms": result.duration_ms,
        "attempts": attempts,
        "stdout_tail": _tail(result.stdout, tail),
        "stderr_tail": _tail(result.stderr, tail),
    }


def _failed_result(code: str, message: str) -> JobResult:
    return JobResult(id="", status=JobStatus.ERROR, provider="", error=ErrorInfo(code=code, message=message))


class _Job:
    def __init__(self, sample: Sample, spec: JobSpec, executor: Executor, options: BatchOptions, cancel: CancelToken):
        self.sample, self.spec, self.executor, self.options, self.cancel = sample, spec, executor, options, cancel
        self.ours = sample.program is not None

    def __call__(self) -> dict[str, Any] | None:
        attempts = 0
        while True:
            if self.cancel.cancelled:
                return None
            attempts += 1
            try:
                result = self.executor.run(self.spec, self.cancel)
            except FatalBatchError:
                raise
            except OrchestratorError as exc:
                result = _failed_result(exc.code, exc.message)
            except Exception as exc:  # noqa: BLE001 - a bug is an infra error for this sample, not a crash of all
                log.exception("sample %s: executor failed", self.sample.id)
                result = _failed_result("orchestrator.internal", f"{type(exc).__name__}: {exc}")
            if result.status is JobStatus.CANCELLED and self.cancel.cancelled:
                return None
            verdict = judge(result, interpreter_is_ours=self.ours)
            if verdict is Verdict.INFRA_ERROR and attempts <= self.options.retries:
                code = result.error.code if result.error else result.status.value
                log.warning("sample %s: infra error %s (attempt %d), retrying", self.sample.id, code, attempts)
                if self.cancel.wait(self.options.retry_backoff_s * attempts):
                    return None
                continue
            return record_for(self.sample, result, verdict, attempts, self.options.tail_chars)


def run_batch(
    samples: Iterable[Sample],
    executor: Executor,
    options: BatchOptions,
    *,
    on_record: Callable[[dict[str, Any]], None],
    cancel: CancelToken | None = None,
) -> BatchOutcome:
    """Run every sample; ``on_record`` gets each result in the calling thread as it arrives.

    Raises ``KeyboardInterrupt`` after a clean stop, and ``FatalBatchError`` after stopping
    everything when the executor reports one; finished records were already delivered.
    """
    cancel = cancel or CancelToken()
    jobs: Iterator[_Job] = iter([_Job(s, build_spec(s, options), executor, options, cancel) for s in samples])
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    window = max(1, options.parallel) + 2
    pending: set[cf.Future[dict[str, Any] | None]] = set()
    stop: BaseException | None = None
    pool = cf.ThreadPoolExecutor(max_workers=max(1, options.parallel), thread_name_prefix="batch")

    def deliver(future: cf.Future[dict[str, Any] | None]) -> None:
        nonlocal stop
        try:
            record = future.result()
        except cf.CancelledError:
            return
        except FatalBatchError as exc:
            if stop is None:
                stop = exc
                cancel.cancel("aborted")
            return
        if record is not None:
            records.append(record)
            on_record(record)

    try:
        try:
            while True:
                while stop is None and len(pending) < window:
                    job = next(jobs, None)
                    if job is None:
                        break
                    pending.add(pool.submit(job))
                if not pending:
                    break
                done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    deliver(future)
        except KeyboardInterrupt as exc:
            stop = exc
            cancel.cancel("interrupted")
        if stop is not None:
            _drain(pending, deliver)
    finally:
        cancel.cancel("batch finished")  # nothing may outlive the batch
        pool.shutdown(wait=True, cancel_futures=True)
    outcome = BatchOutcome(records, time.monotonic() - started, interrupted=isinstance(stop, KeyboardInterrupt))
    if stop is not None:
        raise stop
    return outcome


def _drain(
    pending: set[cf.Future[dict[str, Any] | None]], deliver: Callable[[cf.Future[dict[str, Any] | None]], None]
) -> None:
    """Wait for running samples to tear down; a second Ctrl-C does not cut teardown short."""
    for future in pending:
        future.cancel()
    while pending:
        try:
            done, pending = cf.wait(pending, timeout=0.2)
        except KeyboardInterrupt:
            continue
        for future in done:
            deliver(future)
