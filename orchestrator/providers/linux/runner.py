"""One program in a fresh bubblewrap sandbox, and what ended it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecOutcome, ExecRequest
from orchestrator.providers.linux.process import RawOutcome, run_process
from orchestrator.providers.linux.spawn import start
from orchestrator.providers.linux.spawner import SandboxProcess

if TYPE_CHECKING:
    from orchestrator.providers.linux.provider import LinuxProvider, LinuxSandbox

_EXEC_FAILED = (b"bwrap: execvp ", b"prlimit: failed to execute ")


def _killer(provider: LinuxProvider, sandbox: LinuxSandbox) -> Callable[[SandboxProcess], None]:
    def kill(proc: SandboxProcess) -> None:
        if not sandbox.child_pids:  # killed before bubblewrap reported the job's pid
            proc.kill()
        provider.kill_processes(sandbox)

    return kill


def _cpu_watchdog(sandbox: LinuxSandbox) -> Callable[[], str | None] | None:
    group = sandbox.cgroup
    limit = sandbox.spec.limits.cpu_s
    if group is None:
        return None

    def watch() -> str | None:
        return "cpu" if group.usage().cpu_s >= limit else None

    return watch


def classify(sandbox: LinuxSandbox, raw: RawOutcome, stderr_head: bytes) -> ExecOutcome:
    code = raw.exit_code if raw.exit_code is not None else raw.returncode
    sig = code - 128 if raw.exit_code is not None and 128 < code < 128 + 65 else None
    outcome = ExecOutcome(exit_code=code, signal=sig, timed_out=raw.timed_out)
    if stderr_head.startswith(_EXEC_FAILED) and code in (1, 126, 127):
        outcome.error_code = "job.command_not_found"
        message = stderr_head.decode(errors="replace").strip()
        outcome.error_message = message.removeprefix("bwrap: ").removeprefix("prlimit: ")
        return outcome
    if raw.exit_code is None and not (raw.timed_out or raw.cancelled) and stderr_head.startswith(b"bwrap:"):
        outcome.error_code = "sandbox.create_failed"
        outcome.error_message = stderr_head.decode(errors="replace").strip()
        return outcome
    usage = sandbox.cgroup.usage() if sandbox.cgroup is not None else None
    if usage is not None:
        outcome.usage = {
            "cpu_s": round(usage.cpu_s, 4),
            "memory_peak_bytes": usage.memory_peak_bytes,
        }
    if raw.timed_out or raw.cancelled:
        return outcome
    limits = sandbox.spec.limits
    if raw.limit_hit:
        outcome.limit = raw.limit_hit
    elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and usage is not None and usage.cpu_s >= limits.cpu_s):
        outcome.limit = "cpu"
    elif usage is not None and usage.oom_killed:
        outcome.limit = "memory"
    elif sig == signal.SIGXFSZ:
        outcome.limit = "disk"
    elif code != 0 and _workspace_full(sandbox):
        outcome.limit = "disk"
    elif code != 0 and usage is not None and usage.pids_limit_hit:
        outcome.limit = "pids"
    elif raw.exit_code is None and raw.returncode < 0:
        outcome.error_code = "sandbox.lost"
        outcome.error_message = f"the sandbox was killed from outside (signal {-raw.returncode}) before the job ended"
    return outcome


def _workspace_full(sandbox: LinuxSandbox) -> bool:
    if not sandbox.tmpfs:
        return False
    try:
        st = os.statvfs(sandbox.workspace)
    except OSError:
        return False
    return st.f_bavail == 0 or st.f_favail == 0


def run_in_sandbox(
    provider: LinuxProvider,
    sandbox: LinuxSandbox,
    request: ExecRequest,
    output: OutputCapture,
    cancel: CancelToken,
) -> ExecOutcome:
    deadline = time.monotonic() + request.timeout_s
    started = start(
        provider,
        sandbox,
        request.argv,
        request.env,
        request.cwd,
        stdin=subprocess.PIPE if request.stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    raw = run_process(
        started,
        stdin=request.stdin,
        output=output,
        deadline=deadline,
        cancel=cancel,
        kill=_killer(provider, sandbox),
        watchdog=_cpu_watchdog(sandbox),
    )
    return classify(sandbox, raw, output.stderr.getvalue()[:4096])
