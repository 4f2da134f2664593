"""A pseudo-terminal program inside a live session sandbox, driven through the session agent.

This is what the control plane's WebSocket terminal (``/v1/sessions/{id}/tty``)
attaches to: the agent inside the sandbox owns the pty (it is the controlling
terminal of the program there), and this side only moves bytes, sizes and a
kill request. Events are normalised to::

    {"type": "output", "data": bytes}
    {"type": "exit", "code": int | None, "signal": int | None}
    {"type": "error", "code": str, "message": str}
"""

from __future__ import annotations

import base64
import contextlib
import queue
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.providers.linux import bwrap
from orchestrator.providers.linux.session import AgentBroken, Exec, SessionAgent, ensure_agent

if TYPE_CHECKING:
    from orchestrator.providers.linux import LinuxProvider, LinuxSandbox

#: Run bash with the sandbox prompt when the sandbox has it, else sh (decided inside, not on the host).
DEFAULT_SHELL_ARGV = [
    "/bin/sh",
    "-c",
    'if command -v bash >/dev/null 2>&1; then exec bash --rcfile "$1" -i; else exec sh -i; fi',
    "sh",
    f"{bwrap.INTERNAL_DIR}/bashrc",
]
MAX_DIMENSION = 10_000


class PtyChannel(Protocol):
    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None when none arrived within ``timeout`` seconds."""
        ...

    def send_input(self, data: bytes) -> None: ...

    def resize(self, rows: int, cols: int) -> None: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...


def clamp_size(rows: object, cols: object) -> tuple[int, int]:
    def one(value: object, default: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            return default
        return max(1, min(MAX_DIMENSION, value))

    return one(rows, 24), one(cols, 80)


class AgentPtyChannel:
    def __init__(self, agent: SessionAgent, ex: Exec):
        self.agent = agent
        self.exec = ex
        self.finished = False

    @classmethod
    def start(
        cls,
        provider: LinuxProvider,
        sandbox: LinuxSandbox,
        *,
        argv: list[str] | None,
        env: dict[str, str],
        rows: int,
        cols: int,
    ) -> AgentPtyChannel:
        from orchestrator.interactive.local import BASHRC, PS1

        rc = sandbox.internal / "bashrc"
        if not rc.exists():
            rc.write_text(BASHRC, encoding="utf-8")
            rc.chmod(0o644)
        agent = ensure_agent(provider, sandbox)
        full_env = bwrap.base_env({"TERM": "xterm", "PS1": PS1, **sandbox.spec.env, **env})
        ex = agent.start(
            "pty", argv=argv or DEFAULT_SHELL_ARGV, env=full_env, cwd=sandbox.spec.workdir, rows=rows, cols=cols
        )
        return cls(agent, ex)

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        try:
            event = self.exec.events.get(timeout=timeout)
        except queue.Empty:
            return None
        kind = event.get("event")
        if kind == "stdout" or kind == "stderr":
            try:
                return {"type": "output", "data": base64.b64decode(str(event.get("data", "")))}
            except ValueError:
                return {"type": "error", "code": "session.broken", "message": "malformed output from the agent"}
        if kind == "exit":
            self.finished = True
            code, sig = event.get("code"), event.get("signal")
            return {
                "type": "exit",
                "code": code if isinstance(code, int) else None,
                "signal": sig if isinstance(sig, int) else None,
            }
        if kind in ("error", "broken"):
            self.finished = True
            return {"type": "error", "code": "session.exec_failed", "message": str(event.get("message"))[:500]}
        return None  # "started" and anything unknown

    def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(AgentBroken):
            self.agent.send({**message, "id": self.exec.id})

    def send_input(self, data: bytes) -> None:
        self._send({"op": "input", "data": base64.b64encode(data).decode()})

    def resize(self, rows: int, cols: int) -> None:
        self._send({"op": "resize", "rows": rows, "cols": cols})

    def kill(self) -> None:
        if not self.finished:
            self._send({"op": "kill"})

    def close(self) -> None:
        self.kill()
        self.agent.finish(self.exec)
