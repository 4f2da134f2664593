"""``/v1/jobs``: submit, wait, list, cancel, follow a job's events, logs and artifacts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from api.deps import JobsDep, SettingsDep, TenantDep
from api.routes.common import ERRORS, SSE_RESPONSE, next_cursor, parse_cursor, wait_for_job
from api.schemas import EventPublic, EventsPage, JobPublic, JobsPage
from api.sse import KEEPALIVE, SSE_HEADERS, TextDecoder, frame, threadsafe_setter
from orchestrator.lifecycle import JobState
from orchestrator.services.files import relative_path
from orchestrator.services.jobs import JobService
from orchestrator.services.store import JobRecord
from orchestrator.spec import JobSpec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
WAIT_PATTERN = r"^(true|false|[0-9]{1,7}(\.[0-9]{1,3})?)$"


def _wait_timeout(wait: str | None, max_wait_s: float) -> float | None:
    if wait is None or wait == "false":
        return None
    if wait == "true":
        return max_wait_s
    return min(float(wait), max_wait_s)


@router.post("", status_code=201, response_model=JobPublic)
async def create_job(
    spec: JobSpec,
    jobs: JobsDep,
    tenant: TenantDep,
    settings: SettingsDep,
    response: Response,
    wait: Annotated[
        str | None,
        Query(pattern=WAIT_PATTERN, description="`true`, or seconds: return once the job has finished (or then)."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, description="Retries return the same job."),
    ] = None,
) -> JobPublic:
    """Submit a job (the same spec as `orchestrator run --spec`); 201 with the job, queued or finished."""
    record, created = await run_in_threadpool(jobs.submit, tenant, spec, idempotency_key=idempotency_key)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{record.id}"
    timeout = _wait_timeout(wait, settings.api.max_wait_s)
    if timeout is not None and not record.terminal:
        record = await wait_for_job(jobs, tenant, record.id, timeout)
    return JobPublic.of(record)


@router.get("", response_model=JobsPage)
def list_jobs(
    jobs: JobsDep,
    tenant: TenantDep,
    status: Annotated[list[JobState] | None, Query(description="Only jobs in these states.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="From a previous page.")] = None,
) -> JobsPage:
    """This tenant's jobs, newest first."""
    statuses = [s.value for s in status] if status else None
    records = jobs.list_jobs(tenant, statuses=statuses, limit=limit, before_seq=parse_cursor(cursor))
    return JobsPage(data=[JobPublic.of(r) for r in records], next_cursor=next_cursor([r.seq for r in records], limit))


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> JobPublic:
    return JobPublic.of(jobs.get(tenant, job_id))


@router.delete("/{job_id}", response_model=JobPublic)
def cancel_job(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> JobPublic:
    """Cancel a queued or running job; a running job's sandbox is torn down before this returns."""
    return JobPublic.of(jobs.cancel(tenant, job_id))


@router.get("/{job_id}/events", response_model=EventsPage)
def job_events(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> EventsPage:
    """The job's audit trail: one event per lifecycle transition."""
    return EventsPage(data=[EventPublic.of(e) for e in jobs.events(tenant, job_id)])


@router.get("/{job_id}/logs", response_class=StreamingResponse, responses=SSE_RESPONSE)
async def job_logs(job_id: JobId, jobs: JobsDep, tenant: TenantDep) -> StreamingResponse:
    """stdout/stderr as Server-Sent Events (`stdout`, `stderr`, then `end`), live while the job runs."""
    record = await run_in_threadpool(jobs.get, tenant, job_id)
    return StreamingResponse(_log_events(jobs, tenant, record), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/{job_id}/artifacts/{path:path}", response_class=FileResponse, responses={200: {"content": {}}})
def get_artifact(job_id: JobId, path: str, jobs: JobsDep, tenant: TenantDep) -> FileResponse:
    """One collected artifact, as listed in the job's result."""
    target = jobs.artifact_path(tenant, job_id, relative_path(path))
    return FileResponse(target, media_type="application/octet-stream", filename=target.name)


async def _log_events(jobs: JobService, tenant: str, record: JobRecord) -> AsyncIterator[bytes]:
    live = jobs.live_log(record.id)
    if live is None and not record.terminal:  # it ended between the two looks
        record = await run_in_threadpool(jobs.get, tenant, record.id)
    seq = 0
    if live is not None:
        decoder = TextDecoder()
        woken = asyncio.Event()
        wake = threadsafe_setter(woken)
        live.subscribe(wake)
        try:
            index = 0
            while True:
                woken.clear()
                chunks, closed = live.read_from(index)
                index += len(chunks)
                for stream, data in chunks:
                    text = decoder.decode(stream, data)
                    if text:
                        seq += 1
                        yield frame(stream, {"text": text}, seq)
                if closed:
                    for stream, text in decoder.flush():
                        seq += 1
                        yield frame(stream, {"text": text}, seq)
                    break
                try:
                    await asyncio.wait_for(woken.wait(), 15.0)
                except asyncio.TimeoutError:
                    yield KEEPALIVE
        finally:
            live.unsubscribe(wake)
        record = await run_in_threadpool(jobs.get, tenant, record.id)
    elif record.terminal and record.result is not None:
        for stream in ("stdout", "stderr"):
            text = str(record.result.get(stream) or "")
            if text:
                seq += 1
                yield frame(stream, {"text": text}, seq)
    result = record.result or {}
    yield frame(
        "end",
        {
            "status": record.status,
            "exit_code": result.get("exit_code"),
            "error": result.get("error"),
            "stdout_truncated": result.get("stdout_truncated", False),
            "stderr_truncated": result.get("stderr_truncated", False),
        },
        seq + 1,
    )
