"""A cancellation token that can be waited on with select()."""

from __future__ import annotations

import contextlib
import os
import threading


class CancelToken:
    """Set once; ``fileno()`` becomes readable when it is, so I/O loops wake at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        if self._event.is_set():
            return
        self.reason = reason
        self._event.set()
        with contextlib.suppress(OSError):
            if self._write >= 0:
                os.write(self._write, b"x")

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def fileno(self) -> int:
        return self._read

    def close(self) -> None:
        """Idempotent: a descriptor number is closed once, never again after reuse by another thread."""
        fds, self._read, self._write = (self._read, self._write), -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __del__(self) -> None:
        self.close()
