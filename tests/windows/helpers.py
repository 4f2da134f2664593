"""Shared builders for the wsb tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.providers.wsb import WsbProvider
from orchestrator.settings import Settings
from orchestrator.windows.replay import ReplayTransport
from orchestrator.windows.transport import PSResult

RECORDINGS = Path(__file__).resolve().parent.parent / "data" / "recordings"
SANDBOX_GUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def js(value: Any) -> PSResult:
    """A script result whose single output is ``value`` as a JSON string, as the scripts emit it."""
    return PSResult(output=[json.dumps(value)])


def settings(tmp_path: Path, **windows: Any) -> Settings:
    return Settings.model_validate(
        {"runtime_dir": str(tmp_path / "run"), "data_dir": str(tmp_path / "data"), "windows": windows}
    )


def provider(tmp_path: Path, replay: ReplayTransport, **windows: Any) -> WsbProvider:
    clock = FakeClock()
    return WsbProvider(settings(tmp_path, **windows), replay, clock=clock, poll_interval_s=0.0)


class FakeClock:
    """Advances ten seconds every time it is read, so deadlines pass without sleeping."""

    def __init__(self, step: float = 10.0):
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now
