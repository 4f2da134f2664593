"""``orchestrator up`` on this host: open, attach, leave, tear down, report.

Every way of leaving ends in the same place: the program is killed, the
workspace is copied out when asked, the sandbox is destroyed and the teardown
report is printed. The exit code says how the session ended: the program's
own code when it exited, 124 after ``--timeout``, 128+N after signal N to
``up`` (SIGHUP when the terminal closes), 125 when the orchestrator failed.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from orchestrator import procs
from orchestrator.engine import ARTIFACT_CAP_BYTES
from orchestrator.errors import OrchestratorError
from orchestrator.interactive.local import (
    LocalPtySession,
    default_shell,
    describe_teardown,
    sandbox_env,
    shell_argv,
    signal_name,
)
from orchestrator.interactive.registry import SessionRecord, SessionRegistry
from orchestrator.interactive.terminal import RelayEnd, SignalTrap, Terminal, relay
from orchestrator.providers.linux import LinuxProvider
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec

EXIT_TIMEOUT = 124
EXIT_FAILED = 125


@dataclass
class UpOptions:
    provider: str
    spec: JobSpec  # limits, mounts and env of the session; ``command`` is the program to attach to
    command: list[str] | None  # ``-- CMD``; None for the default shell
    shell: str | None
    output: Path | None
    timeout_s: float
    session_id: str = ""

    def __post_init__(self) -> None:
        if not self.session_id:
            self.session_id = "up-" + uuid.uuid4().hex[:12]


def banner(options: UpOptions, *, isolation: str, program: list[str]) -> str:
    limits = options.spec.limits
    lines = [
        f"orchestrator up: session {options.session_id} on provider {options.provider} ({isolation})",
        f"  program:  {' '.join(program)}",
        f"  limits:   memory {limits.memory_mb} MB, cpus {limits.cpus:g}, pids {limits.pids}, "
        f"disk {limits.disk_mb} MB, timeout {options.timeout_s:g} s",
    ]
    if options.spec.mounts:
        for mount in options.spec.mounts:
            mode = "read-only" if mount.read_only else "read-write"
            lines.append(f"  mount:    {mount.source} -> {mount.target} ({mode})")
    else:
        lines.append("  mounts:   none")
    lines.append("  network:  off")
    if options.output is not None:
        lines.append(f"  output:   /workspace is copied to {options.output} when you leave")
    else:
        lines.append("  output:   none; /workspace is discarded when you leave (use --output DIR to keep it)")
    lines.append("  leave:    exit or Ctrl-D; closing the terminal also ends it. Everything is destroyed.")
    return "\n".join(lines) + "\n"


def end_message(end: RelayEnd, timeout_s: float) -> tuple[str | None, int | None]:
    """What to tell the user about how the session ended, and the exit code it forces (if any)."""
    if end.reason == "timeout":
        return (
            f"orchestrator up: WARNING: the session reached its --timeout of {timeout_s:g}s and is torn down",
            EXIT_TIMEOUT,
        )
    if end.reason in ("signal", "hangup") and end.signum is not None:
        return f"orchestrator up: {signal_name(end.signum)} received; tearing the session down", 128 + end.signum
    return None, None


def run_linux(settings: Settings, options: UpOptions, terminal: Terminal) -> int:
    provider = LinuxProvider(settings)
    registry = SessionRegistry(settings)
    shell = options.shell or default_shell()
    program = options.command or shell_argv(shell)
    env = sandbox_env(dict(options.spec.env), os.environ.get("TERM"), shell)
    now = time.time()
    registry.add(
        SessionRecord(
            id=options.session_id,
            provider="linux",
            owner_pid=os.getpid(),
            owner_start=procs.start_time(os.getpid()),
            created_at=now,
            expires_at=now + options.timeout_s,
            command=program,
            mounts=[m.model_dump() for m in options.spec.mounts],
            limits=options.spec.limits.model_dump(),
            output=str(options.output) if options.output else None,
        )
    )
    session: LocalPtySession | None = None
    code = EXIT_FAILED
    try:
        with SignalTrap() as trap:
            session = LocalPtySession.open(
                provider, options.session_id, options.spec, argv=program, env=env, size=terminal.size()
            )
            terminal.notice(banner(options, isolation="bubblewrap", program=program))
            deadline = time.monotonic() + options.timeout_s
            with terminal.raw():
                end = relay(
                    terminal,
                    trap,
                    output_fd=session.master_fd,
                    send_input=session.write,
                    on_resize=session.resize,
                    deadline=deadline,
                    on_input_eof=lambda: session.write(b"\x04") if session is not None else None,
                )
            message, forced = end_message(end, options.timeout_s)
            if message:
                terminal.notice("\n" + message + "\n")
            if forced is not None:
                session.kill()
                code = forced
            else:
                code = session.wait().code or 0
            code = _finish(session, options, terminal, code)
            session = None
    except OrchestratorError as exc:
        terminal.notice(f"orchestrator: error [{exc.code}]: {exc.message}\n")
        code = EXIT_FAILED
    finally:
        if session is not None:  # an exception or a second signal mid-way: still tear down
            with contextlib.suppress(Exception):
                _finish(session, options, terminal, code)
        registry.remove(options.session_id)
    return code


def _finish(session: LocalPtySession, options: UpOptions, terminal: Terminal, code: int) -> int:
    session.kill()
    if options.output is not None:
        try:
            copied = session.copy_out(options.output, ARTIFACT_CAP_BYTES)
            total = sum(a.size for a in copied)
            terminal.notice(
                f"orchestrator up: copied {len(copied)} file(s), {total} bytes, from /workspace to {options.output}\n"
            )
        except OrchestratorError as exc:
            terminal.notice(f"orchestrator up: copying /workspace out failed [{exc.code}]: {exc.message}\n")
            code = code or EXIT_FAILED
    report = session.close()
    terminal.notice(f"orchestrator up: session {options.session_id}: {describe_teardown(session.sandbox, report)}\n")
    if not report.clean:
        return EXIT_FAILED
    return code
