"""Fixtures for the Hyper-V provider tests (no Windows needed)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


import os  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ORCH_"):
            monkeypatch.delenv(key)
