"""Jobs as a service: submit (idempotently), queue, run with bounded capacity, cancel, follow.

Each provider has a lane: a FIFO of job ids and ``workers_per_provider``
threads, so at most that many of its sandboxes exist at once. A job is in the
store before it is queued; a worker claims it (``queued -> provisioning``)
atomically, so a job cancelled while queued never starts and no job runs twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.cancel import CancelToken
from orchestrator.engine import RunOptions, new_job_id
from orchestrator.errors import CapacityError, ConflictError, NotFoundError
from orchestrator.lifecycle import JobState, LifecycleEvent
from orchestrator.result import ErrorInfo, JobResult, JobStatus
from orchestrator.services.base import SandboxService
from orchestrator.services.livelog import LiveLog
from orchestrator.services.store import ACTIVE_JOB_STATES, DuplicateKey, EventRecord, JobRecord
from orchestrator.spec import JobSpec

log = logging.getLogger(__name__)

RESTARTED = "orchestrator.restarted"
DoneCallback = Callable[[JobRecord], None]


@dataclass
class _Active:
    """In-memory state of a job that is queued or running in this process."""

    record: JobRecord  # as stored when queued
    spec: JobSpec | None = None  # as submitted here; parsed from the record for a job queued before a restart
    cancel: CancelToken = field(default_factory=CancelToken)
    log: LiveLog = field(default_factory=LiveLog)
    done: threading.Event = field(default_factory=threading.Event)
    callbacks: list[DoneCallback] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def provider(self) -> str:
        return self.record.provider


class _Lane:
    def __init__(self, service: JobService, provider: str, workers: int):
        self.provider = provider
        self.queue: deque[str] = deque()
        self.cond = threading.Condition()
        self.running = 0
        self.stopping = False
        self.threads = [
            threading.Thread(target=self._work, args=(service,), name=f"jobs-{provider}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def put(self, job_id: str) -> None:
        with self.cond:
            self.queue.append(job_id)
            self.cond.notify()

    def depth(self) -> int:
        with self.cond:
            return len(self.queue)

    def _work(self, service: JobService) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                job_id = self.queue.popleft()
                self.running += 1
            try:
                service._run(job_id)
            except Exception:  # noqa: BLE001 - a worker never dies of one job
                log.exception("job %s: worker failed", job_id)
            finally:
                with self.cond:
                    self.running -= 1

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()


class JobService(SandboxService):
    def _init_state(self) -> None:
        self.artifacts_root = Path(self.settings.data_dir) / "artifacts"
        self._lanes: dict[str, _Lane] = {}
        self._active: dict[str, _Active] = {}

    # --- lifecycle of the service -----------------------------------------

    def recover(self) -> list[str]:
        """Jobs that were mid-run when the previous process died end as ``error``; returns their ids."""
        now = time.time()
        failed = []
        for record in self.store.jobs_in(ACTIVE_JOB_STATES):
            result = _error_result(
                record, RESTARTED, "the orchestrator restarted while this job was running; its sandbox was destroyed"
            )
            if self.store.finish_job(record.id, JobStatus.ERROR.value, result, now, only_from=ACTIVE_JOB_STATES):
                self.store.add_event(record.id, JobState.ERROR.value, record.status, now, {"code": RESTARTED})
                failed.append(record.id)
                log.warning("job %s: marked %s after a restart", record.id, RESTARTED)
        return failed

    def start(self) -> None:
        """Start accepting work and queue again every job the store still has as ``queued``."""
        self._accepting = True
        for record in self.store.jobs_in(("queued",)):
            self._enqueue(_Active(record))

    def stop(self, grace_s: float) -> None:
        """Stop taking jobs; let running ones finish within ``grace_s``, then cancel them.

        Jobs still queued stay queued in the store and run after the next start.
        """
        self._accepting = False
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.stop()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(lane.running for lane in lanes):
            time.sleep(0.05)
        with self._lock:
            active_jobs = list(self._active.values())
        for active in active_jobs:
            active.cancel.cancel("the orchestrator is shutting down")
        for lane in lanes:
            for thread in lane.threads:
                thread.join(timeout=30)

    # --- the public operations --------------------------------------------

    def submit(self, tenant: str, spec: JobSpec, *, idempotency_key: str | None = None) -> tuple[JobRecord, bool]:
        """Store and queue a job; returns it and whether it was created (False: an idempotent replay)."""
        request_hash = _spec_hash(spec)
        if idempotency_key is not None:
            existing = self.store.find_job_by_key(tenant, idempotency_key)
            if existing is not None:
                return _replay(existing, request_hash), False
        if not self._accepting:
            raise CapacityError(
                "the orchestrator is shutting down", code="service.stopping", details={"retry_after": 5}
            )
        provider_name = spec.provider or self.settings.default_provider
        self.engine.validate(spec)
        self.providers.usable(provider_name)
        lane = self._lane(provider_name)
        if lane.depth() >= self.settings.api.queue_limit:
            raise CapacityError(
                f"the {provider_name} queue is full ({self.settings.api.queue_limit} jobs waiting); retry later",
                code="capacity.queue_full",
                details={"provider": provider_name, "queue_limit": self.settings.api.queue_limit, "retry_after": 5},
            )
        job_id = new_job_id()
        try:
            record = self.store.insert_job(
                {
                    "id": job_id,
                    "tenant": tenant,
                    "status": JobState.QUEUED.value,
                    "provider": provider_name,
                    "spec": spec.model_dump(mode="json"),
                    "effective_limits": spec.limits.model_dump(mode="json"),
                    "idempotency_key": idempotency_key,
                    "request_hash": request_hash,
                    "created_at": time.time(),
                }
            )
        except DuplicateKey:
            existing = self.store.find_job_by_key(tenant, idempotency_key or "")
            if existing is None:
                raise
            return _replay(existing, request_hash), False
        self._enqueue(_Active(record, spec))
        return record, True

    def get(self, tenant: str, job_id: str) -> JobRecord:
        record = self.store.get_job(job_id, tenant)
        if record is None:
            raise NotFoundError(f"no job {job_id!r}", code="job.not_found", details={"id": job_id})
        return record

    def list_jobs(
        self, tenant: str, *, statuses: list[str] | None = None, limit: int = 50, before_seq: int | None = None
    ) -> list[JobRecord]:
        return self.store.list_jobs(tenant, statuses=statuses, limit=limit, before_seq=before_seq)

    def events(self, tenant: str, job_id: str) -> list[EventRecord]:
        self.get(tenant, job_id)
        return self.store.job_events(job_id)

    def cancel(self, tenant: str, job_id: str, *, wait_s: float = 10.0) -> JobRecord:
        """Cancel a queued or running job; a running job's sandbox is destroyed at once."""
        record = self.get(tenant, job_id)
        if record.terminal:
            return record
        if record.status == JobState.QUEUED.value:
            result = _error_result(record, "job.cancelled", "cancelled by the client", status=JobStatus.CANCELLED)
            if self.store.finish_job(job_id, JobStatus.CANCELLED.value, result, time.time(), only_from=("queued",)):
                self.store.add_event(job_id, JobState.CANCELLED.value, "queued", time.time(), {"by": "client"})
                self._finished(job_id)
                return self.get(tenant, job_id)
        with self._lock:
            active = self._active.get(job_id)
        if active is not None:
            active.cancel.cancel("cancelled by the client")
            active.done.wait(wait_s)
        return self.get(tenant, job_id)

    def wait(self, tenant: str, job_id: str, timeout: float | None) -> JobRecord:
        """Block until the job is terminal (or ``timeout``); returns its latest state."""
        with self._lock:
            active = self._active.get(job_id)
        if active is not None:
            active.done.wait(timeout)
        return self.get(tenant, job_id)

    def on_done(self, job_id: str, callback: DoneCallback) -> bool:
        """Call ``callback`` (from a worker thread) when the job ends; False if it is not active here."""
        with self._lock:
            active = self._active.get(job_id)
            if active is None or active.done.is_set():
                return False
            active.callbacks.append(callback)
            return True

    def remove_callback(self, job_id: str, callback: DoneCallback) -> None:
        with self._lock:
            active = self._active.get(job_id)
            if active is not None and callback in active.callbacks:
                active.callbacks.remove(callback)

    def live_log(self, job_id: str) -> LiveLog | None:
        with self._lock:
            active = self._active.get(job_id)
        return active.log if active is not None else None

    def artifact_path(self, tenant: str, job_id: str, path: str) -> Path:
        record = self.get(tenant, job_id)
        listed = {a.get("path") for a in (record.result or {}).get("artifacts", [])}
        if path not in listed:
            raise NotFoundError(f"job {job_id} has no artifact {path!r}", code="artifact.not_found")
        return self.artifacts_root / job_id / path

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            return {name: lane.depth() for name, lane in self._lanes.items()}

    def running_counts(self) -> dict[str, int]:
        with self._lock:
            return {name: lane.running for name, lane in self._lanes.items()}

    # --- workers ------------------------------------------------------------

    def _lane(self, provider: str) -> _Lane:
        with self._lock:
            lane = self._lanes.get(provider)
            if lane is None:
                lane = _Lane(self, provider, max(1, self.settings.api.workers_per_provider))
                self._lanes[provider] = lane
            return lane

    def _enqueue(self, active: _Active) -> None:
        with self._lock:
            self._active[active.id] = active
        self._lane(active.provider).put(active.id)

    def _run(self, job_id: str) -> None:
        with self._lock:
            active = self._active.get(job_id)
        if active is None:
            return
        claimed_at = time.time()
        if not self.store.claim_job(job_id, claimed_at):
            self._finished(job_id)  # cancelled while queued
            return
        record = active.record
        spec = active.spec or JobSpec.model_validate(record.spec)
        artifacts_dir = None
        if spec.artifacts:
            artifacts_dir = self.artifacts_root / job_id
            artifacts_dir.mkdir(parents=True, exist_ok=True)

        pending: list[LifecycleEvent] = []

        def on_event(ev: LifecycleEvent) -> None:
            # The claim already marked the job active (all restart recovery needs); "running" is
            # written at once, for clients, with the events before it. The events after the
            # program ended are written with the result, in one transaction.
            pending.append(ev)
            if ev.state is JobState.RUNNING:
                self.store.record_events(job_id, pending, set_status=True)
                pending.clear()

        options = RunOptions(
            job_id=job_id,
            cancel=active.cancel,
            listeners=[active.log.write],
            artifacts_dir=artifacts_dir,
            on_event=on_event,
        )
        started = time.monotonic()
        try:
            result = self.engine.run(spec, options)
        except Exception as exc:  # noqa: BLE001 - the engine already tore down; record the failure
            log.exception("job %s: engine failed", job_id)
            result = JobResult(
                id=job_id,
                status=JobStatus.ERROR,
                provider=active.provider,
                error=ErrorInfo(code="orchestrator.internal", message=f"{type(exc).__name__}: {exc}"),
            )
        document, finished_at = result.model_dump(mode="json"), time.time()
        self.store.finish_job(job_id, result.status.value, document, finished_at, events=pending)
        self.observer.job_finished(active.provider, result.status.value, time.monotonic() - started)
        if result.error is not None and result.error.code == "sandbox.teardown_failed":
            self.observer.teardown_failed(active.provider, "job")
        final = replace(
            record, status=result.status.value, result=document, started_at=claimed_at, finished_at=finished_at
        )
        self._finished(job_id, final)

    def _finished(self, job_id: str, record: JobRecord | None = None) -> None:
        """Forget an ended job and tell its waiters; ``record`` is its final row, if the caller has it."""
        with self._lock:
            active = self._active.pop(job_id, None)
        if active is None:
            return
        active.log.close()
        active.done.set()
        if active.callbacks and record is None:
            record = self.store.get_job(job_id)
        for callback in active.callbacks:
            if record is not None:
                with contextlib.suppress(Exception):
                    callback(record)
        # The token's pipe is closed when it is collected: CancelToken.close() is not idempotent,
        # so closing it here too would let its __del__ close fd numbers reused by another thread.


def _spec_hash(spec: JobSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: JobRecord, request_hash: str) -> JobRecord:
    if existing.request_hash != request_hash:
        raise ConflictError(
            "this Idempotency-Key was already used with a different job spec",
            code="idempotency.key_reused",
            details={"id": existing.id},
        )
    return existing


def _error_result(
    record: JobRecord, code: str, message: str, *, status: JobStatus = JobStatus.ERROR
) -> dict[str, object]:
    result = JobResult(
        id=record.id, status=status, provider=record.provider, error=ErrorInfo(code=code, message=message)
    )
    return result.model_dump(mode="json")
