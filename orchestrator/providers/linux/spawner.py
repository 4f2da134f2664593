"""The control plane's side of the fork server (``forkserver.py``), and the processes it starts.

One fork server per control-plane process (``FORK_SERVER``), started on first
use and again if it dies. A request and its reply travel on one socket, under
one lock, read by the requesting thread itself; exit statuses arrive on a
second socket, read by a thread of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from orchestrator.errors import SandboxCreateError

SERVER_SOURCE = Path(__file__).with_name("forkserver.py")
_MAX_MESSAGE = 4 * 1024 * 1024
_REPLY_TIMEOUT_S = 30.0  # a spawn answers in milliseconds; a server this late is stuck


@dataclass
class SpawnRequest:
    argv: list[str]
    fds: list[int]  # become the child's 0, 1, 2, 3...
    join: list[str]
    rlimits: list[tuple[int, tuple[int, int]]]
    uid: int | None
    tty: bool = False

    def encode(self) -> bytes:
        return json.dumps(
            {
                "argv": self.argv,
                "join": self.join,
                "rlimits": [[kind, soft, hard] for kind, (soft, hard) in self.rlimits],
                "uid": self.uid,
                "tty": self.tty,
            }
        ).encode()


class ForkServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # one request at a time; also guards (re)starting
        self._state = threading.Condition()  # guards the exit statuses
        self._requests: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._exits: dict[int, int] = {}
        self._live: set[int] = set()

    def forget(self) -> None:
        """In a forked child: the parent's server, sockets and locks are not this process's."""
        self.__init__()  # type: ignore[misc]

    def spawn(self, request: SpawnRequest) -> tuple[int, int]:
        """Start a process; returns its pid and a pidfd for it. Raises SandboxCreateError."""
        message = request.encode()
        if len(message) > _MAX_MESSAGE:
            raise SandboxCreateError("the sandbox's command line is too large")
        with self._lock:
            for _ in range(2):
                sock = self._running()
                try:
                    socket.send_fds(sock, [message], request.fds)
                    data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
                except OSError:  # a timeout too: a server that stopped answering is replaced
                    data, fds = b"", []
                if data:
                    break
                # Gone or stuck (nothing it started outlives it): start another and ask again, once.
                self._discard(sock)
            else:
                raise SandboxCreateError("cannot start bubblewrap: the fork server keeps exiting")
            reply = _decode(data)
            if isinstance(reply.get("pid"), int) and fds:
                pid = int(reply["pid"])
                with self._state:
                    if pid not in self._exits:  # it may have ended already
                        self._live.add(pid)
                return pid, fds[0]
        for fd in fds:
            os.close(fd)
        raise SandboxCreateError(f"cannot start bubblewrap: {reply.get('error', 'the fork server failed')}")

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The exit code of a process this server started (negative: a signal), or None at timeout."""
        with self._state:
            if not self._state.wait_for(lambda: pid in self._exits, timeout):
                return None
            return self._exits.pop(pid)

    def close(self) -> None:
        """Stop the server (at exit); anything it started dies with it."""
        with self._lock:
            if self._requests is not None:
                self._requests.close()
                self._requests = None
            if self._process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=5)

    def _discard(self, sock: socket.socket) -> None:
        self._requests = None
        sock.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _running(self) -> socket.socket:
        if self._requests is not None:
            return self._requests
        requests, their_requests = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        events, their_events = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        theirs = (their_requests.fileno(), their_events.fileno())
        try:
            requests.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _MAX_MESSAGE)
            requests.settimeout(_REPLY_TIMEOUT_S)
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SERVER_SOURCE), *map(str, theirs)],
                pass_fds=theirs,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={},
                start_new_session=True,  # a terminal's ^C is for the control plane
            )
        except OSError as exc:
            requests.close()
            events.close()
            raise SandboxCreateError(f"cannot start the fork server: {exc}") from None
        finally:
            their_requests.close()
            their_events.close()
        self._requests = requests
        threading.Thread(target=self._read_events, args=(events,), name="forkserver-events", daemon=True).start()
        return requests

    def _read_events(self, events: socket.socket) -> None:
        while True:
            try:
                data = events.recv(65536)
            except OSError:
                data = b""
            message = _decode(data)
            with self._state:
                if not data:
                    # The server died: its children died with it, and their sandboxes with them.
                    for pid in self._live:
                        self._exits[pid] = -signal.SIGKILL
                    self._live.clear()
                    self._state.notify_all()
                    events.close()
                    return
                if "exited" in message:
                    pid = int(message["exited"])
                    self._live.discard(pid)
                    self._exits[pid] = int(message.get("code", -signal.SIGKILL))
                    self._state.notify_all()


def _decode(data: bytes) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        parsed = json.loads(data) if data else {}
        if isinstance(parsed, dict):
            return parsed
    return {}


class SandboxProcess:
    """A process the fork server started: what the rest of the provider needs of ``Popen``."""

    def __init__(
        self,
        server: ForkServer,
        pid: int,
        pidfd: int,
        stdin: IO[bytes] | None,
        stdout: IO[bytes] | None,
        stderr: IO[bytes] | None,
    ):
        self.server = server
        self.pid = pid
        self.pidfd = pidfd  # readable once the process has exited
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self._lock = threading.Lock()  # the pidfd is closed once, never used after

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.server.wait(self.pid, timeout)
            if code is None:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            with self._lock:
                if self.returncode is None:
                    self.returncode = code
                    os.close(self.pidfd)
        return self.returncode

    def poll(self) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.wait(0)
        return None

    def kill(self) -> None:
        """SIGKILL through the pidfd: never another process that reused the pid."""
        with self._lock:
            if self.returncode is None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)


FORK_SERVER = ForkServer()
atexit.register(FORK_SERVER.close)
os.register_at_fork(after_in_child=FORK_SERVER.forget)
