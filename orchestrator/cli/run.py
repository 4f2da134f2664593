"""``orchestrator run``: one job, its streams on the terminal, its exit code as ours."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.common import fail, load_settings, local_engine
from orchestrator.engine import RunOptions, result_exit_code
from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.output import Stream
from orchestrator.result import JobResult, JobStatus
from orchestrator.spec import load_job_spec, parse_job_spec


def parse_map(value: str) -> dict[str, Any]:
    """``SRC:DST[:ro|:rw]``."""
    parts = value.split(":")
    mode = "ro"
    if len(parts) >= 3 and parts[-1] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise SpecError(f"--map {value!r}: expected SRC:DST[:ro|:rw]", code="spec.invalid_mount")
    source = str(Path(parts[0]).expanduser().absolute()) if not parts[0].startswith("/") else parts[0]
    return {"source": source, "target": parts[1], "read_only": mode == "ro"}


def parse_env(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise SpecError(f"--env {value!r}: expected KEY=VALUE", code="spec.invalid_env")
    return key, val


def parse_file(value: str) -> dict[str, Any]:
    guest, sep, host = value.partition("=")
    if not sep or not guest or not host:
        raise SpecError(f"--file {value!r}: expected GUEST_PATH=HOST_FILE", code="spec.invalid_path")
    try:
        data = Path(host).expanduser().read_bytes()
    except OSError as exc:
        raise SpecError(f"--file {value!r}: cannot read {host}: {exc.strerror}", code="spec.invalid_path") from None
    import base64

    return {"path": guest, "content": base64.b64encode(data).decode(), "encoding": "base64"}


def build_spec(
    command: list[str],
    *,
    spec_file: Path | None,
    provider: str | None,
    maps: list[str],
    timeout: float | None,
    cpu_time: float | None,
    cpus: float | None,
    memory: int | None,
    pids: int | None,
    output_limit: int | None,
    env: list[str],
    workdir: str | None,
    files: list[str],
    artifacts: list[str],
) -> Any:
    base: dict[str, Any] = load_job_spec(spec_file).model_dump(exclude_unset=True) if spec_file else {}
    if command:
        base["command"] = command
        base.pop("script", None)
    if provider:
        base["provider"] = provider
    if maps:
        base["mounts"] = [*base.get("mounts", []), *(parse_map(m) for m in maps)]
    limits = dict(base.get("limits", {}))
    for key, value in (
        ("timeout_s", timeout),
        ("cpu_s", cpu_time),
        ("cpus", cpus),
        ("memory_mb", memory),
        ("pids", pids),
        ("output_bytes", output_limit),
    ):
        if value is not None:
            limits[key] = value
    if limits:
        base["limits"] = limits
    if env:
        base["env"] = {**base.get("env", {}), **dict(parse_env(e) for e in env)}
    if workdir:
        base["workdir"] = workdir
    if files:
        base["files"] = [*base.get("files", []), *(parse_file(f) for f in files)]
    if artifacts:
        base["artifacts"] = [*base.get("artifacts", []), *artifacts]
    if "command" not in base and "script" not in base:
        raise SpecError(
            "nothing to run: give a command after '--' or a spec with 'command' or 'script'",
            code="spec.invalid_command",
        )
    return parse_job_spec(base)


def _stream_to_terminal(stream: Stream, data: bytes) -> None:
    target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    target.write(data)
    target.flush()


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def describe(result: JobResult) -> str | None:
    if result.status is JobStatus.COMPLETED and result.error is None:
        return None
    code = result.error.code if result.error else result.status.value
    message = result.error.message if result.error else ""
    return f"orchestrator: {result.status.value} [{code}]: {message}"


def run(
    command: Annotated[list[str] | None, typer.Argument(help="Program and arguments, after '--'.")] = None,
    provider: Annotated[str | None, typer.Option(help="Provider name (default: the host's default).")] = None,
    map_: Annotated[list[str], typer.Option("--map", help="SRC:DST[:ro|:rw] (read-only by default).")] = [],  # noqa: B006
    timeout: Annotated[float | None, typer.Option(help="Wall-clock limit, seconds.")] = None,
    cpu_time: Annotated[float | None, typer.Option("--cpu-time", help="CPU time limit, seconds.")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU share, in CPUs.")] = None,
    memory: Annotated[int | None, typer.Option(help="Memory limit, MB.")] = None,
    pids: Annotated[int | None, typer.Option(help="Process limit.")] = None,
    output_limit: Annotated[int | None, typer.Option("--output-limit", help="Bytes kept per stream.")] = None,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE (repeatable).")] = [],  # noqa: B006
    workdir: Annotated[str | None, typer.Option(help="Working directory in the sandbox.")] = None,
    file: Annotated[list[str], typer.Option("--file", help="GUEST_PATH=HOST_FILE (repeatable).")] = [],  # noqa: B006
    artifacts: Annotated[list[str], typer.Option("--artifacts", help="Glob collected from the workspace.")] = [],  # noqa: B006
    output: Annotated[Path | None, typer.Option("--output", help="Directory for collected artifacts.")] = None,
    spec: Annotated[Path | None, typer.Option("--spec", help="A full job spec (JSON).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result document instead of the streams.")] = False,
) -> None:
    settings = load_settings()
    try:
        job = build_spec(
            list(command or []),
            spec_file=spec,
            provider=provider,
            maps=map_,
            timeout=timeout,
            cpu_time=cpu_time,
            cpus=cpus,
            memory=memory,
            pids=pids,
            output_limit=output_limit,
            env=env,
            workdir=workdir,
            files=file,
            artifacts=artifacts,
        )
    except OrchestratorError as exc:
        fail(exc, as_json=as_json)
    engine = local_engine(settings, job.provider)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
    options = RunOptions(listeners=[] if as_json else [_stream_to_terminal], artifacts_dir=output)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = engine.run(job, options)
    except KeyboardInterrupt:
        print("orchestrator: interrupted; the sandbox was destroyed", file=sys.stderr)
        raise typer.Exit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    note = describe(result)
    if note:
        print(note, file=sys.stderr)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        for artifact in result.artifacts:
            print(f"orchestrator: artifact {artifact.path} ({artifact.size} bytes)", file=sys.stderr)
    raise typer.Exit(result_exit_code(result))
