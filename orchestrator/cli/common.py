"""What every command shares: settings, error printing, exit codes."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import NoReturn

import typer

from orchestrator.audit import JsonlAuditSink
from orchestrator.engine import Engine
from orchestrator.errors import OrchestratorError
from orchestrator.settings import Settings

EXIT_ORCHESTRATOR_FAILED = 125


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic, JSON and TOML errors all mean "bad settings"
        fail(OrchestratorError(f"invalid settings: {exc}", code="settings.invalid"), as_json=False)


def fail(error: OrchestratorError, *, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": error.to_dict()}, indent=2))
    print(f"orchestrator: error [{error.code}]: {error.message}", file=sys.stderr)
    raise typer.Exit(EXIT_ORCHESTRATOR_FAILED)


def local_engine(settings: Settings, provider: str | None) -> Engine:
    """The engine of a one-shot command, once what an earlier, killed command left is removed.

    Only for the linux provider: its records are local files, so finding a dead
    run's sandboxes costs a directory listing (remote hosts are left to the
    control plane, which reaps every provider when it starts).
    """
    engine = Engine(settings, audit=JsonlAuditSink(settings.audit_path))
    if (provider or settings.default_provider) == "linux":
        with contextlib.suppress(Exception):  # cleaning up after others never stops this run
            engine.provider("linux").reap_orphans(live_ids=set())
    return engine
