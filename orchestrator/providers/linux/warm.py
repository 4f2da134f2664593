"""Warm starts: one Python interpreter per worker, fresh namespaces for every program.

A cold job pays for bubblewrap and a cold interpreter each time. For many small
Python programs (batch evaluation) a ``WarmPool`` keeps one outer sandbox per
worker, an ordinary linux-provider sandbox with its own uid, cgroup and record
(so crash recovery reaps it like any other), running ``zygote.py``. Each
program gets a fork of that interpreter in new mount, pid, ipc, uts and network
namespaces, with a fresh /proc, /tmp, /workspace and /.orchestrator, no
capabilities and the job's full seccomp filter; when it exits, everything it
started dies with its pid namespace.

The outer sandbox's limits are the program's: one program runs in it at a
time. A program that overruns its wall clock, a cancellation, or anything
unexpected from the interpreter destroys the whole outer sandbox; the next
program gets a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from orchestrator.cancel import CancelToken
from orchestrator.errors import SandboxCreateError, SandboxError
from orchestrator.output import OutputCapture, Stream
from orchestrator.providers.base import ExecOutcome
from orchestrator.providers.linux import bwrap, seccomp
from orchestrator.providers.linux.provider import SCRIPT_PATH, LinuxProvider, LinuxSandbox, cpu_rlimit
from orchestrator.providers.linux.spawn import start
from orchestrator.spec import WORKSPACE, JobSpec, Limits

ZYGOTE_SOURCE = Path(__file__).with_name("zygote.py")
ZYGOTE_PATH = f"{bwrap.INTERNAL_DIR}/zygote.py"
# What the outer sandbox's filter lets the interpreter do that a job's filter refuses.
ZYGOTE_SYSCALLS = frozenset({"mount", "unshare"})
INTERPRETER = ["python3"]
MAX_SOURCE_BYTES = 256 * 1024  # a request must fit one socket message
_READY_TIMEOUT_S = 30.0
_REPORT_GRACE_S = 5.0
_MAX_USES = 1000  # a fresh outer sandbox now and then bounds whatever slowly accumulates
_MAX_IDLE = 64  # idle outer sandboxes kept, over every set of limits
_NO_CPU_LIMIT_S = 7 * 24 * 3600.0


class WarmSlotLost(SandboxError):
    code = "sandbox.lost"


class WarmUnavailable(SandboxCreateError):
    """The warm interpreter cannot start on this host (an old guest python3, a kernel that refuses)."""


def eligible(spec: JobSpec) -> bool:
    """A Python script with nothing a fresh view would lose: no files, mounts, stdin or artifacts,
    run where the workspace is (which is empty)."""
    return (
        spec.script is not None
        and spec.workdir == WORKSPACE
        and spec.command is None
        and spec.interpreter == INTERPRETER
        and not spec.files
        and not spec.mounts
        and spec.stdin is None
        and not spec.artifacts
        and spec.image is None
        and len(spec.script.encode()) <= MAX_SOURCE_BYTES
    )


class WarmSlot:
    """An outer sandbox and the warm interpreter in it."""

    def __init__(self, provider: LinuxProvider, limits: Limits):
        self.provider = provider
        # The interpreter and the middle process share the program's pids budget. The CPU-time
        # rlimit is each program's own (``_rlimits``): the interpreter's adds up over all of them.
        update = {"pids": limits.pids + 2, "cpu_s": _NO_CPU_LIMIT_S}
        spec = JobSpec(command=[*INTERPRETER, ZYGOTE_PATH], limits=limits.model_copy(update=update))
        self.sandbox: LinuxSandbox = provider.create(f"warm-{uuid.uuid4().hex[:16]}", spec)
        self.uses = 0
        self._counts = (0, 0)
        self._status_fd = -1
        try:
            self.sock = self._start()
        except BaseException:
            provider.destroy(self.sandbox)
            self._close_status()
            raise

    def _start(self) -> socket.socket:
        internal = self.sandbox.internal
        shutil.copyfile(ZYGOTE_SOURCE, internal / "zygote.py")
        (internal / "seccomp.bpf").write_bytes(seccomp.compile_filter())
        for name in ("zygote.py", "seccomp.bpf"):
            os.chmod(internal / name, 0o644)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = os.open(self.sandbox.root / "zygote.log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            started = start(
                self.provider,
                self.sandbox,
                [*INTERPRETER, ZYGOTE_PATH],
                dict(self.sandbox.spec.env),
                "/workspace",
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                cap_add=("CAP_SYS_ADMIN",),
                seccomp_allow=ZYGOTE_SYSCALLS,
            )
        finally:
            theirs.close()
            os.close(log)
        self._status_fd = started.status_fd
        ours.settimeout(_READY_TIMEOUT_S)
        try:
            ready = json.loads(ours.recv(4096) or b"{}")
        except (OSError, ValueError):
            ready = {}
        if "ready" not in ready:
            ours.close()
            reason = ready.get("error") or self.log_tail()
            raise WarmUnavailable(f"the warm interpreter did not start: {reason}")
        ours.settimeout(None)
        if self.sandbox.cgroup is not None:
            self._counts = self.sandbox.cgroup.limit_events()
        return ours

    def log_tail(self) -> str:
        try:
            return (self.sandbox.root / "zygote.log").read_text(errors="replace")[-500:].strip() or "no output"
        except OSError:
            return "no output"

    def run(self, spec: JobSpec, output: OutputCapture, cancel: CancelToken) -> ExecOutcome:
        """Run one program; raises ``WarmSlotLost`` (the slot is then unusable) if the interpreter fails."""
        self.uses += 1
        limits = spec.limits
        request = {
            "source": spec.script,
            "path": SCRIPT_PATH,
            "argv": spec.argv(SCRIPT_PATH)[len(INTERPRETER) :],
            "env": bwrap.base_env(spec.env),
            "cwd": spec.workdir,
            "rlimits": self._rlimits(limits),
            "tmp_bytes": min(limits.disk_mb, 1024) * 1024 * 1024,
            "disk_bytes": limits.disk_mb * 1024 * 1024,
        }
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                socket.send_fds(self.sock, [json.dumps(request).encode()], [out_w, err_w])
            except OSError as exc:
                raise WarmSlotLost(f"the warm interpreter is gone: {exc}") from None
            finally:
                os.close(out_w)
                os.close(err_w)
            return self._collect(spec, {out_r: "stdout", err_r: "stderr"}, output, cancel)
        finally:
            os.close(out_r)
            os.close(err_r)

    def _rlimits(self, limits: Limits) -> list[list[int]]:
        # The program is pid 1 of its namespace, so the kernel's SIGXCPU (a default action) never
        # reaches it: the CPU limit is the hard one, SIGKILL, which always does.
        cpu = cpu_rlimit(limits)
        out = []
        for kind, (soft, hard) in self.provider.rlimits(self.sandbox):
            out.append([kind, cpu, cpu] if kind == resource.RLIMIT_CPU else [kind, soft, hard])
        return out

    def _collect(
        self, spec: JobSpec, pipes: dict[int, Stream], output: OutputCapture, cancel: CancelToken
    ) -> ExecOutcome:
        deadline = time.monotonic() + spec.limits.timeout_s
        report: dict[str, Any] | None = None
        poller = select.poll()
        for fd in (*pipes, self.sock.fileno(), cancel.fileno()):
            poller.register(fd, select.POLLIN)
        while pipes or report is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or cancel.cancelled:
                return ExecOutcome(exit_code=None, timed_out=not cancel.cancelled)
            for fd, _ in poller.poll(remaining * 1000):
                if fd in pipes:
                    data = os.read(fd, 65536)
                    if data:
                        output.write(pipes[fd], data)
                    else:
                        del pipes[fd]
                        poller.unregister(fd)
                elif fd == self.sock.fileno():
                    report = self._report()
                    poller.unregister(fd)
                    # The program is gone; what it started dies with its namespace and lets go of the pipes.
                    deadline = min(deadline, time.monotonic() + _REPORT_GRACE_S)
        assert report is not None
        return self._outcome(spec, report)

    def _report(self) -> dict[str, Any]:
        try:
            data = self.sock.recv(65536)
            report = json.loads(data) if data else {}
        except (OSError, ValueError):
            report = {}
        if "status" not in report:
            reason = report.get("error") or "the warm interpreter exited"
            raise WarmSlotLost(f"{reason}; {self.log_tail()}")
        return dict(report)

    def _outcome(self, spec: JobSpec, report: dict[str, Any]) -> ExecOutcome:
        code = os.waitstatus_to_exitcode(int(report["status"]))
        sig = -code if code < 0 else None
        cpu_s = float(report.get("cpu_s", 0.0))
        outcome = ExecOutcome(
            exit_code=128 + sig if sig else code,
            signal=sig,
            usage={"cpu_s": round(cpu_s, 4), "memory_peak_bytes": int(report.get("maxrss_kb", 0)) * 1024},
        )
        oom, pids = self._new_limit_events()
        if oom:
            outcome.limit = "memory"
        elif sig in (signal.SIGKILL, signal.SIGXCPU) or cpu_s >= spec.limits.cpu_s:
            # Nothing inside can SIGKILL its namespace's pid 1, and the host's kills end in a timeout
            # or a cancel: this is the CPU rlimit (whose accounting may read a tick under the limit).
            # The rlimit counts whole seconds; past a fractional limit a cold job would have been stopped.
            outcome.limit = "cpu"
        elif sig == signal.SIGXFSZ:
            outcome.limit = "disk"
        elif code != 0 and pids:
            outcome.limit = "pids"
        return outcome

    def _new_limit_events(self) -> tuple[bool, bool]:
        if self.sandbox.cgroup is None:
            return False, False
        counts = self.sandbox.cgroup.limit_events()
        new = (counts[0] > self._counts[0], counts[1] > self._counts[1])
        self._counts = counts
        return new

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.provider.destroy(self.sandbox)
        self._close_status()

    def _close_status(self) -> None:
        fd, self._status_fd = self._status_fd, -1
        if fd >= 0:
            os.close(fd)


class WarmPool:
    """Idle slots by limits; ``run`` borrows one (or starts one) for a single program."""

    def __init__(self, provider: LinuxProvider):
        self.provider = provider
        self._idle: dict[str, list[WarmSlot]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def run(self, spec: JobSpec, output: OutputCapture, cancel: CancelToken) -> ExecOutcome:
        # The limits an outer sandbox is made with; wall clock, CPU time and output are per program.
        key = spec.limits.model_dump_json(exclude={"timeout_s", "output_bytes", "cpu_s"})
        with self._lock:
            idle = self._idle.get(key)
            slot = idle.pop() if idle else None
        if slot is None:
            slot = WarmSlot(self.provider, spec.limits)
        keep = False
        try:
            outcome = slot.run(spec, output, cancel)
            keep = not (outcome.timed_out or cancel.cancelled) and slot.uses < _MAX_USES
            return outcome
        finally:
            with self._lock:
                idle_count = sum(len(slots) for slots in self._idle.values())
                if keep and not self._closed and idle_count < _MAX_IDLE:
                    self._idle.setdefault(key, []).append(slot)
                    slot = None
            if slot is not None:
                slot.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            slots = [slot for idle in self._idle.values() for slot in idle]
            self._idle.clear()
        for slot in slots:
            with contextlib.suppress(Exception):
                slot.close()
