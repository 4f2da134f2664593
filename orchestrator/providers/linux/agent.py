"""The session agent: runs inside a session's sandbox and starts commands on request.

This file is copied into the sandbox and run by the sandbox's own python3, so
it uses only the standard library and runs on any Python >= 3.8. It speaks
JSON lines on stdin/stdout with the host (``session.py``):

  host -> agent  {"op": "exec", "id", "argv", "env", "cwd", "stdin", "timeout"}
                 {"op": "pty", "id", "argv", "env", "cwd", "rows", "cols"}
                 {"op": "input", "id", "data"} {"op": "eof", "id"}
                 {"op": "resize", "id", "rows", "cols"} {"op": "kill", "id"}
  agent -> host  {"id", "event": "started" (pty only) | "stdout" | "stderr" | "exit" | "error", ...}

Everything the agent can do, the session's commands can do too: it holds no
privilege. It makes itself non-dumpable so commands cannot reach its pipes
through /proc.
"""

import base64
import ctypes
import errno
import fcntl
import json
import os
import selectors
import shutil
import signal
import struct
import sys
import termios
import time

SEL = selectors.DefaultSelector()
OUT = sys.stdout.buffer
PROCS = {}
DRAIN_S = 0.5


def send(obj):
    OUT.write((json.dumps(obj, separators=(",", ":")) + "\n").encode())
    OUT.flush()


def b64(data):
    return base64.b64encode(data).decode()


class Proc:
    def __init__(self, ident, pid, fds, stdin_fd, timeout, pty_fd=None):
        self.id = ident
        self.pid = pid
        self.fds = fds  # fd -> stream name
        self.stdin_fd = stdin_fd
        self.pty_fd = pty_fd
        self.deadline = time.monotonic() + timeout if timeout else None
        self.timed_out = False
        self.status = None
        self.exited_at = 0.0

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass


def _resolve(argv0, env):
    """The program execvpe would run, searched on the command's own PATH."""
    if "/" in argv0:
        return argv0
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
    return found


def _start_plain(argv, env, cwd, child_in, child_out, child_err):
    """posix_spawn: a vfork, not a copy of this interpreter (the agent is single-threaded, so
    changing its own directory around the call is safe)."""
    path = _resolve(argv[0], env)
    os.chdir(cwd)
    try:
        return os.posix_spawn(
            path,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, child_in, 0),
                (os.POSIX_SPAWN_DUP2, child_out, 1),
                (os.POSIX_SPAWN_DUP2, child_err, 2),
            ],
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGINT),
        )
    finally:
        os.chdir("/")


def _start_pty(argv, env, cwd, slave):
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            os.closerange(3, 65536)
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"agent: cannot run {argv[0]}: {exc.strerror}\n".encode())
            os._exit(127)
        os._exit(127)
    return pid


def _spawn(msg, use_pty):
    env = msg.get("env") or {}
    cwd = msg.get("cwd") or "/workspace"
    argv = msg["argv"]
    if use_pty:
        master, slave = os.openpty()
        _set_size(slave, msg.get("rows", 24), msg.get("cols", 80))
        parent_fds = {master: "stdout"}
        pid = _start_pty(argv, env, cwd, slave)
        os.close(slave)
        stdin_fd = master
    else:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        parent_fds = {out_r: "stdout", err_r: "stderr"}
        try:
            pid = _start_plain(argv, env, cwd, in_r, out_w, err_w)
        except OSError as exc:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            # As a command that could not be started always reported: on its stderr, exit 127.
            message = f"agent: cannot run {argv[0]}: {exc.strerror}\n".encode()
            send({"id": msg["id"], "event": "stderr", "data": b64(message)})
            send({"id": msg["id"], "event": "exit", "code": 127, "signal": None, "timed_out": False})
            return
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        stdin_fd = in_w
    proc = Proc(msg["id"], pid, parent_fds, stdin_fd, msg.get("timeout"), pty_fd=master if use_pty else None)
    for fd in parent_fds:
        os.set_blocking(fd, False)
        SEL.register(fd, selectors.EVENT_READ, ("out", proc))
    PROCS[proc.id] = proc
    if use_pty:
        send({"id": proc.id, "event": "started", "pid": pid})
    data = msg.get("stdin")
    if data is not None and not use_pty:
        _write_all(proc.stdin_fd, base64.b64decode(data))
        os.close(proc.stdin_fd)
        proc.stdin_fd = None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        except OSError:
            return
        view = view[written:]


def _set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))


def handle(msg):
    op = msg.get("op")
    proc = PROCS.get(msg.get("id"))
    if op in ("exec", "pty"):
        try:
            _spawn(msg, op == "pty")
        except Exception as exc:  # report, keep serving
            send({"id": msg.get("id"), "event": "error", "message": str(exc)})
    elif proc is None:
        return
    elif op == "input" and proc.stdin_fd is not None:
        _write_all(proc.stdin_fd, base64.b64decode(msg.get("data", "")))
    elif op == "eof" and proc.stdin_fd is not None and proc.pty_fd is None:
        os.close(proc.stdin_fd)
        proc.stdin_fd = None
    elif op == "resize" and proc.pty_fd is not None:
        _set_size(proc.pty_fd, msg.get("rows", 24), msg.get("cols", 80))
        try:
            os.killpg(proc.pid, signal.SIGWINCH)
        except OSError:
            pass
    elif op == "kill":
        proc.kill()


def reap():
    # The agent is pid 1 of the sandbox: orphans of every command end up here and are reaped too.
    by_pid = {p.pid: p for p in PROCS.values() if p.status is None}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not pid:
            break
        proc = by_pid.get(pid)
        if proc is not None:
            proc.status = status
            proc.exited_at = time.monotonic()
            proc.kill()  # the group: background children of a finished command go too
    for proc in list(PROCS.values()):
        if proc.status is not None and proc.fds and time.monotonic() - proc.exited_at > DRAIN_S:
            # A process that left the group still holds the pipes: stop reading, report the exit.
            for fd in list(proc.fds):
                SEL.unregister(fd)
                if fd != proc.pty_fd:
                    os.close(fd)
            proc.fds.clear()
        if proc.status is not None and not proc.fds:
            status = proc.status
            code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
            event = {"id": proc.id, "event": "exit", "timed_out": proc.timed_out}
            event.update({"code": 128 - code, "signal": -code} if code < 0 else {"code": code, "signal": None})
            send(event)
            if proc.stdin_fd is not None and proc.stdin_fd != proc.pty_fd:
                os.close(proc.stdin_fd)
            del PROCS[proc.id]


def main():
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    except Exception:
        pass
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    SEL.register(wake_r, selectors.EVENT_READ, ("wake", None))
    stdin = sys.stdin.buffer.raw.fileno()
    SEL.register(stdin, selectors.EVENT_READ, ("host", None))
    pending = b""
    send({"event": "ready", "pid": os.getpid()})
    while True:
        now = time.monotonic()
        timeouts = [p.deadline for p in PROCS.values() if p.deadline and p.status is None]
        timeouts += [p.exited_at + DRAIN_S for p in PROCS.values() if p.status is not None and p.fds]
        wait = max(0.0, min(timeouts) - now) if timeouts else None
        for key, _ in SEL.select(timeout=wait if wait is None else min(wait, 1.0)):
            kind, proc = key.data
            if kind == "host":
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    for p in PROCS.values():
                        p.kill()
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        handle(json.loads(line))
            elif kind == "wake":
                os.read(key.fd, 4096)
            elif kind == "out":
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    send({"id": proc.id, "event": proc.fds[key.fd], "data": b64(data)})
                else:
                    SEL.unregister(key.fd)
                    del proc.fds[key.fd]
                    if key.fd != proc.pty_fd:
                        os.close(key.fd)
        now = time.monotonic()
        for proc in PROCS.values():
            if proc.deadline and proc.status is None and now >= proc.deadline:
                proc.timed_out = True
                proc.kill()
        reap()


if __name__ == "__main__":
    main()
