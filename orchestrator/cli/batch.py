"""``orchestrator batch``: evaluate many generated programs, one disposable sandbox each."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress

from orchestrator.batch.formats import BatchInputError, Format, load_samples
from orchestrator.batch.runner import BatchOptions, Executor, FatalBatchError, LocalExecutor, run_batch
from orchestrator.batch.summary import (
    DEFAULT_KS,
    ResultWriter,
    finished_ids,
    read_results,
    render_text,
    summarize,
    summary_path,
    write_summary,
)
from orchestrator.batch.verdicts import Verdict
from orchestrator.cancel import CancelToken
from orchestrator.cli.common import fail, load_settings, local_engine
from orchestrator.errors import OrchestratorError

EXIT_INFRA_LEFT = 3
EXIT_INTERRUPTED = 130


def parse_ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise BatchInputError(f"--k {value!r}: expected integers", code="batch.invalid_option") from None
    if not ks or any(k < 1 for k in ks):
        raise BatchInputError(f"--k {value!r}: every k must be >= 1", code="batch.invalid_option")
    return ks


class _Interrupts:
    """SIGINT/SIGTERM/SIGHUP raise KeyboardInterrupt once; later ones are ignored so teardown completes."""

    def __init__(self) -> None:
        self.seen = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if not self.seen:
            self.seen = True
            raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _progress(quiet: bool, total: int) -> Progress | None:
    if quiet:
        return None  # and rich is never imported: a batch's start-up time counts too
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    progress = Progress(
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f}/s"),
        TextColumn("pass {task.fields[pass_rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    progress.add_task("batch", total=total, rate=0.0, pass_rate="-")
    return progress


def batch(
    input_path: Annotated[Path, typer.Argument(help="JSON lines (.jsonl or .jsonl.gz).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Results file (JSON lines).")],
    fmt: Annotated[Format, typer.Option("--format", help="Input format.")] = Format.JOBS,
    problems: Annotated[
        Path | None, typer.Option(help="Problems file (task_id, prompt, test, entry_point / test_list).")
    ] = None,
    parallel: Annotated[int, typer.Option(min=0, max=1024, help="Samples at once (0: 2 x CPUs).")] = 0,
    timeout: Annotated[float | None, typer.Option(help="Wall-clock limit per sample, seconds.")] = None,
    cpu_time: Annotated[float | None, typer.Option("--cpu-time", help="CPU-time limit per sample, seconds.")] = None,
    memory: Annotated[int | None, typer.Option(help="Memory limit per sample, MB.")] = None,
    provider: Annotated[str | None, typer.Option(help="Provider name (local runs).")] = None,
    server: Annotated[str | None, typer.Option(help="Send the work to this control plane.")] = None,
    token: Annotated[str | None, typer.Option(help="API token for --server (default: $ORCH_TOKEN).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip samples already judged in the output file.")] = False,
    k: Annotated[str, typer.Option("--k", help="pass@k values.")] = ",".join(map(str, DEFAULT_KS)),
    retries: Annotated[int, typer.Option(min=0, max=20, help="Retries of a sample after an infra error.")] = 2,
    python: Annotated[str, typer.Option(help="Interpreter for humaneval/mbpp check programs.")] = "python3",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (for logs).")] = False,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--cold",
            help="linux: start Python check programs from a warm interpreter, in fresh namespaces each "
            "(--cold: a new bubblewrap sandbox and interpreter per sample).",
        ),
    ] = True,
) -> None:
    if provider and server:
        fail(BatchInputError("give --provider or --server, not both", code="batch.invalid_option"), as_json=False)
    settings = load_settings()
    try:
        ks = parse_ks(k)
        samples = load_samples(input_path, fmt, problems)
    except OrchestratorError as exc:
        fail(exc, as_json=False)
    previous = read_results(output) if resume else []
    done = finished_ids(previous)
    todo = [s for s in samples if s.id not in done]
    limits = {"timeout_s": timeout, "cpu_s": cpu_time, "memory_mb": memory}
    options = BatchOptions(
        parallel=parallel or 2 * (os.cpu_count() or 1),
        retries=retries,
        limits={key: value for key, value in limits.items() if value is not None},
        provider=provider,
        python=[python],
    )
    executor: Executor
    if server:
        from orchestrator.batch.remote import RemoteExecutor

        executor = RemoteExecutor(server, token or os.environ.get("ORCH_TOKEN"))
    else:
        try:
            executor = LocalExecutor(local_engine(settings, provider), provider, warm=warm)
        except OrchestratorError as exc:
            fail(exc, as_json=False)
    if not quiet:
        print(f"orchestrator: {len(todo)} to run, {len(samples) - len(todo)} already judged", file=sys.stderr)

    writer = ResultWriter(output, append=resume)
    records = list(previous)
    progress = _progress(quiet, len(todo))
    counts = {"passed": 0, "judged": 0}
    started = time.monotonic()

    def on_record(record: dict[str, Any]) -> None:
        writer.write(record)
        records.append(record)
        if record["verdict"] != Verdict.INFRA_ERROR.value:
            counts["judged"] += 1
            counts["passed"] += record["verdict"] == Verdict.PASSED.value
        if progress is not None:
            elapsed = max(time.monotonic() - started, 1e-6)
            rate = f"{counts['passed'] / counts['judged']:.1%}" if counts["judged"] else "-"
            progress.update(progress.task_ids[0], advance=1, rate=len(records) / elapsed, pass_rate=rate)

    interrupted = False
    error: OrchestratorError | None = None
    try:
        with _Interrupts():
            if progress is not None:
                progress.start()
            try:
                run_batch(todo, executor, options, on_record=on_record, cancel=CancelToken())
            except KeyboardInterrupt:
                interrupted = True
            except (FatalBatchError, OrchestratorError) as exc:
                error = exc
            finally:
                if progress is not None:
                    progress.stop()
                writer.close()
    finally:
        close = getattr(executor, "close", None)
        if callable(close):
            close()
    ran = len(records) - len(previous)
    summary = summarize(
        records, ks=ks, elapsed_s=time.monotonic() - started, ran=ran, interrupted=interrupted or error is not None
    )
    write_summary(summary_path(output), summary)
    print(render_text(summary))
    if error is not None:
        fail(error, as_json=False)
    if interrupted:
        print(f"orchestrator: interrupted; {ran} results kept in {output}, sandboxes destroyed", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary["infra_errors"]:
        print(
            f"orchestrator: {summary['infra_errors']} samples ended in infra errors; rerun with --resume",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_INFRA_LEFT)
