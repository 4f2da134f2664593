"""Starting a program in a sandbox: the one way every caller (job, session, terminal) does it.

bubblewrap is started by the provider's fork server (``forkserver.py``), a
small single-threaded process: between fork and exec its child joins the
job's cgroup, sets the job's rlimits and, as root, drops to the sandbox's own
unprivileged uid. So nothing of the sandbox ever runs outside its cgroup or
without its limits, no helper program is executed on the way, and the large,
threaded control plane itself never runs code between fork and exec.

On cgroup v1 the child joins by writing ``0`` to each group's ``tasks`` file:
a thread moving itself skips the global lock (and its RCU grace period) that
moving a whole process from outside takes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.errors import SandboxCreateError
from orchestrator.providers.linux import bwrap, seccomp
from orchestrator.providers.linux.process import parse_status
from orchestrator.providers.linux.spawner import FORK_SERVER, SandboxProcess, SpawnRequest

if TYPE_CHECKING:
    from orchestrator.providers.linux.provider import LinuxProvider, LinuxSandbox

_STARTUP_TIMEOUT_S = 30.0
StdStream = int | IO[Any] | None
# Where the child finds bubblewrap's extra descriptors (after 0, 1 and 2).
SECCOMP_FD, STATUS_FD = 3, 4


@dataclass
class Started:
    proc: SandboxProcess
    status_fd: int  # bubblewrap writes the job's exit code here at the end
    status: bytearray = field(default_factory=bytearray)
    child_pid: int | None = None  # the job: pid 1 of its namespace


def seccomp_pipe(allow: frozenset[str] = frozenset()) -> int:
    """A pipe holding the compiled filter; bubblewrap reads it to EOF and closes it."""
    program = seccomp.compile_filter(allow=allow)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        os.write(write_fd, program)
    finally:
        os.close(write_fd)
    return read_fd


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


class _Stdio:
    """The child's 0, 1 and 2, and our ends of the pipes among them."""

    def __init__(self, stdin: StdStream, stdout: StdStream, stderr: StdStream):
        self.child: list[int] = []
        self.ours: list[IO[bytes] | None] = []
        self._close: list[int] = []
        try:
            for spec, reading in ((stdin, False), (stdout, True), (stderr, True)):
                self._add(spec, reading)
        except BaseException:
            self.close_child()
            for pipe in self.ours:
                if pipe is not None:
                    pipe.close()
            raise

    def _add(self, spec: StdStream, reading: bool) -> None:
        if spec == subprocess.PIPE:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            mine, theirs = (read_fd, write_fd) if reading else (write_fd, read_fd)
            self.child.append(theirs)
            self._close.append(theirs)
            self.ours.append(os.fdopen(mine, "rb" if reading else "wb"))
            return
        if spec == subprocess.DEVNULL or spec is None:
            fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            self.child.append(fd)
            self._close.append(fd)
        elif isinstance(spec, int):
            self.child.append(spec)
        else:
            self.child.append(spec.fileno())
        self.ours.append(None)

    def close_child(self) -> None:
        for fd in self._close:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._close = []


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
    cap_add: tuple[str, ...] = (),
    seccomp_allow: frozenset[str] = frozenset(),
) -> Started:
    bwrap_path = provider.prepare()
    rlimits = provider.rlimits(sandbox)
    if not provider.is_root:
        command, rlimits = nproc_inside(command, rlimits, provider.config.rootfs)
    layout = provider.layout(sandbox, env, workdir, new_session=new_session)
    layout.cap_add = cap_add
    argv = bwrap.build_argv(bwrap_path, layout, command, seccomp_fd=SECCOMP_FD, status_fd=STATUS_FD)
    stdio = _Stdio(stdin, stdout, stderr)
    seccomp_fd = seccomp_pipe(seccomp_allow)
    status_read, status_write = os.pipe2(os.O_CLOEXEC)
    request = SpawnRequest(
        argv=argv,
        fds=[*stdio.child, seccomp_fd, status_write],
        join=sandbox.cgroup.join_files() if sandbox.cgroup is not None else [],
        rlimits=rlimits,
        uid=sandbox.uid if provider.is_root else None,
        tty=controlling_tty,
    )
    try:
        pid, pidfd = FORK_SERVER.spawn(request)
    except BaseException:
        os.close(status_read)
        for pipe in stdio.ours:
            if pipe is not None:
                pipe.close()
        raise
    finally:
        stdio.close_child()
        for fd in (seccomp_fd, status_write):
            os.close(fd)
    proc = SandboxProcess(FORK_SERVER, pid, pidfd, *stdio.ours)
    sandbox.processes.append(proc)
    started = Started(proc, status_read)
    try:
        _await_child_pid(started, _STARTUP_TIMEOUT_S)
        if started.child_pid is not None:
            sandbox.child_pids.append(started.child_pid)
    except BaseException:
        os.close(status_read)
        if started.child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.child_pid, signal.SIGKILL)
        proc.kill()
        raise
    return started
