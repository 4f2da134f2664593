"""``orchestrator serve``: the control-plane API under uvicorn."""

from __future__ import annotations

import faulthandler
import logging
import signal
from typing import Annotated

import typer

from orchestrator.cli.common import fail, load_settings
from orchestrator.errors import OrchestratorError


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: settings api.host, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings api.port, 8080).")] = None,
    workers_per_provider: Annotated[
        int | None, typer.Option("--workers-per-provider", min=1, help="Concurrent job sandboxes per provider.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the REST API. Without any API token, only a loopback address is allowed."""
    import uvicorn

    from api.app import create_app
    from orchestrator.services.store import Store
    from orchestrator.services.tokens import TokenService

    settings = load_settings()
    api = settings.api.model_copy(
        update={
            k: v
            for k, v in {"host": host, "port": port, "workers_per_provider": workers_per_provider}.items()
            if v is not None
        }
    )
    settings = settings.model_copy(update={"api": api})
    store = Store.from_settings(settings)
    try:
        store.create_schema()
        TokenService(store).check_bind(api.host)
    except OrchestratorError as exc:
        fail(exc, as_json=False)
    finally:
        store.close()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps every thread's stack
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=api.host,
        port=api.port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=int(api.shutdown_grace_s) + 5,
        proxy_headers=False,
    )
