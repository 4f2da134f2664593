"""Helpers for the ``orchestrator up`` tests: the CLI as a real process on a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from orchestrator.settings import Settings
from tests.conftest import orchestrator_env

PROMPT = r"\(sandbox\) [^\r\n]*\$ "
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    return orchestrator_env(settings, TERM="xterm", PYTHONPATH=ROOT, **extra)


def cli(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=cli_env(settings),
        timeout=timeout,
        cwd=ROOT,
    )


def spawn_up(settings: Settings, *args: str, rows: int = 24, cols: int = 80, **env: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "orchestrator", "up", *args],
        env=cli_env(settings, **env),
        cwd=ROOT,
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
        dimensions=(rows, cols),
    )
    return child


def finish(child: pexpect.spawn, timeout: float = 30) -> tuple[int | None, int | None]:
    """Wait for ``up`` to end; (exit status, signal)."""
    child.expect(pexpect.EOF, timeout=timeout)
    child.close()
    return child.exitstatus, child.signalstatus


def local_sessions(settings: Settings) -> list[dict[str, Any]]:
    proc = cli(settings, "sessions", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    sessions: list[dict[str, Any]] = json.loads(proc.stdout)
    return sessions


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def up_children() -> Iterator[list[pexpect.spawn]]:
    """Every spawned ``up``; killed at the end if a test failed halfway."""
    children: list[pexpect.spawn] = []
    yield children
    for child in children:
        if child.isalive():
            child.terminate(force=True)
