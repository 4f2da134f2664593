from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.settings import Settings
from tests.conftest import orchestrator_env


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def batch_env(settings: Settings) -> dict[str, str]:
    return orchestrator_env(settings)


def batch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", "batch", *args]


def run_batch_cli(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batch_argv(*args), capture_output=True, text=True, env=batch_env(settings), timeout=timeout)


PROBLEM = {
    "task_id": "T/0",
    "prompt": 'def add(a, b):\n    """Add."""\n',
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}
CORRECT = "    return a + b\n"
WRONG = "    return a - b\n"
CRASH = "    raise ValueError('boom')\n"
LOOP = "    while True:\n        pass\n"
