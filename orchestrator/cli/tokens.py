"""``orchestrator tokens``: API bearer tokens (printed once at creation; only a hash is stored)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import fail, load_settings
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.services.store import Store
    from orchestrator.services.tokens import TokenService

tokens_app = typer.Typer(help="Manage API bearer tokens.", no_args_is_help=True)


def _service() -> tuple[Store, TokenService]:
    from orchestrator.services.store import Store
    from orchestrator.services.tokens import TokenService

    store = Store.from_settings(load_settings())
    store.create_schema()
    return store, TokenService(store)


def _when(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts is not None else None


@tokens_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant this token acts as.")],
    name: Annotated[str, typer.Option(help="A label to recognise it by.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
) -> None:
    """Create a token and print it; it is not shown again."""
    store, service = _service()
    try:
        issued = service.create(tenant, name=name)
    except OrchestratorError as exc:
        fail(exc, as_json=as_json)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"id": issued.record.id, "tenant": issued.record.tenant, "token": issued.token}))
    else:
        typer.echo(issued.token)
        typer.echo(f"token {issued.record.id} for tenant {tenant}: store it now, it cannot be shown again", err=True)


@tokens_app.command("list")
def list_tokens(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
) -> None:
    """List tokens (never their values)."""
    store, service = _service()
    try:
        records = service.list(tenant=tenant)
    finally:
        store.close()
    rows = [
        {
            "id": r.id,
            "tenant": r.tenant,
            "name": r.name,
            "created_at": _when(r.created_at),
            "revoked_at": _when(r.revoked_at),
        }
        for r in records
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        typer.echo(f"{row['id']}  {row['tenant']:<20} {row['name']:<20} {row['created_at']}  {state}")


@tokens_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token id shown by 'tokens list'.")]) -> None:
    """Revoke a token; calls with it are refused from then on."""
    store, service = _service()
    try:
        service.revoke(token_id)
    except OrchestratorError as exc:
        fail(exc, as_json=False)
    finally:
        store.close()
    typer.echo(f"revoked {token_id}", err=True)
