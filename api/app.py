"""The application factory: one ``Settings`` in, one FastAPI app out, no import-time state.

Run it with ``orchestrator serve``, or ``uvicorn --factory api.app:from_environment``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from api import errors
from api.fastpath import ExecFastPath
from api.limits import BodyLimitMiddleware
from api.metrics import Metrics
from api.routes import health, jobs, metrics, providers, sessions, tty
from orchestrator.engine import Engine
from orchestrator.services import Services
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
_THREADS = 200  # blocking calls (store, sandbox exec) run in the threadpool; waits do not hold a thread


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    metrics_ = Metrics()
    services = Services.build(settings, engine=engine, observer=metrics_)
    metrics_.bind(services)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, _THREADS)
        await run_in_threadpool(services.start)
        log.info("orchestrator API ready (store %s)", services.store.engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            await run_in_threadpool(services.stop)

    app = FastAPI(
        title="sandbox-orchestrator",
        version=API_VERSION,
        description="Run untrusted, AI-generated code in disposable sandboxes: jobs, sessions, streaming.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.services = services
    app.state.metrics = metrics_
    errors.install(app)
    app.add_middleware(ExecFastPath)  # innermost: inside the body limits
    app.add_middleware(
        BodyLimitMiddleware,
        max_request_bytes=settings.api.max_request_bytes,
        max_upload_bytes=settings.api.max_upload_bytes,
    )
    for module in (jobs, sessions, providers, health, metrics, tty):
        app.include_router(module.router)
    return app


def from_environment() -> FastAPI:
    """For ``uvicorn --factory``: settings from ``ORCH_*`` variables and ``ORCH_CONFIG``."""
    return create_app(Settings())
