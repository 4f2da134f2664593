"""Running one sandboxed program to its end: pump its streams, enforce the deadline.

Output is drained continuously into capped buffers, so a job that writes
without end never blocks and never fills memory. The wall deadline and the
cancel token are watched in the same ``select`` loop as the streams.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture

if TYPE_CHECKING:
    from orchestrator.providers.linux.spawn import Started
    from orchestrator.providers.linux.spawner import SandboxProcess

_CHUNK = 65536


@dataclass
class RawOutcome:
    returncode: int
    exit_code: int | None
    child_pid: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float
    limit_hit: str | None = None


def parse_status(data: bytes) -> dict[str, int]:
    found: dict[str, int] = {}
    decoder = json.JSONDecoder()
    text = data.decode("utf-8", errors="replace")
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        if isinstance(obj, dict):
            for key in ("child-pid", "exit-code"):
                if isinstance(obj.get(key), int):
                    found[key] = obj[key]
    return found


def run_process(
    started: Started,
    *,
    stdin: bytes | None,
    output: OutputCapture,
    deadline: float,
    cancel: CancelToken,
    kill: Callable[[SandboxProcess], None],
    watchdog: Callable[[], str | None] | None = None,
    watchdog_interval: float = 0.25,
) -> RawOutcome:
    """Pump a started sandbox's streams until it ends, killing it at the deadline or on cancel."""
    begun = time.monotonic()
    proc, status_fd, status = started.proc, started.status_fd, started.status
    pidfd = os.dup(proc.pidfd)
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, "stream")
    os.set_blocking(status_fd, False)
    sel.register(status_fd, selectors.EVENT_READ, "status")
    sel.register(pidfd, selectors.EVENT_READ, "exit")
    sel.register(cancel.fileno(), selectors.EVENT_READ, "cancel")
    pending_stdin = memoryview(stdin) if stdin else None
    if proc.stdin is not None:
        if pending_stdin:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
    timed_out = cancelled = exited = False
    drain_until: float | None = None
    open_streams = set(streams)
    limit_hit: str | None = None
    next_watch = time.monotonic() + watchdog_interval
    try:
        while open_streams or not exited:
            now = time.monotonic()
            if not timed_out and not cancelled and now >= deadline:
                timed_out = True
                kill(proc)
            if watchdog is not None and not exited and limit_hit is None and now >= next_watch:
                next_watch = now + watchdog_interval
                limit_hit = watchdog()
                if limit_hit is not None:
                    kill(proc)
            if exited and drain_until is None:
                drain_until = now + 2.0
            if drain_until is not None and now >= drain_until:
                break
            limit = deadline if not (timed_out or cancelled) else now + 1.0
            if watchdog is not None and not exited:
                limit = min(limit, next_watch)
            if drain_until is not None:
                limit = min(limit, drain_until)
            for key, _ in sel.select(timeout=max(0.0, limit - now)):
                kind = key.data
                if kind == "stream":
                    try:
                        data = os.read(key.fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if data:
                        output.write(streams[key.fd], data)  # type: ignore[arg-type]
                    else:
                        sel.unregister(key.fd)
                        open_streams.discard(key.fd)
                elif kind == "status":
                    try:
                        data = os.read(key.fd, 4096)
                    except BlockingIOError:
                        continue
                    if data:
                        status += data
                    else:
                        sel.unregister(key.fd)
                elif kind == "exit":
                    sel.unregister(key.fd)
                    exited = True
                elif kind == "cancel":
                    sel.unregister(key.fd)
                    if not timed_out:
                        cancelled = True
                        kill(proc)
                elif kind == "stdin" and pending_stdin is not None and proc.stdin is not None:
                    try:
                        written = os.write(key.fd, pending_stdin[:_CHUNK])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        written = len(pending_stdin)
                    pending_stdin = pending_stdin[written:]
                    if not pending_stdin:
                        sel.unregister(key.fd)
                        proc.stdin.close()
    except BaseException:
        kill(proc)
        raise
    finally:
        sel.close()
        os.close(pidfd)
        returncode = proc.wait()
        with contextlib.suppress(OSError):
            while chunk := os.read(status_fd, 4096):
                status += chunk
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        os.close(status_fd)
        parsed = parse_status(bytes(status))
    return RawOutcome(
        returncode=returncode,
        exit_code=parsed.get("exit-code"),
        child_pid=parsed.get("child-pid"),
        timed_out=timed_out,
        cancelled=cancelled,
        duration_s=time.monotonic() - begun,
        limit_hit=limit_hit,
    )
