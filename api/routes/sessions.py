"""``/v1/sessions``: a live sandbox for many commands, its workspace files, and its end."""

from __future__ import annotations

import asyncio
import binascii
import os
import re
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from api.deps import SessionsDep, TenantDep
from api.routes.common import ERRORS, next_cursor, parse_cursor
from api.schemas import (
    ExecBody,
    FilePublic,
    FilesPage,
    SessionPublic,
    SessionsPage,
    SessionStatus,
)
from api.sse import SSE_HEADERS, TextDecoder, frame
from orchestrator.cancel import CancelToken
from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.output import Stream
from orchestrator.services.sessions import ExecParams, ExecResult, SessionService
from orchestrator.spec import SessionSpec, parse_job_spec

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=ERRORS)

SESSION_ID_PATTERN, SESSION_ID_MAX = r"^[A-Za-z0-9_-]+$", 64
SessionId = Annotated[str, Path(min_length=1, max_length=SESSION_ID_MAX, pattern=SESSION_ID_PATTERN)]
_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_FILE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
}


@router.post("", status_code=201, response_model=SessionPublic)
def create_session(spec: SessionSpec, sessions: SessionsDep, tenant: TenantDep) -> SessionPublic:
    """Start a live sandbox; it ends on DELETE, after `ttl_s`, or after `idle_timeout_s` without use."""
    return SessionPublic.of(sessions.create(tenant, spec))


@router.get("", response_model=SessionsPage)
def list_sessions(
    sessions: SessionsDep,
    tenant: TenantDep,
    status: Annotated[list[SessionStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> SessionsPage:
    records = sessions.list_sessions(
        tenant, statuses=list(status) if status else None, limit=limit, before_seq=parse_cursor(cursor)
    )
    return SessionsPage(
        data=[SessionPublic.of(r) for r in records], next_cursor=next_cursor([r.seq for r in records], limit)
    )


@router.get("/{session_id}", response_model=SessionPublic)
def get_session(session_id: SessionId, sessions: SessionsDep, tenant: TenantDep) -> SessionPublic:
    return SessionPublic.of(sessions.get(tenant, session_id))


@router.delete("/{session_id}", response_model=SessionPublic)
def delete_session(session_id: SessionId, sessions: SessionsDep, tenant: TenantDep) -> SessionPublic:
    """Tear the session's sandbox down now."""
    return SessionPublic.of(sessions.delete(tenant, session_id))


def valid_session_id(value: str) -> bool:
    return 0 < len(value) <= SESSION_ID_MAX and re.fullmatch(SESSION_ID_PATTERN, value) is not None


def exec_params(body: ExecBody) -> ExecParams:
    # The job spec's validators give the same checks and stable codes as `orchestrator run`.
    parse_job_spec({"command": body.command, "env": body.env, "workdir": body.cwd})
    try:
        stdin = body.stdin_bytes()
    except (binascii.Error, ValueError):
        raise SpecError("stdin is not valid base64", code="spec.invalid") from None
    return ExecParams(command=body.command, timeout_s=body.timeout_s, env=body.env, stdin=stdin, cwd=body.cwd)


@router.post(
    "/{session_id}/exec",
    response_model=ExecResult,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def exec_in_session(
    session_id: SessionId,
    body: ExecBody,
    sessions: SessionsDep,
    tenant: TenantDep,
    stream: Annotated[bool, Query(description="Stream `stdout`/`stderr` events, then `exit`, as SSE.")] = False,
) -> Response:
    """Run one command in the session; returns its exit code and output (or streams them)."""
    params = exec_params(body)
    if not stream:
        result = await sessions.exec_async(tenant, session_id, params)
        # Serialized once here: the model is built from trusted values, so FastAPI need not validate it again.
        return Response(result.model_dump_json(), media_type="application/json")
    await run_in_threadpool(sessions.get, tenant, session_id)
    return StreamingResponse(
        _exec_events(sessions, tenant, session_id, params), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _exec_events(
    sessions: SessionService, tenant: str, session_id: str, params: ExecParams
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Stream, bytes]] = asyncio.Queue()
    token = CancelToken()

    def listener(stream: Stream, data: bytes) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (stream, data))

    task: asyncio.Future[ExecResult] = asyncio.ensure_future(
        run_in_threadpool(sessions.exec, tenant, session_id, params, listener=listener, cancel=token)
    )
    decoder = TextDecoder()
    seq = 0
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            waiting: list[asyncio.Future[Any]] = [getter, task]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            stream, data = getter.result()
            text = decoder.decode(stream, data)
            if text:
                seq += 1
                yield frame(stream, {"text": text}, seq)
        while not queue.empty():
            stream, data = queue.get_nowait()
            text = decoder.decode(stream, data)
            if text:
                seq += 1
                yield frame(stream, {"text": text}, seq)
        for stream, text in decoder.flush():
            seq += 1
            yield frame(stream, {"text": text}, seq)
        try:
            result = task.result()
        except OrchestratorError as exc:
            yield frame("error", {"error": exc.to_dict()}, seq + 1)
            return
        summary = result.model_dump(mode="json", exclude={"stdout", "stderr"})
        yield frame("exit", summary, seq + 1)
    finally:
        if not task.done():
            token.cancel("the client went away")


@router.get("/{session_id}/files", response_model=FilesPage)
def list_files(
    session_id: SessionId,
    sessions: SessionsDep,
    tenant: TenantDep,
    path: Annotated[str, Query(max_length=4096, description="A directory in the workspace; the top by default.")] = "",
) -> FilesPage:
    """The entries of one workspace directory (symlinks are listed, never followed)."""
    entries, truncated = sessions.list_files(tenant, session_id, path)
    return FilesPage(data=[FilePublic.of(e) for e in entries], truncated=truncated)


@router.put("/{session_id}/files/{path:path}", status_code=201, response_model=FilePublic, openapi_extra=_BINARY_BODY)
async def put_file(
    session_id: SessionId,
    path: str,
    request: Request,
    sessions: SessionsDep,
    tenant: TenantDep,
    mode: Annotated[str, Query(pattern=r"^[0-7]{3,4}$", description="Octal permission bits.")] = "644",
) -> FilePublic:
    """Write a file into the workspace (the request body, streamed; at most `max_upload_bytes`)."""
    upload, done = await run_in_threadpool(sessions.open_upload, tenant, session_id, path, mode=int(mode, 8) & 0o777)
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(upload.write, chunk)
        entry = await run_in_threadpool(upload.commit)
    except BaseException:
        upload.abort()
        raise
    finally:
        done()
    return FilePublic.of(entry)


@router.get("/{session_id}/files/{path:path}", response_class=StreamingResponse, responses=_FILE_RESPONSE)
def get_file(session_id: SessionId, path: str, sessions: SessionsDep, tenant: TenantDep) -> StreamingResponse:
    """Read a regular file from the workspace (a symlink is refused, never followed)."""
    fd, size = sessions.open_file(tenant, session_id, path)
    return StreamingResponse(
        _read_fd(fd, size), media_type="application/octet-stream", headers={"X-File-Size": str(size)}
    )


def _read_fd(fd: int, size: int) -> Iterator[bytes]:
    try:
        remaining = size
        while remaining > 0:
            data = os.read(fd, min(1 << 20, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        os.close(fd)
