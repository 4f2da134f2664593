"""``orchestrator up``: a disposable session with an interactive shell (or ``-- CMD``) on this terminal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.common import fail, load_settings
from orchestrator.cli.run import parse_env, parse_map
from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec, parse_job_spec

DEFAULT_TIMEOUT_S = 3600.0


def build_session_spec(
    settings: Settings,
    *,
    provider: str,
    command: list[str],
    maps: list[str],
    env: list[str],
    memory: int | None,
    cpus: float | None,
    timeout: float,
) -> JobSpec:
    limits: dict[str, Any] = {"timeout_s": timeout, "cpu_s": timeout}
    if memory is not None:
        limits["memory_mb"] = memory
    if cpus is not None:
        limits["cpus"] = cpus
    spec = parse_job_spec(
        {
            "command": command,
            "provider": provider,
            "mounts": [parse_map(m) for m in maps],
            "env": dict(parse_env(e) for e in env),
            "limits": limits,
        }
    )
    settings.max_limits.check(spec.limits)
    return spec


def up(
    command: Annotated[list[str] | None, typer.Argument(help="Program to run instead of a shell, after '--'.")] = None,
    provider: Annotated[str | None, typer.Option(help="Provider (linux, hyperv, wsb); default: the host's.")] = None,
    map_: Annotated[list[str], typer.Option("--map", help="SRC:DST[:ro|:rw] (read-only by default).")] = [],  # noqa: B006
    memory: Annotated[int | None, typer.Option(help="Memory limit, MB.")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU share, in CPUs.")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Tear the session down after this many seconds (default 3600).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Copy /workspace here when the session ends.")] = None,
    shell: Annotated[str | None, typer.Option(help="Shell inside the sandbox (default: bash, else sh).")] = None,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE (repeatable).")] = [],  # noqa: B006
    server: Annotated[
        str | None, typer.Option(help="Open the session on this control plane (URL) instead of locally.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="API token for --server (default: $ORCH_TOKEN).", envvar="ORCH_TOKEN")
    ] = None,
) -> None:
    """Open a fresh sandbox and attach this terminal to a shell inside it; leaving destroys it."""
    from orchestrator.interactive.session import UpOptions
    from orchestrator.interactive.terminal import Terminal

    settings = load_settings()
    name = provider or settings.default_provider
    limit = min(DEFAULT_TIMEOUT_S, settings.max_limits.timeout_s)
    try:
        if shell is not None and not shell.startswith("/"):
            raise SpecError(f"--shell {shell!r}: give an absolute path", code="spec.invalid_command")
        spec = build_session_spec(
            settings,
            provider=name,
            command=list(command or [shell or "/bin/sh"]),
            maps=map_,
            env=env,
            memory=memory,
            cpus=cpus,
            timeout=timeout if timeout is not None else limit,
        )
    except OrchestratorError as exc:
        fail(exc, as_json=False)
    options = UpOptions(
        provider=name,
        spec=spec,
        command=list(command) if command else None,
        shell=shell,
        output=output.absolute() if output is not None else None,
        timeout_s=spec.limits.timeout_s,
    )
    terminal = Terminal()
    if server is not None:
        from orchestrator.interactive.remote import run_remote

        raise typer.Exit(run_remote(server, token, options, terminal))
    if name == "linux":
        from orchestrator.interactive.session import run_linux

        if os.name != "posix":  # pragma: no cover - the linux provider exists only on Linux
            fail(OrchestratorError("the linux provider needs Linux", code="provider.unavailable"), as_json=False)
        raise typer.Exit(run_linux(settings, options, terminal))
    if name in ("hyperv", "wsb"):
        from orchestrator.interactive.windows import run_windows

        raise typer.Exit(run_windows(settings, options, terminal))
    fail(
        SpecError(f"provider {name!r} has no interactive sessions (linux, hyperv, wsb do)", code="provider.unknown"),
        as_json=False,
    )
