"""The sandbox fork server: a small single-threaded process that starts every sandbox.

The control plane is large and threaded, so between fork and exec it must run
no code of its own; this process can. For each request it forks a child that
joins the sandbox's cgroup, sets its rlimits, drops to its uid and execs
bubblewrap: no helper programs, no handshake. It reports each child's exit
status, and exits when the control plane's end of the socket closes; its
children die with it (parent-death signal), their sandboxes with them
(bubblewrap's ``--die-with-parent``).

Run as ``python3 -I -S forkserver.py REQUESTS EVENTS`` (two SOCK_SEQPACKET
descriptors); standard library only. One JSON document per message:

  REQUESTS  in:  {"argv", "join": [cgroup files], "rlimits": [[kind, soft, hard]], "uid", "tty"}
                 with the child's descriptors 0, 1, 2, 3... attached (SCM_RIGHTS)
            out: {"pid"} with the child's pidfd attached, or {"error"}
  EVENTS    out: {"exited": pid, "code"}   (code < 0: killed by that signal)

Between fork and exec the child runs only what it must: every page its Python
code touches there is copied.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import sys
import termios
from typing import Any, NoReturn

MAX_MESSAGE = 4 * 1024 * 1024
MAX_FDS = 16
PR_SET_PDEATHSIG = 1
LIBC = ctypes.CDLL(None, use_errno=True)


def _child(request: dict[str, Any], fds: list[int], error_fd: int, server_pid: int) -> NoReturn:
    """Between fork and exec; never returns."""
    try:
        os.setsid()
        count = len(fds)
        error_fd = fcntl.fcntl(error_fd, fcntl.F_DUPFD_CLOEXEC, count + MAX_FDS + 3)
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, count + 3) for fd in fds]
        for target, fd in enumerate(moved):
            os.dup2(fd, target)
        os.closerange(count, error_fd)
        os.closerange(error_fd + 1, 1 << 20)
        if request.get("tty"):
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        for path in request.get("join") or []:  # first, while still privileged
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, b"0")  # "0": this thread moves itself, without the global lock
            os.close(fd)
        for kind, soft, hard in request.get("rlimits") or []:
            resource.setrlimit(kind, (soft, hard))
        uid = request.get("uid")
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        # After the uid change, which clears it: if this server dies, bubblewrap dies, and its
        # sandbox with it (--die-with-parent).
        if LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != server_pid:
            raise RuntimeError("the fork server is gone")
        argv = request["argv"]
        os.execve(argv[0], argv, {})
    except BaseException as exc:  # noqa: BLE001 - reported to the server, then exit
        try:
            os.write(error_fd, f"{type(exc).__name__}: {exc}".encode()[:4000])
        finally:
            os._exit(127)


def _spawn(request: dict[str, Any], fds: list[int]) -> tuple[int, int, str]:
    error_read, error_write = os.pipe2(os.O_CLOEXEC)
    server_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(request, fds, error_write, server_pid)
    os.close(error_write)
    pidfd = os.pidfd_open(pid)
    failure = b""
    while chunk := os.read(error_read, 4096):  # EOF at exec: the write end is close-on-exec
        failure += chunk
    os.close(error_read)
    return pid, pidfd, failure.decode(errors="replace")


def _reap(events: socket.socket, spawned: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        if pid in spawned:
            spawned.discard(pid)
            message = {"exited": pid, "code": os.waitstatus_to_exitcode(status)}
            events.send(json.dumps(message).encode(), socket.MSG_NOSIGNAL)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    events = socket.socket(fileno=int(sys.argv[2]))
    # Children inherit ignored signals across exec (a handled one is reset by exec itself): start
    # every sandbox from the defaults, whatever Python (SIGPIPE, SIGXFSZ) or whoever started the
    # control plane (nohup: SIGHUP) ignores. glibc keeps its two internal signals to itself.
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    wake_read, wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    spawned: set[int] = set()
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_read:
                while True:
                    try:
                        os.read(wake_read, 4096)
                    except BlockingIOError:
                        break
                _reap(events, spawned)
                continue
            message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
            if not message:
                return  # the control plane is gone
            try:
                pid, pidfd, failure = _spawn(json.loads(message), fds)
            except Exception as exc:  # noqa: BLE001 - a bad request never ends the server
                sock.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(), socket.MSG_NOSIGNAL)
                continue
            finally:
                for received in fds:
                    os.close(received)
            if failure:
                os.close(pidfd)
                sock.send(json.dumps({"error": failure}).encode(), socket.MSG_NOSIGNAL)
                continue  # the child exited; it is reaped and not reported
            spawned.add(pid)
            socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [pidfd], socket.MSG_NOSIGNAL)
            os.close(pidfd)


if __name__ == "__main__":
    main()
