"""A cancellation token that can be waited on, selected on, or subscribed to."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable


class CancelToken:
    """Set once. ``fileno()`` becomes readable when it is, so I/O loops wake at once; ``on_cancel``
    calls back instead. The descriptor is made on first use: most tokens never need one."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._read = self._write = -1
        self._callbacks: list[Callable[[], None]] = []
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            write, callbacks, self._callbacks = self._write, self._callbacks, []
        if write >= 0:
            with contextlib.suppress(OSError):
                os.write(write, b"x")
        for callback in callbacks:
            callback()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def fileno(self) -> int:
        with self._lock:
            if self._read < 0:
                self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                if self._event.is_set():
                    os.write(self._write, b"x")
            return self._read

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from the cancelling thread) when cancelled, at once if it already is;
        returns a function that unsubscribes it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._unsubscribe(callback)
        callback()
        return lambda: None

    def _unsubscribe(self, callback: Callable[[], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def close(self) -> None:
        """Idempotent: a descriptor number is closed once, never again after reuse by another thread."""
        with self._lock:
            fds, self._read, self._write = (self._read, self._write), -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __del__(self) -> None:
        self.close()
