"""The ``orchestrator`` command line: a thin layer over the engine and services."""

from __future__ import annotations

import typer

from orchestrator.cli import doctor, render, run

app = typer.Typer(
    name="orchestrator",
    help="Run untrusted, AI-generated code in disposable sandboxes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(
    "run",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    help="Run one job in a fresh sandbox: orchestrator run [OPTIONS] -- CMD [ARGS...]",
)(run.run)
app.command("doctor", help="Which providers this host can run, and how to fix the others.")(doctor.doctor)
app.command("render", help="Write what a provider would launch for a spec, without running it.")(render.render)


def main() -> None:
    app()
