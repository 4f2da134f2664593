"""Sessions on the Linux provider: one long-lived sandbox, many commands.

The sandbox runs ``agent.py``; the host talks to it over the sandbox's stdin
and stdout. Everything the agent sends is parsed as hostile input: a bad line
marks the session broken, it never crashes the host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cancel import CancelToken
from orchestrator.errors import SandboxError
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecOutcome, ExecRequest
from orchestrator.providers.linux import bwrap
from orchestrator.providers.linux.spawn import start

if TYPE_CHECKING:
    from orchestrator.providers.linux.provider import LinuxProvider, LinuxSandbox

AGENT_SOURCE = Path(__file__).with_name("agent.py")
AGENT_PATH = f"{bwrap.INTERNAL_DIR}/agent.py"
MAX_LINE = 1024 * 1024
_READY_TIMEOUT = 30.0


class AgentBroken(SandboxError):
    code = "session.broken"


class Exec:
    """One command running through the agent; its events arrive on ``events``, or go to ``listener``
    (called on the agent's reader thread)."""

    def __init__(self, ident: int, listener: Callable[[dict[str, Any]], None] | None = None):
        self.id = ident
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.listener = listener

    def deliver(self, event: dict[str, Any]) -> None:
        if self.listener is not None:
            self.listener(event)
        else:
            self.events.put(event)


class SessionAgent:
    def __init__(self, provider: LinuxProvider, sandbox: LinuxSandbox):
        shutil.copyfile(AGENT_SOURCE, sandbox.internal / "agent.py")
        os.chmod(sandbox.internal / "agent.py", 0o644)
        started = start(
            provider,
            sandbox,
            ["python3", "-I", "-S", "-u", AGENT_PATH],
            dict(sandbox.spec.env),
            "/workspace",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.proc = started.proc
        status_read = started.status_fd
        self._status_read = status_read
        self._lock = threading.Lock()
        self._execs: dict[int, Exec] = {}
        self._next = 1
        self.broken: str | None = None
        self.pid: object = None  # the agent's pid inside the sandbox
        self._ready = threading.Event()
        self._stderr = bytearray()
        self._reader = threading.Thread(target=self._read_loop, name=f"agent-{sandbox.id[:8]}", daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        if not self._ready.wait(_READY_TIMEOUT) or self.broken:
            self.close()
            raise AgentBroken(
                f"the session agent did not start: {self.broken or 'timeout'}; "
                f"{self._stderr.decode(errors='replace')[-500:]}".strip()
            )

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        stderr = self.proc.stderr
        for chunk in iter(lambda: os.read(stderr.fileno(), 65536), b""):
            if len(self._stderr) < 65536:
                self._stderr += chunk[: 65536 - len(self._stderr)]

    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                line = self.proc.stdout.readline(MAX_LINE + 1)
                if not line:
                    self._fail("the agent exited")
                    return
                if len(line) > MAX_LINE or not line.endswith(b"\n"):
                    self._fail("the agent sent an oversized line")
                    return
                try:
                    event = json.loads(line)
                except ValueError:
                    self._fail("the agent sent malformed data")
                    return
                if not isinstance(event, dict):
                    self._fail("the agent sent malformed data")
                    return
                if event.get("event") == "ready":
                    self.pid = event.get("pid")
                    self._ready.set()
                    continue
                target = self._execs.get(event.get("id"))  # type: ignore[arg-type]
                if target is not None:
                    target.deliver(event)
        except (OSError, ValueError) as exc:
            self._fail(f"reading from the agent failed: {exc}")

    def _fail(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
        self._ready.set()
        for ex in list(self._execs.values()):
            ex.deliver({"event": "broken", "message": reason})

    def send(self, message: dict[str, Any]) -> None:
        if self.broken:
            raise AgentBroken(f"session is broken: {self.broken}")
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        assert self.proc.stdin is not None
        with self._lock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                self._fail(f"writing to the agent failed: {exc}")
                raise AgentBroken(f"session is broken: {self.broken}") from None

    def start(self, op: str, listener: Callable[[dict[str, Any]], None] | None = None, **fields: Any) -> Exec:
        with self._lock:
            ident = self._next
            self._next += 1
            ex = Exec(ident, listener)
            self._execs[ident] = ex
        self.send({"op": op, "id": ident, **fields})
        return ex

    def finish(self, ex: Exec) -> None:
        self._execs.pop(ex.id, None)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(OSError):
            os.close(self._status_read)


def ensure_agent(provider: LinuxProvider, sandbox: LinuxSandbox) -> SessionAgent:
    if sandbox.agent is None:
        sandbox.agent = SessionAgent(provider, sandbox)
    agent: SessionAgent = sandbox.agent
    return agent


def _exec_message(sandbox: LinuxSandbox, request: ExecRequest) -> dict[str, Any]:
    return {
        "argv": request.argv,
        "env": bwrap.base_env({**sandbox.spec.env, **request.env}),
        "cwd": request.cwd,
        "stdin": base64.b64encode(request.stdin).decode() if request.stdin is not None else None,
        "timeout": request.timeout_s,
    }


def _take(event: dict[str, Any], output: OutputCapture) -> ExecOutcome | None:
    """Apply one agent event; the outcome once the command has ended."""
    kind = event.get("event")
    if kind in ("stdout", "stderr"):
        output.write(kind, base64.b64decode(str(event.get("data", ""))))
        return None
    if kind == "exit":
        code = event.get("code")
        sig = event.get("signal")
        if isinstance(sig, int) and sig == 127 and code == 127:
            sig = None
        outcome = ExecOutcome(
            exit_code=code if isinstance(code, int) else None,
            signal=sig if isinstance(sig, int) else None,
            timed_out=bool(event.get("timed_out")),
        )
        if code == 127 and output.stderr.getvalue().startswith(b"agent: cannot run"):
            outcome.error_code = "job.command_not_found"
            outcome.error_message = output.stderr.text().strip().removeprefix("agent: ")
        return outcome
    if kind in ("error", "broken"):
        return ExecOutcome(exit_code=None, error_code="session.exec_failed", error_message=str(event.get("message")))
    return None


def session_exec(
    provider: LinuxProvider,
    sandbox: LinuxSandbox,
    request: ExecRequest,
    output: OutputCapture,
    cancel: CancelToken,
) -> ExecOutcome:
    agent = ensure_agent(provider, sandbox)
    ex = agent.start("exec", **_exec_message(sandbox, request))
    deadline = time.monotonic() + request.timeout_s + 5.0  # the agent enforces the timeout; this is a backstop
    killed = False
    try:
        while True:
            if cancel.cancelled and not killed:
                agent.send({"op": "kill", "id": ex.id})
                killed = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                agent.send({"op": "kill", "id": ex.id})
                return ExecOutcome(exit_code=None, timed_out=True)
            try:
                event = ex.events.get(timeout=min(remaining, 0.05 if not killed else 1.0))
            except queue.Empty:
                continue
            outcome = _take(event, output)
            if outcome is not None:
                return outcome
    finally:
        agent.finish(ex)


# Larger stdin is written by a thread (session_exec): a write the agent is slow to read must not
# block the event loop.
ASYNC_STDIN_LIMIT = 16 * 1024


async def session_exec_async(
    provider: LinuxProvider,
    sandbox: LinuxSandbox,
    request: ExecRequest,
    output: OutputCapture,
    cancel: CancelToken,
) -> ExecOutcome:
    """``session_exec`` awaited on an event loop: the agent's reader thread resolves a future, so no
    thread waits for the command."""
    if sandbox.agent is None or (request.stdin is not None and len(request.stdin) > ASYNC_STDIN_LIMIT):
        return await asyncio.to_thread(session_exec, provider, sandbox, request, output, cancel)
    agent: SessionAgent = sandbox.agent
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ExecOutcome] = loop.create_future()

    def settle(outcome: ExecOutcome) -> None:
        if not done.done():
            done.set_result(outcome)

    def on_event(event: dict[str, Any]) -> None:  # the reader thread
        outcome = _take(event, output)
        if outcome is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, outcome)

    ex = agent.start("exec", listener=on_event, **_exec_message(sandbox, request))

    def kill() -> None:
        with contextlib.suppress(AgentBroken):
            agent.send({"op": "kill", "id": ex.id})

    def kill_soon() -> None:  # the cancelling thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(kill)

    unsubscribe = cancel.on_cancel(kill_soon)
    try:
        # The agent enforces the timeout; this is a backstop.
        return await asyncio.wait_for(asyncio.shield(done), request.timeout_s + 5.0)
    except asyncio.TimeoutError:
        kill()
        return ExecOutcome(exit_code=None, timed_out=True)
    except asyncio.CancelledError:  # the caller gave up: the command does not run on unseen
        kill()
        raise
    finally:
        unsubscribe()
        agent.finish(ex)
