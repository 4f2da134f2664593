"""What every command shares: settings, error printing, exit codes."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import typer

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
