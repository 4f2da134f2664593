"""Audit events as JSON lines: one line per lifecycle transition."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from orchestrator.lifecycle import LifecycleEvent


class AuditSink(Protocol):
    def emit(self, event: LifecycleEvent) -> None: ...


class NullAuditSink:
    def emit(self, event: LifecycleEvent) -> None:
        return None


class JsonlAuditSink:
    """Appends each event to a file; safe across threads and (with O_APPEND) processes."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def emit(self, event: LifecycleEvent) -> None:
        line = (json.dumps(event.to_dict(), separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


class MemoryAuditSink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: LifecycleEvent) -> None:
        self.events.append(event.to_dict())


class FanoutAuditSink:
    def __init__(self, *sinks: AuditSink):
        self.sinks = sinks

    def emit(self, event: LifecycleEvent) -> None:
        for sink in self.sinks:
            sink.emit(event)
