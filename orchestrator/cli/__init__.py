"""The ``orchestrator`` command line: a thin layer over the engine and services."""

from __future__ import annotations

import importlib

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

# Commands whose modules are still being written are registered when present.
for module_name, kind, name, attr, extra in (
    ("serve", "command", "serve", "serve", {}),
    ("tokens", "group", "tokens", "tokens_app", {}),
    ("up", "command", "up", "up", {"context_settings": {"allow_interspersed_args": False}}),
    ("sessions", "group", "sessions", "sessions_app", {}),
    ("batch", "command", "batch", "batch", {}),
):
    try:
        module = importlib.import_module(f"orchestrator.cli.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"orchestrator.cli.{module_name}":
            raise
        continue
    target = getattr(module, attr)
    if kind == "command":
        app.command(name, **extra)(target)
    else:
        app.add_typer(target, name=name)


def main() -> None:
    app()
