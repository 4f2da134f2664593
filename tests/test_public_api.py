"""The package's public names are exactly what ``__all__`` says, and they work from the top level."""

from __future__ import annotations

import orchestrator
from orchestrator import Engine, Settings, parse_job_spec


def test_all_lists_every_public_name() -> None:
    public = sorted(
        (
            name
            for name in vars(orchestrator)
            if not name.startswith("_") and not isinstance(getattr(orchestrator, name), type(orchestrator))
        ),
        key=str.casefold,
    )
    assert sorted(orchestrator.__all__, key=str.casefold) == public


def test_top_level_job(settings: Settings) -> None:
    result = Engine(settings).run(parse_job_spec({"command": ["echo", "ok"]}))
    assert result.stdout == "ok\n"
