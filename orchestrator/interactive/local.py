"""An interactive program in a fresh linux sandbox, on a host pseudo-terminal.

bubblewrap is started on the slave side of a new pty, as the leader of a new
session with the pty as its controlling terminal (``--new-session`` off, so
job control, Ctrl-C and window-size signals work inside). The pty is private
to the sandbox: the user's real terminal is only ever touched by the relay,
so nothing inside can reach it, and TIOCSTI is refused by the seccomp filter
anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.providers.base import TeardownReport
from orchestrator.providers.linux import LinuxProvider, LinuxSandbox
from orchestrator.providers.linux.bwrap import INTERNAL_DIR
from orchestrator.providers.linux.process import parse_status
from orchestrator.providers.linux.spawn import start
from orchestrator.providers.linux.spawner import SandboxProcess
from orchestrator.result import Artifact
from orchestrator.spec import JobSpec

log = logging.getLogger(__name__)

BASHRC = """\
[ -r /etc/bash.bashrc ] && . /etc/bash.bashrc
PS1='(sandbox) \\w \\$ '
"""
PS1 = "(sandbox) $ "


def default_shell() -> str:
    """bash when the sandbox's system view (the host's /usr and /bin) has it, else sh."""
    return "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"


def shell_argv(shell: str) -> list[str]:
    if os.path.basename(shell) == "bash":
        return [shell, "--rcfile", f"{INTERNAL_DIR}/bashrc", "-i"]
    return [shell, "-i"]


@dataclass
class PtyExit:
    code: int | None  # the program's exit code (128+N when killed by signal N), None if unknown


@dataclass
class LocalPtySession:
    """One sandbox and one program on a pty; ``close`` always tears it down."""

    provider: LinuxProvider
    sandbox: LinuxSandbox
    master_fd: int
    process: SandboxProcess
    status_fd: int
    _status: bytearray = field(default_factory=bytearray)
    closed: bool = False

    @classmethod
    def open(
        cls,
        provider: LinuxProvider,
        session_id: str,
        spec: JobSpec,
        *,
        argv: list[str],
        env: dict[str, str],
        size: tuple[int, int],
    ) -> LocalPtySession:
        sandbox = provider.create(session_id, spec)
        try:
            rc = sandbox.internal / "bashrc"
            rc.write_text(BASHRC, encoding="utf-8")
            os.chmod(rc, 0o644)
            return cls._spawn(provider, sandbox, argv, env, size)
        except BaseException:
            provider.destroy(sandbox)
            raise

    @classmethod
    def _spawn(
        cls, provider: LinuxProvider, sandbox: LinuxSandbox, argv: list[str], env: dict[str, str], size: tuple[int, int]
    ) -> LocalPtySession:
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, _winsize(*size))
            started = start(
                provider,
                sandbox,
                argv,
                env,
                sandbox.spec.workdir,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                new_session=False,
                controlling_tty=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(started.status_fd, False)
        session = cls(provider, sandbox, master, started.proc, started.status_fd)
        session._status += started.status
        return session

    # --- driving ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master_fd, view) :]
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                return  # the program is gone; its end arrives on the output side

    def resize(self, rows: int, cols: int) -> None:
        """TIOCSWINSZ on the pty; the kernel sends SIGWINCH to the foreground job inside."""
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, _winsize(rows, cols))

    def _read_status(self) -> dict[str, int]:
        with contextlib.suppress(OSError):
            while chunk := os.read(self.status_fd, 4096):
                self._status += chunk
        found = parse_status(bytes(self._status))
        pid = found.get("child-pid")
        if pid is not None and pid not in self.sandbox.child_pids:
            self.sandbox.child_pids.append(pid)
        return found

    def wait(self, timeout: float = 5.0) -> PtyExit:
        """The program's end, once the output side has closed."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        found = self._read_status()
        code = found.get("exit-code")
        if code is None and self.process.returncode is not None:
            rc = self.process.returncode
            code = 128 - rc if rc < 0 else rc
        return PtyExit(code)

    def kill(self) -> None:
        self.provider.kill_processes(self.sandbox)

    # --- ending -------------------------------------------------------------

    def copy_out(self, dest: Path, max_bytes: int) -> list[Artifact]:
        """Copy the workspace out, as hostile data: regular files only, no symlink followed, capped."""
        dest.mkdir(parents=True, exist_ok=True)
        return self.provider.collect(self.sandbox, ["**"], dest, max_bytes)

    def close(self) -> TeardownReport:
        if self.closed:
            return TeardownReport(clean=True)
        self.closed = True
        self.kill()
        with contextlib.suppress(OSError):
            os.close(self.master_fd)
        self._read_status()
        with contextlib.suppress(OSError):
            os.close(self.status_fd)
        return self.provider.destroy(self.sandbox)


def _winsize(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


def sandbox_env(spec_env: dict[str, str], term: str | None, shell: str) -> dict[str, str]:
    env = {"TERM": term or "xterm", "PS1": PS1, "SHELL": shell}
    env.update(spec_env)
    return env


def describe_teardown(sandbox: LinuxSandbox, report: TeardownReport) -> str:
    parts = ["processes"]
    if sandbox.cgroup is not None:
        parts.append("cgroup")
    if sandbox.lease is not None:
        parts.append("workspace tmpfs")
        parts.append(f"host uid {sandbox.uid}")
    parts.append("workspace and sandbox directory")
    if report.clean:
        return "destroyed " + ", ".join(parts) + "; nothing left"
    return "teardown left resources behind: " + "; ".join(report.leftovers)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
