"""``orchestrator render``: what a provider would launch, written to a folder, nothing run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import fail, load_settings
from orchestrator.engine import new_job_id
from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.providers import create_provider
from orchestrator.spec import load_job_spec


def render(
    provider: Annotated[str, typer.Option(help="Provider whose launch files to render (wsb, hyperv).")],
    spec: Annotated[Path, typer.Option(help="Job spec (JSON).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where to write the files.")],
) -> None:
    settings = load_settings()
    try:
        job = load_job_spec(spec)
        instance = create_provider(provider, settings)
        renderer = getattr(instance, "render", None)
        if not callable(renderer):
            raise SpecError(f"provider {provider!r} has nothing to render", code="provider.no_render")
        files: dict[str, str] = renderer(new_job_id(), job)
    except OrchestratorError as exc:
        fail(exc, as_json=False)
    output_dir.mkdir(parents=True, exist_ok=True)
    root = output_dir.resolve()
    for name, content in sorted(files.items()):
        target = (root / name).resolve()
        if root not in target.parents:
            fail(SpecError(f"refusing to write outside {root}: {name}", code="spec.invalid_path"), as_json=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        typer.echo(str(target))
