"""``orchestrator sessions``: list and remove sessions, on this host or on a control plane."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Annotated, Any

import typer

from orchestrator.cli.common import fail, load_settings
from orchestrator.errors import OrchestratorError

sessions_app = typer.Typer(
    name="sessions", help="List and remove sessions (local `up` sessions, or a server's).", no_args_is_help=True
)

ServerOpt = Annotated[str | None, typer.Option(help="Manage the sessions of this control plane (URL).")]
TokenOpt = Annotated[
    str | None, typer.Option(help="API token for --server (default: $ORCH_TOKEN).", envvar="ORCH_TOKEN")
]


def _timestamp(value: object, default: float) -> float:
    """Local records hold epoch seconds; the API answers ISO 8601."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return default
    return default


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


@sessions_app.command("list")
def list_sessions(
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Sessions and their state (a local session whose `up` process died is shown as orphaned)."""
    rows: list[dict[str, Any]]
    try:
        if server is not None:
            from orchestrator.interactive.remote import SessionClient

            client = SessionClient(server, token)
            try:
                rows = client.list()
            finally:
                client.close()
        else:
            from orchestrator.interactive.registry import SessionRegistry

            rows = [r.to_dict() for r in SessionRegistry(load_settings()).list()]
    except OrchestratorError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no sessions")
        return
    now = time.time()
    typer.echo(f"{'ID':<34} {'PROVIDER':<9} {'STATE':<10} {'AGE':>5} {'EXPIRES':>8}  OWNER")
    for row in rows:
        created = _timestamp(row.get("created_at"), now)
        expires = row.get("expires_at")
        left = _age(_timestamp(expires, now) - now) if expires else "-"
        owner = str(row.get("owner_pid") or row.get("tenant") or "-")
        state = str(row.get("state") or row.get("status") or "-")
        typer.echo(
            f"{row.get('id')!s:<34} {row.get('provider')!s:<9} {state:<10} {_age(now - created):>5} {left:>8}  {owner}"
        )


@sessions_app.command("rm")
def remove_session(
    session_ids: Annotated[list[str], typer.Argument(help="Session id(s).", metavar="ID...")],
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Tear sessions down. A local session's `up` is told to leave (SIGTERM); an orphan is destroyed here."""
    failed = False
    for session_id in session_ids:
        try:
            if server is not None:
                from orchestrator.interactive.remote import SessionClient

                client = SessionClient(server, token)
                try:
                    client.delete(session_id)
                finally:
                    client.close()
                typer.echo(f"removed {session_id}")
            else:
                from orchestrator.interactive.registry import SessionRegistry

                record, via_owner = SessionRegistry(load_settings()).terminate(session_id)
                how = f"its owner (pid {record.owner_pid}) tore it down" if via_owner else "destroyed"
                typer.echo(f"removed {session_id}: {how}")
        except OrchestratorError as exc:
            print(f"orchestrator: error [{exc.code}]: {session_id}: {exc.message}", file=sys.stderr)
            failed = True
    if failed:
        raise typer.Exit(125)
