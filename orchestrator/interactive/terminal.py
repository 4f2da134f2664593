"""The user's terminal: raw mode, window size, and the relay loop to a session.

The relay is the only code that touches both the user's terminal and the
session. It copies keystrokes to the session unchanged (raw mode: Ctrl-C,
Ctrl-Z and Ctrl-D are bytes for the session's own line discipline, not
signals for us) and the session's output back, forwards window-size changes,
and ends on the session's end, a leaving signal (SIGHUP, SIGTERM) or the
deadline, whichever comes first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import signal
import struct
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

_CHUNK = 65536
LEAVING_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

EndReason = Literal["exited", "signal", "timeout", "hangup"]


def get_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on ``fd``, or None when it is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """The terminal ``up`` runs on (or plain pipes, when it runs on none)."""

    def __init__(self, stdin_fd: int | None = None, stdout_fd: int | None = None, stderr_fd: int | None = None):
        self.stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
        self.stdout_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
        self.stderr_fd = sys.stderr.fileno() if stderr_fd is None else stderr_fd
        self.is_tty = os.isatty(self.stdin_fd)
        self._saved: list[Any] | None = None

    def size(self) -> tuple[int, int]:
        return get_size(self.stdin_fd) or get_size(self.stdout_fd) or (24, 80)

    @contextlib.contextmanager
    def raw(self) -> Iterator[None]:
        """Raw mode for the duration; the previous mode is restored on every exit path."""
        if not self.is_tty:
            yield
            return
        self._saved = termios.tcgetattr(self.stdin_fd)
        try:
            tty.setraw(self.stdin_fd, termios.TCSANOW)
            yield
        finally:
            self.restore()

    def restore(self) -> None:
        if self._saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.stdin_fd, termios.TCSAFLUSH, self._saved)
            self._saved = None

    def write(self, data: bytes) -> None:
        """Write everything; raises OSError when the terminal is gone (hangup)."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.stdout_fd, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            view = view[written:]

    def notice(self, text: str) -> None:
        """A message from ``up`` itself, on stderr; raw mode needs explicit carriage returns.

        Never raises: after a hangup there is nobody left to read it.
        """
        data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(self.stderr_fd, data) :]


@dataclass
class RelayEnd:
    reason: EndReason
    signum: int | None = None


class SignalTrap:
    """Turns SIGWINCH and the leaving signals into readable events for a select loop."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGWINCH, *LEAVING_SIGNALS)):
        self.signals = signals
        self.pending: list[int] = []
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1

    def __enter__(self) -> SignalTrap:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)
        with contextlib.suppress(OSError):
            os.write(self._write, b"s")

    def fileno(self) -> int:
        return self._read

    def drain(self) -> list[int]:
        with contextlib.suppress(OSError):
            os.read(self._read, 4096)
        taken, self.pending = self.pending, []
        return taken

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def relay(
    terminal: Terminal,
    trap: SignalTrap,
    *,
    output_fd: int,
    send_input: Callable[[bytes], None],
    on_resize: Callable[[int, int], None],
    deadline: float,
    on_input_eof: Callable[[], None] | None = None,
) -> RelayEnd:
    """Copy bytes both ways until the session ends, a leaving signal arrives or the deadline passes.

    ``output_fd`` reads the session's output; EOF (or EIO, for a pty master whose
    other side is closed) means the session ended.
    """
    sel = selectors.DefaultSelector()
    sel.register(output_fd, selectors.EVENT_READ, "output")
    sel.register(trap.fileno(), selectors.EVENT_READ, "signal")
    stdin_open = True
    with contextlib.suppress(ValueError, OSError):
        sel.register(terminal.stdin_fd, selectors.EVENT_READ, "input")
    try:
        while True:
            for signum in trap.drain() if trap.pending else []:
                if signum == signal.SIGWINCH:
                    on_resize(*terminal.size())
                else:
                    return RelayEnd("signal", signum)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return RelayEnd("timeout")
            for key, _ in sel.select(timeout=min(remaining, 1.0)):
                if key.data == "signal":
                    continue  # handled at the top of the loop
                if key.data == "output":
                    try:
                        data = os.read(output_fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        if exc.errno != errno.EIO:
                            raise
                        data = b""
                    if not data:
                        return RelayEnd("exited")
                    try:
                        terminal.write(data)
                    except OSError:
                        return RelayEnd("hangup", signal.SIGHUP)
                elif key.data == "input" and stdin_open:
                    try:
                        data = os.read(terminal.stdin_fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        send_input(data)
                        continue
                    stdin_open = False
                    sel.unregister(terminal.stdin_fd)
                    if terminal.is_tty:
                        return RelayEnd("hangup", signal.SIGHUP)
                    if on_input_eof is not None:
                        on_input_eof()
    finally:
        sel.close()
