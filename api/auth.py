"""Who is calling: a bearer token names a tenant (see ``orchestrator.services.tokens``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer

from orchestrator.services import Services

# Declared for the OpenAPI document; the header itself is read by ``current_tenant``.
bearer_scheme = HTTPBearer(auto_error=False, description="An API token from 'orchestrator tokens create'.")


async def current_tenant(request: Request) -> str:
    services: Services = request.app.state.services
    authorization = request.headers.get("authorization")
    if authorization:
        cached = services.tokens.cached_tenant(authorization)
    else:
        peer = request.client.host if request.client is not None else None
        cached = services.tokens.cached_local(peer, allow_loopback=services.settings.api.allow_unauthenticated_loopback)
    if cached is not None:
        return cached
    return await run_in_threadpool(_resolve, services, request)


def _resolve(services: Services, request: Request) -> str:
    peer = request.client.host if request.client is not None else None
    return services.tokens.resolve(
        request.headers.get("authorization"),
        peer=peer,
        allow_loopback=services.settings.api.allow_unauthenticated_loopback,
    )
