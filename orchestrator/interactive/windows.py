"""``orchestrator up`` for the Windows providers.

hyperv: a PowerShell prompt into the session's VM over PowerShell Direct. The
    transport is request/response (``PowerShellTransport.run``), so this is a
    line-at-a-time shell: each line runs in the VM (``templates/interactive/hyperv-line.ps1``)
    and its output is printed; the working directory carries over, variables
    do not. Line editing is the local terminal's. Ctrl-C at the prompt clears
    the line; while a line runs it stops waiting for it (the VM is destroyed
    at the end either way).
wsb: the sandbox's own window is the session. The sandbox is started with
    networking off and the mapped folders, ``wsb connect`` opens its window
    (the classic ``WindowsSandbox.exe`` opens one itself) and ``up`` waits
    until the sandbox is gone, the timeout passes or ``up`` is told to leave.
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.cancel import CancelToken
from orchestrator.engine import ARTIFACT_CAP_BYTES
from orchestrator.errors import OrchestratorError, SandboxCreateError, TransportError
from orchestrator.interactive.session import EXIT_FAILED, EXIT_TIMEOUT, UpOptions, banner
from orchestrator.interactive.terminal import Terminal
from orchestrator.providers import create_provider
from orchestrator.providers.base import ExecRequest, TeardownReport
from orchestrator.settings import Settings
from orchestrator.templates import read_text
from orchestrator.windows.scripts import PSScript
from orchestrator.windows.transport import PSResult

MAX_OUTPUT_CHARS = 1024 * 1024
WSB_POLL_S = 2.0


def ps_script(name: str) -> PSScript:
    return PSScript(read_text(f"interactive/{name}.ps1"), f"interactive/{name}.ps1")


class Leave(BaseException):
    """Raised by a signal handler (or the timeout) to leave the session from wherever it waits."""

    def __init__(self, reason: str, signum: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.signum = signum


@contextlib.contextmanager
def leave_on_signals(timeout_s: float) -> Iterator[Callable[[], None]]:
    """SIGHUP/SIGTERM and the deadline raise ``Leave``; the yielded function disarms them (for teardown)."""
    armed = True

    def handler(signum: int, _frame: object) -> None:
        if armed:
            raise Leave("timeout" if signum == signal.SIGALRM else "signal", signum)

    def disarm() -> None:
        nonlocal armed
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield disarm
    finally:
        disarm()
        for sig, old in previous.items():
            signal.signal(sig, old)


def _leave_code(leave: Leave, terminal: Terminal, timeout_s: float) -> int:
    if leave.reason == "timeout":
        terminal.notice(
            f"\norchestrator up: WARNING: the session reached its --timeout of {timeout_s:g}s and is torn down\n"
        )
        return EXIT_TIMEOUT
    signum = leave.signum or signal.SIGTERM
    terminal.notice(f"\norchestrator up: {signal.Signals(signum).name} received; tearing the session down\n")
    return 128 + signum


def _report(terminal: Terminal, options: UpOptions, report: TeardownReport) -> int:
    if report.clean:
        terminal.notice(f"orchestrator up: session {options.session_id}: destroyed; nothing left\n")
        return 0
    terminal.notice(f"orchestrator up: session {options.session_id}: teardown left: {'; '.join(report.leftovers)}\n")
    return EXIT_FAILED


def run_windows(
    settings: Settings,
    options: UpOptions,
    terminal: Terminal,
    *,
    provider: Any = None,
    read_line: Callable[[str], str] = input,
) -> int:
    provider = provider or create_provider(options.provider, settings)
    try:
        if options.provider == "hyperv":
            return HyperVShell(provider, options, terminal, read_line).run()
        return WsbWindow(provider, options, terminal).run()
    except OrchestratorError as exc:
        terminal.notice(f"orchestrator: error [{exc.code}]: {exc.message}\n")
        return EXIT_FAILED


# --- hyperv ---------------------------------------------------------------------


class HyperVShell:
    def __init__(self, provider: Any, options: UpOptions, terminal: Terminal, read_line: Callable[[str], str]):
        self.provider = provider
        self.options = options
        self.terminal = terminal
        self.read_line = read_line
        self.cwd: str = str(provider.hv.guest_workspace)
        self.script = ps_script("hyperv-line")

    def run(self) -> int:
        code = 0
        sandbox = None
        try:
            with leave_on_signals(self.options.timeout_s) as disarm:
                try:
                    sandbox = self.provider.create(self.options.session_id, self.options.spec, session=True)
                    self.terminal.notice(
                        banner(self.options, isolation="Hyper-V VM, PowerShell Direct", program=["powershell"])
                    )
                    self.terminal.notice(
                        "  note:     one line at a time; the directory carries over, variables do not\n"
                    )
                    code = self._loop(sandbox)
                except Leave as leave:
                    code = _leave_code(leave, self.terminal, self.options.timeout_s)
                finally:
                    disarm()
        finally:
            if sandbox is not None:
                code = self._finish(sandbox, code)
        return code

    def _loop(self, sandbox: Any) -> int:
        while True:
            try:
                line = self.read_line(f"PS (sandbox) {self.cwd}> ")
            except EOFError:
                self.terminal.notice("\n")
                return 0
            except KeyboardInterrupt:
                self.terminal.notice("\n")
                continue
            if line.strip().lower() in ("exit", "logout"):
                return 0
            if not line.strip():
                continue
            try:
                output = self._run_line(sandbox, line)
            except KeyboardInterrupt:
                self.terminal.notice("\n^C: stopped waiting for that line\n")
                continue
            except TransportError as exc:
                self.terminal.notice(f"orchestrator up: the line failed [{exc.code}]: {exc.message}\n")
                continue
            if output:
                with contextlib.suppress(OSError):
                    self.terminal.write(output.encode("utf-8", errors="replace"))

    def _run_line(self, sandbox: Any, line: str) -> str:
        user, password = self.provider.hv.guest_credentials()
        params = {
            "VMName": sandbox.plan.vm_name,
            "GuestUser": user,
            "GuestPassword": password,
            "Command": line,
            "Cwd": self.cwd,
            "Width": self.terminal.size()[1],
            "MaxOutputChars": MAX_OUTPUT_CHARS,
        }
        holder: dict[str, Any] = {}

        def work() -> None:
            try:
                holder["result"] = self.provider._get_transport().run(
                    self.script, params, timeout_s=self.options.timeout_s
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                holder["error"] = exc

        worker = threading.Thread(target=work, name="hyperv-line", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)  # short waits: Ctrl-C, SIGTERM and the timeout stay responsive
        if "error" in holder:
            raise holder["error"]
        reply = _json_reply(holder["result"])
        cwd = reply.get("cwd")
        if isinstance(cwd, str) and cwd and len(cwd) < 1024:
            self.cwd = cwd
        text = str(reply.get("output", ""))
        if reply.get("truncated"):
            text += f"\n[output truncated at {MAX_OUTPUT_CHARS} characters]\n"
        return text

    def _finish(self, sandbox: Any, code: int) -> int:
        if self.options.output is not None:
            try:
                self.options.output.mkdir(parents=True, exist_ok=True)
                copied = self.provider.collect(sandbox, ["**"], self.options.output, ARTIFACT_CAP_BYTES)
                self.terminal.notice(
                    f"orchestrator up: copied {len(copied)} file(s) from the workspace to {self.options.output}\n"
                )
            except OrchestratorError as exc:
                self.terminal.notice(f"orchestrator up: copying the workspace out failed [{exc.code}]: {exc.message}\n")
                code = code or EXIT_FAILED
        return _report(self.terminal, self.options, self.provider.destroy(sandbox)) or code


def _json_reply(result: PSResult) -> dict[str, Any]:
    if result.errors:
        raise TransportError(result.errors[0].message, code="transport.script_error")
    for item in reversed(result.output):
        if isinstance(item, dict):
            return item
        if isinstance(item, str) and item.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(item)
                if isinstance(value, dict):
                    return value
    raise TransportError("the interactive line returned no JSON reply", code="transport.bad_output")


# --- wsb ------------------------------------------------------------------------


class WsbWindow:
    def __init__(self, provider: Any, options: UpOptions, terminal: Terminal):
        self.provider = provider
        self.options = options
        self.terminal = terminal

    def run(self) -> int:
        box = self.provider.create(self.options.session_id, self.options.spec)
        code = 0
        try:
            with leave_on_signals(self.options.timeout_s) as disarm:
                try:
                    self._open(box)
                    self.terminal.notice(
                        banner(self.options, isolation="Windows Sandbox", program=["the sandbox window"])
                    )
                    if self.options.output is not None:
                        self.terminal.notice("  note:     --output is not supported for wsb; nothing is copied out\n")
                    self.terminal.notice("orchestrator up: waiting for the sandbox window to close\n")
                    self._wait_closed(box)
                    self.terminal.notice("orchestrator up: the sandbox window closed\n")
                except Leave as leave:
                    code = _leave_code(leave, self.terminal, self.options.timeout_s)
                except KeyboardInterrupt:
                    code = 130
                finally:
                    disarm()
        finally:
            code = _report(self.terminal, self.options, self.provider.destroy(box)) or code
        return code

    def _open(self, box: Any) -> None:
        """Locks, stale-sandbox cleanup and the per-session folders come from the provider; then launch."""
        p = self.provider
        p._acquire_locks(box, CancelToken())
        p._cleanup_stale(box)
        request = ExecRequest(argv=["explorer.exe"], env={}, cwd="/workspace", timeout_s=self.options.timeout_s)
        p._prepare(box, request, 0)
        if box.launch == "wsb":
            started = p._run(
                "launch-wsb", {"WsbPath": box.wsb_path, "Config": p.wsb_config(box, logon=False, inline=True)}
            )
            sandbox_id = str(started.get("id") or "")
            if not sandbox_id or len(sandbox_id) > 64:
                raise SandboxCreateError(f"wsb start returned an unexpected id {sandbox_id[:80]!r}")
            box.sandbox_ids.append(sandbox_id)
            box.launched = True
            self._ps("wsb-connect", {"WsbPath": box.wsb_path, "Id": sandbox_id})
        else:
            with tempfile.TemporaryDirectory(prefix="orch-up-") as tmp:
                local = Path(tmp) / "interactive.wsb"
                local.write_text(p.wsb_config(box, logon=False), encoding="utf-8")
                p.transport.copy_to(local, f"{box.job_dir}\\interactive.wsb")
            box.launched = True
            p._run("launch-classic", {"ExePath": box.classic_path, "ConfigPath": f"{box.job_dir}\\interactive.wsb"})

    def _ps(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        return _json_reply(self.provider.transport.run(ps_script(name), params, timeout_s=60.0))

    def _wait_closed(self, box: Any) -> None:
        while True:
            probe = self.provider._run("probe", {})
            if box.launch == "wsb":
                running = {str(i).lower() for i in probe.get("ids") or []}
                if box.sandbox_ids[-1].lower() not in running:
                    return
            elif not probe.get("processes"):
                return
            time.sleep(getattr(self.provider, "poll_interval_s", WSB_POLL_S))
