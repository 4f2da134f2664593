"""Fixtures for the Windows transport and wsb provider tests."""

from __future__ import annotations

import sys
from pathlib import Path

# ``tests.support`` must be importable whether or not ``tests/`` is a package.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
