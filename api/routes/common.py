"""What several routers share: documented error responses, cursors, waiting on a job."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.concurrency import run_in_threadpool

from api.schemas import ErrorBody
from api.sse import threadsafe_setter
from orchestrator.errors import SpecError
from orchestrator.services.jobs import JobService
from orchestrator.services.store import JobRecord

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (401, "Missing or unknown bearer token."),
        (404, "No such resource for this tenant."),
        (409, "The resource is not in a state that allows this."),
        (413, "The request, an inline file or an upload is too large."),
        (422, "Invalid request; `error.code` is the same stable code the CLI prints."),
        (503, "Capacity exhausted or provider unavailable; see `Retry-After`."),
    )
}

SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A Server-Sent Events stream.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise SpecError("invalid cursor", code="request.invalid_cursor") from None


def next_cursor(seqs: list[int], limit: int) -> str | None:
    return str(seqs[-1]) if len(seqs) == limit and seqs else None


async def wait_for_job(jobs: JobService, tenant: str, job_id: str, timeout: float) -> JobRecord:
    """Wait without holding a thread: the worker wakes this coroutine when the job ends."""
    done = asyncio.Event()
    wake = threadsafe_setter(done)
    final: list[JobRecord] = []

    def callback(record: JobRecord) -> None:
        final.append(record)
        wake()

    if jobs.on_done(job_id, callback):
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            jobs.remove_callback(job_id, callback)
    if final and final[0].tenant == tenant:
        return final[0]
    return await run_in_threadpool(jobs.get, tenant, job_id)
