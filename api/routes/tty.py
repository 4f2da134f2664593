"""``/v1/sessions/{id}/tty``: a WebSocket terminal on a live session.

Authentication is the same bearer token as the rest of ``/v1`` (the
``Authorization`` header of the upgrade request). The protocol:

client -> server
    text   ``{"type": "start", "argv": [...] | null, "env": {...}, "rows": R, "cols": C}`` (first message)
    binary keystrokes, passed to the pty unchanged
    text   ``{"type": "resize", "rows": R, "cols": C}`` / ``{"type": "kill"}``
server -> client
    text   ``{"type": "started"}``
    binary the program's output
    text   ``{"type": "exit", "code": N, "signal": S}`` then close (1000)
    text   ``{"type": "error", "code": "...", "message": "..."}`` then close (4401 auth, 4404 unknown
           session, 4400 bad request, 4409 session not usable, 1011 internal)

Closing the socket kills the program; the session itself lives on until it is
deleted or expires, and an open terminal keeps it from going idle.

The app's ``Services`` (``app.state.services``) back the endpoint; tests and
other apps may set any ``TtyBackend`` as ``app.state.tty_backend`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from orchestrator.errors import AuthError, ConflictError, NotFoundError, OrchestratorError
from orchestrator.interactive.channel import AgentPtyChannel, PtyChannel, clamp_size

log = logging.getLogger(__name__)

router = APIRouter(tags=["sessions"])

MAX_INPUT_FRAME = 64 * 1024
START_TIMEOUT_S = 30.0


class TtyBackend(Protocol):
    def authenticate(self, authorization: str | None, peer: str | None) -> str:
        """The caller's tenant; raises AuthError."""
        ...

    def open_pty(
        self, tenant: str, session_id: str, *, argv: list[str] | None, env: dict[str, str], rows: int, cols: int
    ) -> PtyChannel:
        """Start a program on a pty in the tenant's live session; raises NotFoundError, ConflictError..."""
        ...


class ServicesTtyBackend:
    """The control plane's own backend: its token service and its live linux sessions."""

    def __init__(self, services: Any):
        self.services = services

    def authenticate(self, authorization: str | None, peer: str | None) -> str:
        tenant: str = self.services.tokens.resolve(
            authorization, peer=peer, allow_loopback=self.services.settings.api.allow_unauthenticated_loopback
        )
        return tenant

    def open_pty(
        self, tenant: str, session_id: str, *, argv: list[str] | None, env: dict[str, str], rows: int, cols: int
    ) -> PtyChannel:
        sessions = self.services.sessions
        live = sessions.hold(tenant, session_id)
        try:
            if getattr(live.sandbox, "agent", None) is None and getattr(live.provider, "name", "") != "linux":
                raise ConflictError(
                    f"provider {live.provider_name!r} has no terminal for sessions", code="session.tty_unsupported"
                )
            channel = AgentPtyChannel.start(live.provider, live.sandbox, argv=argv, env=env, rows=rows, cols=cols)
        except BaseException:
            sessions.release(live)
            raise
        return _Released(channel, lambda: sessions.release(live))


class _Released:
    """A channel that gives its session back (busy count) when closed."""

    def __init__(self, channel: PtyChannel, release: Any):
        self._channel = channel
        self._release = release
        self._closed = False

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        return self._channel.next_event(timeout)

    def send_input(self, data: bytes) -> None:
        self._channel.send_input(data)

    def resize(self, rows: int, cols: int) -> None:
        self._channel.resize(rows, cols)

    def kill(self) -> None:
        self._channel.kill()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._channel.close()
            finally:
                self._release()


def _backend(websocket: WebSocket) -> TtyBackend:
    state = websocket.app.state
    backend: TtyBackend | None = getattr(state, "tty_backend", None)
    if backend is None:
        backend = ServicesTtyBackend(state.services)
        state.tty_backend = backend
    return backend


def _close_code(exc: OrchestratorError) -> int:
    if isinstance(exc, AuthError):
        return 4401
    if isinstance(exc, NotFoundError) or exc.http_status == 404:
        return 4404
    if exc.http_status in (400, 413, 422):
        return 4400
    if exc.http_status == 409:
        return 4409
    return 1011


async def _fail(websocket: WebSocket, exc: OrchestratorError) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"type": "error", "code": exc.code, "message": exc.message}))
        await websocket.close(code=_close_code(exc))


class _BadRequest(OrchestratorError):
    code = "tty.bad_request"
    http_status = 400


def _parse_start(text: str) -> tuple[list[str] | None, dict[str, str], int, int]:
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "start":
        raise _BadRequest("the first message must be {'type': 'start', ...}", code="tty.bad_request")
    argv = message.get("argv")
    if argv is not None and (
        not isinstance(argv, list) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv)
    ):
        raise _BadRequest("argv must be a non-empty list of strings", code="tty.bad_request")
    env = message.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v for k, v in env.items()
    ):
        raise _BadRequest("env must map names to strings", code="tty.bad_request")
    rows, cols = clamp_size(message.get("rows"), message.get("cols"))
    return argv, env, rows, cols


@router.websocket("/v1/sessions/{session_id}/tty")
async def session_tty(websocket: WebSocket, session_id: str) -> None:
    backend = _backend(websocket)
    await websocket.accept()
    peer = websocket.client.host if websocket.client else None
    try:
        tenant = backend.authenticate(websocket.headers.get("authorization"), peer)
    except OrchestratorError as exc:
        await _fail(websocket, exc)
        return
    try:
        first = await asyncio.wait_for(websocket.receive_text(), START_TIMEOUT_S)
        argv, env, rows, cols = _parse_start(first)
    except (asyncio.TimeoutError, KeyError, WebSocketDisconnect):
        with contextlib.suppress(Exception):
            await websocket.close(code=4400)
        return
    except OrchestratorError as exc:
        await _fail(websocket, exc)
        return
    try:
        channel = await asyncio.to_thread(
            backend.open_pty, tenant, session_id, argv=argv, env=env, rows=rows, cols=cols
        )
    except OrchestratorError as exc:
        await _fail(websocket, exc)
        return
    log.info("tty opened on session %s for tenant %s", session_id, tenant)
    try:
        await websocket.send_text(json.dumps({"type": "started"}))
        await _pump(websocket, channel)
    finally:
        await asyncio.to_thread(channel.close)
        log.info("tty closed on session %s", session_id)


async def _pump(websocket: WebSocket, channel: PtyChannel) -> None:
    async def from_client() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                for start in range(0, len(data), MAX_INPUT_FRAME):
                    await asyncio.to_thread(channel.send_input, data[start : start + MAX_INPUT_FRAME])
                continue
            control = _control(message.get("text"))
            if control.get("type") == "resize":
                await asyncio.to_thread(channel.resize, *clamp_size(control.get("rows"), control.get("cols")))
            elif control.get("type") == "kill":
                await asyncio.to_thread(channel.kill)

    async def to_client() -> None:
        while True:
            event = await asyncio.to_thread(channel.next_event, 0.25)
            if event is None:
                continue
            if event["type"] == "output":
                await websocket.send_bytes(event["data"])
            elif event["type"] in ("exit", "error"):
                await websocket.send_text(json.dumps(event))
                await websocket.close(code=1000 if event["type"] == "exit" else 1011)
                return

    reader = asyncio.ensure_future(from_client())
    writer = asyncio.ensure_future(to_client())
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                task.result()
    finally:
        for task in (reader, writer):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _control(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
