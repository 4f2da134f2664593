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
    """Appends each event to a file as one ``write``; safe across threads and (O_APPEND) processes."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = -1

    def emit(self, event: LifecycleEvent) -> None:
        line = (json.dumps(event.to_dict(), separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __del__(self) -> None:
        self.close()


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
