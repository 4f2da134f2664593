"""Liveness and readiness probes (no authentication, no tenant data)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import ServicesDep
from api.errors import NotReadyError
from api.routes.common import ERRORS
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: ERRORS[503]})
async def readyz(services: ServicesDep) -> Health:
    """Ready for work: the store answers, recovery has run, the default provider can run jobs."""
    if not services.started:
        raise NotReadyError("the service is starting or stopping", details={"retry_after": 1})
    try:
        await run_in_threadpool(services.store.ping)
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        raise _not_ready(f"the job store does not answer: {type(exc).__name__}") from None
    default = services.settings.default_provider
    status = await run_in_threadpool(services.providers.status, default)
    if not status.available:
        raise _not_ready(f"the default provider {default!r} is unavailable: {status.reason}")
    return Health(status="ok", checks={"store": "ok", f"provider:{default}": "ok"})


def _not_ready(message: str) -> NotReadyError:
    return NotReadyError(message, details={"retry_after": 5})
