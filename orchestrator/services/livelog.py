"""A running job's output, kept in memory so readers can follow it live.

Writers are provider threads; readers are SSE streams on an event loop. A
reader registers a wake-up callback and re-reads from its own offset, so a
slow reader never blocks the job and never misses a chunk. What is kept is
already capped by the job's ``output_bytes`` limit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from orchestrator.output import Stream

Chunk = tuple[Stream, bytes]


class LiveLog:
    def __init__(self) -> None:
        self._chunks: list[Chunk] = []
        self._closed = False
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def write(self, stream: Stream, data: bytes) -> None:
        with self._lock:
            self._chunks.append((stream, data))
            subscribers = list(self._subscribers)
        _notify(subscribers)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
        _notify(subscribers)

    def read_from(self, index: int) -> tuple[list[Chunk], bool]:
        with self._lock:
            return self._chunks[index:], self._closed

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(callback)


def _notify(subscribers: list[Callable[[], None]]) -> None:
    for callback in subscribers:
        with contextlib.suppress(Exception):
            callback()
