"""Request body limits, enforced while the body streams in.

JSON requests are read up to ``max_request_bytes`` before the app sees them
(413 beyond it, whatever Content-Length claimed). File uploads are passed
through as a stream and counted against ``max_upload_bytes``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import PayloadTooLargeError

_UPLOAD = re.compile(r"^/v1/sessions/[^/]+/files/.+")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_request_bytes: int, max_upload_bytes: int):
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "PUT" and _UPLOAD.match(scope["path"]) is not None
        limit = self.max_upload_bytes if upload else self.max_request_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        if upload:
            await self.app(scope, _counting(receive, limit), send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(send, limit)
                return
            more = bool(message.get("more_body", False))
        await self.app(scope, replay_body(bytes(body), receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLargeError(
                    f"the upload exceeds the {limit}-byte limit", code="upload.too_large", details={"limit": limit}
                )
        return message

    return counted


def replay_body(body: bytes, receive: Receive) -> Receive:
    """The body once more, then the connection's own messages (a disconnect, for a stream)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send: Send, limit: int) -> None:
    payload: dict[str, Any] = {
        "error": {
            "code": "request.too_large",
            "message": f"the request body exceeds the {limit}-byte limit",
            "details": {"limit": limit},
        }
    }
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
