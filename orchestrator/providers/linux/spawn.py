"""Starting a program in a sandbox: the one way every caller (job, session, terminal) does it.

The process that becomes bubblewrap starts as a tiny ``sh`` launcher:

1. it waits on a "go" pipe while the control plane sets its rlimits with
   ``prlimit(2)`` (allowed: it still has our uid), so they are inherited by
   everything it starts and no limit tool has to exist in the sandbox;
2. it joins the job's cgroup by writing ``0`` to each group's ``tasks`` file
   (``cgroup.procs`` on v2): nothing of the sandbox ever runs outside its
   group, and on cgroup v1 a thread moving itself skips the global lock (and
   RCU grace period) that moving a whole process from outside takes;
3. as root it execs ``setpriv`` to become the sandbox's own unprivileged uid,
   which execs bubblewrap.

``sh`` cannot close a descriptor numbered above 9, so the go pipe is also
bubblewrap's ``--block-fd``: inside the sandbox it reads the pipe's end and
closes it before the job starts, so the job inherits nothing.

No Python runs between fork and exec (no ``preexec_fn``), so even a large,
threaded control plane spawns sandboxes with ``vfork``. Where ``setpriv`` is
missing, or a terminal must become the controlling one, all of this is done
in a ``preexec_fn`` instead.
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


SH = "/bin/sh"
SETPRIV = "/usr/bin/setpriv"
# $0 names the step, so a failure reads "orchestrator-launch: ..." on the job's stderr.
LAUNCHER_NAME = "orchestrator-launch"
# $1: the go pipe's descriptor; then the cgroup files to join, up to "--"; then the command.
_LAUNCHER = (
    'read -r go </proc/self/fd/"$1" || exit 125; shift; '
    'while [ "$1" != -- ]; do echo 0 >"$1" || exit 125; shift; done; shift; exec "$@"'
)


PRLIMIT = "/usr/bin/prlimit"


def nproc_inside(
    command: list[str], rlimits: list[tuple[int, tuple[int, int]]], rootfs: Path | None
) -> tuple[list[str], list[tuple[int, tuple[int, int]]]]:
    """Without root, RLIMIT_NPROC is set by ``prlimit`` inside the sandbox, the rest outside.

    Set before bubblewrap creates the user namespace, it would become that
    namespace's ceiling on the user's whole process count on the host, which
    (unlike a sandbox uid of its own under root) includes all their processes.
    """
    nproc = [value for kind, value in rlimits if kind == resource.RLIMIT_NPROC]
    if not nproc or not ((rootfs or Path("/")) / PRLIMIT.lstrip("/")).exists():
        return command, rlimits
    soft, hard = nproc[0]
    rest = [(kind, value) for kind, value in rlimits if kind != resource.RLIMIT_NPROC]
    return [PRLIMIT, f"--nproc={soft}:{hard}", "--", *command], rest


# The sandbox's environment is set by bubblewrap (--clearenv); the tools before it need none, and
# without a locale they skip loading one.
_LAUNCH_ENV: dict[str, str] = {}


def launcher(argv: list[str], go_fd: int, join_files: list[str]) -> list[str]:
    return [SH, "-c", _LAUNCHER, LAUNCHER_NAME, str(go_fd), *join_files, "--", *argv]


def as_user(argv: list[str], uid: int) -> list[str]:
    return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]


def _child_setup(
    rlimits: list[tuple[int, tuple[int, int]]], uid: int | None, controlling_tty: bool, join_files: list[str]
) -> Callable[[], None]:
    """The fallback ``preexec_fn``: the launcher's work, done between fork and exec."""

    def setup() -> None:
        for path in join_files:  # first, while still root
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
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
    if not provider.is_root:
        command, rlimits = nproc_inside(command, rlimits, provider.config.rootfs)
    join_files = sandbox.cgroup.join_files() if sandbox.cgroup is not None else []
    seccomp_fd = seccomp_pipe()
    status_read, status_write = os.pipe2(os.O_CLOEXEC)
    layout = provider.layout(sandbox, env, workdir, new_session=new_session)
    uid = sandbox.uid if provider.is_root else None
    use_launcher = not controlling_tty and (uid is None or os.access(SETPRIV, os.X_OK))
    go_read, go_write = os.pipe2(os.O_CLOEXEC) if use_launcher else (-1, -1)
    argv = bwrap.build_argv(
        bwrap_path,
        layout,
        command,
        seccomp_fd=seccomp_fd,
        status_fd=status_write,
        block_fd=go_read if use_launcher else None,
    )
    if use_launcher:
        argv = launcher(as_user(argv, uid) if uid is not None else argv, go_read, join_files)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=(seccomp_fd, status_write, *([go_read] if use_launcher else [])),
            start_new_session=True,
            env=_LAUNCH_ENV,
            preexec_fn=None if use_launcher else _child_setup(rlimits, uid, controlling_tty, join_files),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        for fd in (status_read, go_write):
            if fd >= 0:
                os.close(fd)
        raise SandboxCreateError(f"cannot start bubblewrap: {exc}") from None
    finally:
        for fd in (seccomp_fd, status_write, go_read):
            if fd >= 0:
                os.close(fd)
    sandbox.processes.append(proc)
    started = Started(proc, status_read)
    try:
        if use_launcher:
            try:
                for kind, value in rlimits:
                    resource.prlimit(proc.pid, kind, value)
                os.write(go_write, b"\n")
            except OSError as exc:
                raise SandboxCreateError(f"cannot set the sandbox's limits: {exc}") from None
            finally:
                os.close(go_write)
        _await_child_pid(started, _STARTUP_TIMEOUT_S)
        if started.child_pid is not None:
            sandbox.child_pids.append(started.child_pid)
    except BaseException:
        os.close(status_read)
        if started.child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.child_pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    return started
