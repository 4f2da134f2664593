"""``POST /v1/sessions/{id}/exec`` without FastAPI's per-request machinery, for the plain case.

Agent platforms send sessions many small commands, and FastAPI's routing and
dependency solving cost a third of such a call on the service's side
(``benchmarks/api_latency.py``). This middleware, the innermost, serves a
request that is valid as it stands (a JSON body that validates, a well-formed
id, no query string) with the same models, checks, services and error
rendering as the documented route in ``routes/sessions.py``. Every other
request goes on to the router unchanged, so request validation and its error
codes have one source.
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import current_tenant
from api.errors import orchestrator_error_response
from api.limits import replay_body
from api.routes.sessions import exec_params, valid_session_id
from api.schemas import ExecBody
from orchestrator.errors import OrchestratorError
from orchestrator.services import Services

_PATH = re.compile(r"/v1/sessions/([^/]+)/exec")


class ExecFastPath:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None or scope.get("query_string") or not _json(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        replay = replay_body(body, receive)
        try:
            parsed = ExecBody.model_validate(json.loads(body))  # as FastAPI parses a body
        except (ValueError, ValidationError):
            parsed = None
        session_id = match.group(1)
        if parsed is None or not valid_session_id(session_id):
            await self.app(scope, replay, send)
            return
        request = Request(scope, replay)
        services: Services = request.app.state.services
        response: Response
        try:
            tenant = await current_tenant(request)
            result = await services.sessions.exec_async(tenant, session_id, exec_params(parsed))
            response = Response(result.model_dump_json(), media_type="application/json")
        except OrchestratorError as exc:
            response = orchestrator_error_response(exc)
        await response(scope, replay, send)


def _json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).split(b";")[0].strip().lower() == b"application/json"
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
