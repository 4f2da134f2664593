"""Starting a program in a sandbox: the one way every caller (job, session, terminal) does it.

- As root, bubblewrap is started through ``setpriv`` as the sandbox's own
  unprivileged uid; the job's rlimits are set by ``prlimit`` inside the
  sandbox, just before the job's program is executed. No Python runs between
  fork and exec (no ``preexec_fn``), so even a large, threaded control plane
  spawns sandboxes with ``vfork``. (Where either tool is missing, the same
  work is done in a ``preexec_fn`` instead.)
- bubblewrap is started with ``--block-fd``: it builds the sandbox, reports
  the job's pid and waits; the pid joins the job's cgroup, then is released.
  Nothing of the job runs outside its cgroup, and the kernel objects
  bubblewrap allocates while building the sandbox are not charged to the
  job's memory cgroup (on cgroup v1 that charging costs more than the rest of
  a spawn).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import select
import signal
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.errors import SandboxCreateError
from orchestrator.providers.linux import bwrap, seccomp
from orchestrator.providers.linux.process import parse_status

if TYPE_CHECKING:
    from orchestrator.providers.linux.provider import LinuxProvider, LinuxSandbox

_STARTUP_TIMEOUT_S = 30.0
StdStream = int | IO[Any] | None


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    status_fd: int  # bubblewrap writes the job's exit code here at the end
    status: bytearray = field(default_factory=bytearray)
    child_pid: int | None = None  # the job: pid 1 of its namespace


def seccomp_pipe() -> int:
    """A pipe holding the compiled filter; bubblewrap reads it to EOF and closes it."""
    program = seccomp.compile_filter()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        os.write(write_fd, program)
    finally:
        os.close(write_fd)
    return read_fd


SETPRIV = "/usr/bin/setpriv"
PRLIMIT = "/usr/bin/prlimit"
_PRLIMIT_NAMES = {
    resource.RLIMIT_CPU: "cpu",
    resource.RLIMIT_NPROC: "nproc",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_CORE: "core",
    resource.RLIMIT_NOFILE: "nofile",
    resource.RLIMIT_AS: "as",
}


def with_rlimits(command: list[str], rlimits: list[tuple[int, tuple[int, int]]]) -> list[str]:
    """``command`` run under ``prlimit`` (the sandbox's own copy), which lowers its limits and execs it."""
    options = [f"--{_PRLIMIT_NAMES[kind]}={soft}:{hard}" for kind, (soft, hard) in rlimits]
    return [PRLIMIT, *options, "--", *command]


def as_user(argv: list[str], uid: int) -> list[str]:
    return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]


def _child_setup(
    rlimits: list[tuple[int, tuple[int, int]]], uid: int | None, controlling_tty: bool
) -> Callable[[], None] | None:
    """The fallback ``preexec_fn``: only what the tools above could not do from outside."""
    if not rlimits and uid is None and not controlling_tty:
        return None

    def setup() -> None:
        if controlling_tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        for kind, value in rlimits:
            resource.setrlimit(kind, value)
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)

    return setup


def _await_child_pid(started: Started, timeout: float) -> None:
    """Read bubblewrap's status until it names the job's pid (or gives up: setup failed)."""
    deadline = time.monotonic() + timeout
    while started.child_pid is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxCreateError("bubblewrap did not report the sandbox in time")
        ready, _, _ = select.select([started.status_fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(started.status_fd, 4096)
        if not chunk:
            return
        started.status += chunk
        started.child_pid = parse_status(bytes(started.status)).get("child-pid")


def start(
    provider: LinuxProvider,
    sandbox: LinuxSandbox,
    command: list[str],
    env: dict[str, str],
    workdir: str,
    *,
    stdin: StdStream,
    stdout: StdStream,
    stderr: StdStream,
    new_session: bool = True,
    controlling_tty: bool = False,
) -> Started:
    bwrap_path = provider.prepare()
    rlimits = provider.rlimits(sandbox)
    in_sandbox_prlimit = ((provider.config.rootfs or Path("/")) / PRLIMIT.lstrip("/")).exists()
    if in_sandbox_prlimit:
        command, rlimits = with_rlimits(command, rlimits), []
    drop_to: int | None = sandbox.uid if provider.is_root else None
    seccomp_fd = seccomp_pipe()
    status_read, status_write = os.pipe2(os.O_CLOEXEC)
    block_read, block_write = os.pipe2(os.O_CLOEXEC)
    layout = provider.layout(sandbox, env, workdir, new_session=new_session)
    argv = bwrap.build_argv(
        bwrap_path, layout, command, seccomp_fd=seccomp_fd, status_fd=status_write, block_fd=block_read
    )
    if drop_to is not None and os.access(SETPRIV, os.X_OK):
        argv, drop_to = as_user(argv, drop_to), None
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=(seccomp_fd, status_write, block_read),
            start_new_session=True,
            preexec_fn=_child_setup(rlimits, drop_to, controlling_tty),
        )
    except OSError as exc:
        for fd in (status_read, block_write):
            os.close(fd)
        raise SandboxCreateError(f"cannot start bubblewrap: {exc}") from None
    finally:
        for fd in (seccomp_fd, status_write, block_read):
            os.close(fd)
    sandbox.processes.append(proc)
    started = Started(proc, status_read)
    try:
        _await_child_pid(started, _STARTUP_TIMEOUT_S)
        if started.child_pid is not None:
            sandbox.child_pids.append(started.child_pid)
            if sandbox.cgroup is not None:
                try:
                    sandbox.cgroup.add(started.child_pid)
                except OSError as exc:
                    raise SandboxCreateError(f"cannot move the job into its cgroup: {exc}") from None
            os.write(block_write, b"g")
    except BaseException:
        os.close(status_read)
        if started.child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.child_pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        os.close(block_write)
    return started
