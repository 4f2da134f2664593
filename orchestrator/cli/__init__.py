"""The ``orchestrator`` command line: a thin layer over the engine and services."""

from __future__ import annotations

import gc

import typer

from orchestrator.cli import batch, doctor, render, run, serve, sessions, tokens, up

app = typer.Typer(
    name="orchestrator",
    help="Run untrusted, AI-generated code in disposable sandboxes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_PASSTHROUGH = {"allow_interspersed_args": False, "ignore_unknown_options": True}

app.command("run", context_settings=_PASSTHROUGH, help="Run one job in a fresh sandbox: run [OPTIONS] -- CMD")(run.run)
app.command("up", context_settings={"allow_interspersed_args": False}, help="A shell in a throw-away sandbox.")(up.up)
app.command("batch", help="Evaluate many generated programs, one sandbox each.")(batch.batch)
app.command("serve", help="Start the REST control plane.")(serve.serve)
app.command("doctor", help="Which providers this host can run, and how to fix the others.")(doctor.doctor)
app.command("render", help="Write what a provider would launch for a spec, without running it.")(render.render)
app.add_typer(tokens.tokens_app, name="tokens")
app.add_typer(sessions.sessions_app, name="sessions")


def main() -> None:
    # Everything imported so far lives as long as the process: keep the collector from walking
    # it again and again (batch and serve allocate steadily).
    gc.freeze()
    app()
