"""Sessions: one live sandbox per session, many commands, ended by the client, a TTL or idleness.

A sweeper thread ends sessions past ``expires_at`` or idle for longer than
``idle_timeout_s`` (a command in flight counts as activity). The store records
each session before its sandbox exists, so a crash always leaves a row that
the next start marks ``error`` while the provider reaps the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.cancel import CancelToken
from orchestrator.errors import (
    CapacityError,
    ConflictError,
    NotFoundError,
    OrchestratorError,
    SpecError,
)
from orchestrator.output import OutputCapture, OutputListener
from orchestrator.providers.base import ExecOutcome, ExecRequest, Provider, Sandbox
from orchestrator.result import ErrorInfo
from orchestrator.services import files
from orchestrator.services.base import SandboxService
from orchestrator.services.store import LIVE_SESSION_STATES, SessionRecord
from orchestrator.spec import WORKSPACE, JobSpec, SessionSpec, translate_validation_error

log = logging.getLogger(__name__)

RESTARTED = "orchestrator.restarted"
AGENT_MIN_MEMORY_MB = 32
_AGENT_ARGV = ["true"]  # sessions never run the job command; the agent is started instead


@dataclass
class ExecParams:
    command: list[str]
    timeout_s: float = 60.0
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    cwd: str = WORKSPACE


class ExecResult(BaseModel):
    """One command's outcome in a session; also the API's response body."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_ms: float
    error: ErrorInfo | None


@dataclass
class _Live:
    id: str
    tenant: str
    provider_name: str
    provider: Provider
    sandbox: Sandbox
    spec: SessionSpec
    expires_at: float
    last_used: float
    busy: int = 0
    closing: bool = False
    dirty: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancels: set[CancelToken] = field(default_factory=set)


@dataclass
class _ExecRun:
    """One command in a session, between starting and reporting it."""

    live: _Live
    token: CancelToken
    request: ExecRequest
    capture: OutputCapture
    started: float

    def result(self, outcome: ExecOutcome) -> ExecResult:
        error = None
        if outcome.error_code is not None:
            error = ErrorInfo(code=outcome.error_code, message=outcome.error_message)
        elif self.token.cancelled:
            error = ErrorInfo(code="job.cancelled", message=self.token.reason)
        return ExecResult(
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            timed_out=outcome.timed_out,
            stdout=self.capture.stdout.text(),
            stderr=self.capture.stderr.text(),
            stdout_truncated=self.capture.stdout.truncated,
            stderr_truncated=self.capture.stderr.truncated,
            duration_ms=round((time.monotonic() - self.started) * 1000, 3),
            error=error,
        )


class SessionService(SandboxService):
    def _init_state(self) -> None:
        self._live: dict[str, _Live] = {}
        self._starting: dict[str, int] = {}
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # --- lifecycle of the service -----------------------------------------

    def recover(self) -> list[str]:
        now = time.time()
        failed = []
        for record in self.store.sessions_in(LIVE_SESSION_STATES):
            error = {"code": RESTARTED, "message": "the orchestrator restarted; the session's sandbox was destroyed"}
            if self.store.update_session(
                record.id, only_from=LIVE_SESSION_STATES, status="error", error=error, finished_at=now
            ):
                failed.append(record.id)
        return failed

    def start(self) -> None:
        self._accepting = True
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="session-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._accepting = False
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
        with self._lock:
            live = list(self._live.values())
        for session in live:
            self._end(session, "error", {"code": "orchestrator.shutdown", "message": "the orchestrator stopped"})

    # --- operations ---------------------------------------------------------

    def create(self, tenant: str, spec: SessionSpec) -> SessionRecord:
        if not self._accepting:
            raise CapacityError(
                "the orchestrator is shutting down", code="service.stopping", details={"retry_after": 5}
            )
        if spec.limits.memory_mb < AGENT_MIN_MEMORY_MB:
            raise SpecError(
                f"a session needs limits.memory_mb >= {AGENT_MIN_MEMORY_MB} for its agent",
                code="spec.invalid",
                details={"limit": "memory_mb", "minimum": AGENT_MIN_MEMORY_MB},
            )
        if spec.ttl_s > self.settings.max_limits.timeout_s:
            raise SpecError(
                f"ttl_s={spec.ttl_s} exceeds this operator's maximum of {self.settings.max_limits.timeout_s}",
                code="spec.limit_exceeds_maximum",
                details={"limit": "ttl_s", "requested": spec.ttl_s, "maximum": self.settings.max_limits.timeout_s},
            )
        try:
            # SessionSpec checks less than JobSpec (env names, for one): the job form is the contract.
            job_spec = spec.as_job(_AGENT_ARGV)
        except ValidationError as exc:
            raise translate_validation_error(exc, "session spec") from None
        self.engine.validate(job_spec)
        name = spec.provider or self.settings.default_provider
        provider = self.providers.usable(name)
        if not provider.capabilities().sessions:
            raise SpecError(f"provider {name!r} does not support sessions", code="provider.sessions_unsupported")
        limit = self.settings.api.max_sessions_per_provider
        with self._lock:
            count = sum(1 for s in self._live.values() if s.provider_name == name) + self._starting.get(name, 0)
            if count >= limit:
                raise CapacityError(
                    f"{limit} {name} sessions are already live; retry later or delete one",
                    code="capacity.sessions_full",
                    details={"provider": name, "limit": limit, "retry_after": 5},
                )
            self._starting[name] = self._starting.get(name, 0) + 1
        try:
            return self._create(tenant, spec, job_spec, name, provider)
        finally:
            with self._lock:
                self._starting[name] -= 1

    def _create(
        self, tenant: str, spec: SessionSpec, job_spec: JobSpec, name: str, provider: Provider
    ) -> SessionRecord:
        session_id = "s" + uuid.uuid4().hex
        now = time.time()
        self.store.insert_session(
            {
                "id": session_id,
                "tenant": tenant,
                "status": "starting",
                "provider": name,
                "spec": spec.model_dump(mode="json"),
                "effective_limits": spec.limits.model_dump(mode="json"),
                "created_at": now,
                "expires_at": now + spec.ttl_s,
                "last_used_at": now,
            }
        )
        try:
            sandbox = provider.create(session_id, job_spec, session=True)
        except OrchestratorError as exc:
            self._record_end(session_id, "error", {"code": exc.code, "message": exc.message})
            raise
        except Exception as exc:
            self._record_end(session_id, "error", {"code": "sandbox.create_failed", "message": str(exc)})
            raise
        live = _Live(session_id, tenant, name, provider, sandbox, spec, now + spec.ttl_s, time.time())
        with self._lock:
            self._live[session_id] = live
        self.store.update_session(session_id, only_from=("starting",), status="active")
        if self._stop.is_set():
            self._end(live, "error", {"code": "orchestrator.shutdown", "message": "the orchestrator stopped"})
        return self.get(tenant, session_id)

    def get(self, tenant: str, session_id: str) -> SessionRecord:
        record = self.store.get_session(session_id, tenant)
        if record is None:
            raise NotFoundError(f"no session {session_id!r}", code="session.not_found", details={"id": session_id})
        with self._lock:
            live = self._live.get(session_id)
        if live is not None and live.dirty:
            record = _with_last_used(record, live.last_used)
        return record

    def list_sessions(
        self, tenant: str, *, statuses: list[str] | None = None, limit: int = 50, before_seq: int | None = None
    ) -> list[SessionRecord]:
        return self.store.list_sessions(tenant, statuses=statuses, limit=limit, before_seq=before_seq)

    def delete(self, tenant: str, session_id: str) -> SessionRecord:
        live = self._find(tenant, session_id, required=False)
        if live is not None:
            self._end(live, "deleted", None)
        return self.get(tenant, session_id)

    def exec(
        self,
        tenant: str,
        session_id: str,
        params: ExecParams,
        *,
        listener: OutputListener | None = None,
        cancel: CancelToken | None = None,
    ) -> ExecResult:
        run = self._begin_exec(tenant, session_id, params, listener, cancel)
        try:
            outcome = run.live.provider.exec(run.live.sandbox, run.request, run.capture, run.token)
        finally:
            self._end_exec(run)
        return run.result(outcome)

    async def exec_async(self, tenant: str, session_id: str, params: ExecParams) -> ExecResult:
        """``exec`` for an event loop: with a provider that can, the command is awaited without a thread."""
        with self._lock:
            here = self._live.get(session_id)
        if here is not None and here.tenant == tenant:
            run = self._begin_exec(tenant, session_id, params, None, None)
        else:  # refused either way; telling "not found" from "not active" reads the store, off the loop
            run = await asyncio.to_thread(self._begin_exec, tenant, session_id, params, None, None)
        try:
            provider_exec = getattr(run.live.provider, "exec_async", None)
            if callable(provider_exec):
                outcome = await provider_exec(run.live.sandbox, run.request, run.capture, run.token)
            else:
                outcome = await asyncio.to_thread(
                    run.live.provider.exec, run.live.sandbox, run.request, run.capture, run.token
                )
        finally:
            self._end_exec(run)
        return run.result(outcome)

    def _begin_exec(
        self,
        tenant: str,
        session_id: str,
        params: ExecParams,
        listener: OutputListener | None,
        cancel: CancelToken | None,
    ) -> _ExecRun:
        live = self._use(tenant, session_id)
        token = cancel or CancelToken()
        timeout = min(params.timeout_s, self.settings.max_limits.timeout_s)
        request = ExecRequest(
            argv=params.command, env=params.env, cwd=params.cwd, timeout_s=timeout, stdin=params.stdin
        )
        capture = OutputCapture(live.spec.limits.output_bytes, [listener] if listener else None)
        with self._lock:
            live.cancels.add(token)
        return _ExecRun(live, token, request, capture, time.monotonic())

    def _end_exec(self, run: _ExecRun) -> None:
        with self._lock:
            run.live.cancels.discard(run.token)
        self._release(run.live)

    def open_upload(self, tenant: str, session_id: str, path: str, *, mode: int = 0o644) -> tuple[files.Upload, Any]:
        """Start writing a workspace file; call ``done()`` (the second item) when finished either way."""
        live = self._use(tenant, session_id)
        try:
            upload = files.Upload(
                self._workspace(live),
                path,
                owner=self._owner(live),
                max_bytes=self.settings.api.max_upload_bytes,
                mode=mode,
            )
        except BaseException:
            self._release(live)
            raise
        return upload, lambda: self._release(live)

    def open_file(self, tenant: str, session_id: str, path: str) -> tuple[int, int]:
        live = self._use(tenant, session_id)
        try:
            return files.open_regular_file(self._workspace(live), path)
        finally:
            self._release(live)

    def list_files(self, tenant: str, session_id: str, path: str) -> tuple[list[files.FileEntry], bool]:
        live = self._use(tenant, session_id)
        try:
            return files.list_directory(self._workspace(live), path)
        finally:
            self._release(live)

    def live_count(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for session in self._live.values():
                counts[session.provider_name] = counts.get(session.provider_name, 0) + 1
            return counts

    def live_ids(self) -> set[str]:
        with self._lock:
            return set(self._live)

    # --- internals ------------------------------------------------------------

    def _find(self, tenant: str, session_id: str, *, required: bool = True) -> _Live | None:
        with self._lock:
            live = self._live.get(session_id)
        if live is not None and live.tenant == tenant:
            return live
        record = self.get(tenant, session_id)  # NotFoundError for another tenant's id
        if required:
            raise ConflictError(
                f"session {session_id} is {record.status}", code="session.not_active", details={"status": record.status}
            )
        return None

    def hold(self, tenant: str, session_id: str) -> _Live:
        """Mark a session busy (it will not expire as idle) for a long-lived use such as a terminal;
        every ``hold`` needs one ``release``."""
        return self._use(tenant, session_id)

    def release(self, live: _Live) -> None:
        self._release(live)

    def _use(self, tenant: str, session_id: str) -> _Live:
        live = self._find(tenant, session_id)
        assert live is not None
        with self._lock:
            if live.closing:
                raise ConflictError(f"session {session_id} is ending", code="session.not_active")
            live.busy += 1
            live.last_used = time.time()
            live.dirty = True
        return live

    def _release(self, live: _Live) -> None:
        with self._lock:
            live.busy -= 1
            live.last_used = time.time()
            live.dirty = True

    @staticmethod
    def _workspace(live: _Live) -> Path:
        workspace = getattr(live.sandbox, "workspace", None)
        if not isinstance(workspace, Path):
            raise SpecError(
                f"provider {live.provider_name!r} does not expose session files", code="provider.files_unsupported"
            )
        return workspace

    def _owner(self, live: _Live) -> tuple[int, int] | None:
        uid = getattr(live.sandbox, "uid", None)
        if isinstance(uid, int) and uid != 0 and uid != os.geteuid():
            return uid, uid
        return None

    def _end(self, live: _Live, status: str, error: dict[str, Any] | None) -> None:
        with self._lock:
            if live.closing:
                return
            live.closing = True
            cancels = list(live.cancels)
        for token in cancels:
            token.cancel(f"the session ended ({status})")
        with live.lock:
            try:
                report = live.provider.destroy(live.sandbox)
                clean = report.clean
                leftovers = report.leftovers
            except Exception as exc:  # noqa: BLE001 - reported below, never swallowed
                clean, leftovers = False, [f"{type(exc).__name__}: {exc}"]
        with self._lock:
            self._live.pop(live.id, None)
        if not clean:
            self.observer.teardown_failed(live.provider_name, "session")
            log.error("session %s: teardown left %s", live.id, leftovers)
            if error is None:
                status = "error"
                error = {"code": "sandbox.teardown_failed", "message": "teardown left resources behind"}
        self._record_end(live.id, status, error, last_used=live.last_used)
        self.observer.session_ended(live.provider_name, status if error is None else str(error.get("code")))

    def _record_end(self, session_id: str, status: str, error: dict[str, Any] | None, **extra: Any) -> None:
        values: dict[str, Any] = {"status": status, "error": error, "finished_at": time.time()}
        if "last_used" in extra:
            values["last_used_at"] = extra["last_used"]
        self.store.update_session(session_id, only_from=LIVE_SESSION_STATES, **values)

    def sweep(self, now: float | None = None) -> list[str]:
        """End expired and idle sessions; persist activity. Returns the ids ended."""
        now = time.time() if now is None else now
        ended = []
        with self._lock:
            live = list(self._live.values())
        touched: dict[str, float] = {}
        for session in live:
            if session.closing:
                continue
            if now >= session.expires_at:
                self._end(session, "expired", {"code": "session.expired", "message": "the session reached its ttl_s"})
                ended.append(session.id)
            elif session.busy == 0 and now - session.last_used >= session.spec.idle_timeout_s:
                self._end(
                    session, "expired", {"code": "session.idle", "message": "the session was idle for idle_timeout_s"}
                )
                ended.append(session.id)
            elif session.dirty:
                session.dirty = False
                touched[session.id] = session.last_used
        with contextlib.suppress(Exception):
            self.store.touch_sessions(touched)
        return ended

    def _sweep_loop(self) -> None:
        interval = max(0.05, self.settings.api.session_sweep_interval_s)
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the sweeper must keep running
                log.exception("session sweep failed")


def _with_last_used(record: SessionRecord, last_used: float) -> SessionRecord:
    return replace(record, last_used_at=last_used)
