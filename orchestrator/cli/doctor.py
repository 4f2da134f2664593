"""``orchestrator doctor``: which providers work here, and how to fix the rest."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from orchestrator.cli.common import load_settings
from orchestrator.errors import OrchestratorError
from orchestrator.providers import create_provider, provider_names


def doctor(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False) -> None:
    settings = load_settings()
    report = []
    for name in provider_names():
        entry: dict[str, object] = {"provider": name, "default": name == settings.default_provider}
        try:
            provider = create_provider(name, settings)
            availability = provider.availability()
            entry.update(
                available=availability.available,
                reason=availability.reason,
                fix=availability.fix,
                details=availability.details,
            )
            if availability.available:
                entry["capabilities"] = provider.capabilities().to_dict()
        except OrchestratorError as exc:
            entry.update(available=False, reason=exc.message, fix="", details=exc.details)
        except Exception as exc:  # noqa: BLE001 - doctor reports every failure instead of crashing
            entry.update(available=False, reason=f"{type(exc).__name__}: {exc}", fix="")
        report.append(entry)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        for entry in report:
            mark = "ok " if entry["available"] else "no "
            default = " (default)" if entry["default"] else ""
            typer.echo(f"[{mark}] {entry['provider']}{default}")
            if not entry["available"]:
                typer.echo(f"      why: {entry['reason']}")
                if entry.get("fix"):
                    typer.echo(f"      fix: {entry['fix']}")
            else:
                caps = entry.get("capabilities")
                limits = caps.get("limits", {}) if isinstance(caps, dict) else {}
                for key, value in dict(limits).items():
                    typer.echo(f"      {key}: {value}")
                details = entry.get("details")
                if isinstance(details, dict) and details.get("note"):
                    typer.echo(f"      note: {details['note']}")
    default_ok = any(e["available"] for e in report if e["default"])
    raise typer.Exit(0 if default_ok else 1)
