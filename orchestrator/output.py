"""Bounded capture of a job's output streams."""

from __future__ import annotations

import threading
from typing import Literal, Protocol

Stream = Literal["stdout", "stderr"]


class OutputListener(Protocol):
    def __call__(self, stream: Stream, data: bytes) -> None: ...


class CappedBuffer:
    """Keeps the first ``limit`` bytes; counts and drops the rest without blocking the writer."""

    def __init__(self, limit: int):
        self.limit = limit
        self._chunks: list[bytes] = []
        self.kept = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - self.kept
        if room > 0:
            piece = data[:room]
            self._chunks.append(piece)
            self.kept += len(piece)

    @property
    def truncated(self) -> bool:
        return self.total > self.kept

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)

    def text(self) -> str:
        return self.getvalue().decode("utf-8", errors="replace")


class OutputCapture:
    """What a provider writes output into: capped buffers plus optional live listeners."""

    def __init__(self, limit: int, listeners: list[OutputListener] | None = None):
        self.stdout = CappedBuffer(limit)
        self.stderr = CappedBuffer(limit)
        self._listeners = list(listeners or [])
        self._lock = threading.Lock()

    def add_listener(self, listener: OutputListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: OutputListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def write(self, stream: Stream, data: bytes) -> None:
        buffer = self.stdout if stream == "stdout" else self.stderr
        with self._lock:
            before = buffer.kept
            buffer.feed(data)
            kept = data[: buffer.kept - before]
            listeners = list(self._listeners)
        if kept:
            for listener in listeners:
                listener(stream, kept)
