"""``orchestrator up --server URL``: a session on a remote control plane, its terminal over a WebSocket.

1. ``POST /v1/sessions`` creates the session (limits, mounts, env; mount
   sources are paths on the server's host);
2. ``/v1/sessions/{id}/tty`` carries the terminal (see ``api/routes/tty.py``);
3. ``DELETE /v1/sessions/{id}`` destroys it on every way out, and its answer
   is printed as the teardown report.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from orchestrator.errors import AuthError, OrchestratorError, SandboxError
from orchestrator.interactive.session import EXIT_FAILED, UpOptions, banner, end_message
from orchestrator.interactive.terminal import SignalTrap, Terminal, relay

API_TIMEOUT_S = 120.0


class SessionClient:
    """The few REST calls ``up`` and ``sessions`` make on a control plane."""

    def __init__(self, server: str, token: str | None, *, timeout_s: float = API_TIMEOUT_S):
        self.base = server.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise OrchestratorError(f"cannot reach {self.base}: {exc}", code="server.unreachable") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                error = body.get("error", body) if isinstance(body, dict) else {}
                code, message = str(error.get("code", "server.error")), str(error.get("message", response.text))
            except ValueError:
                code, message = "server.error", response.text[:500]
            cls = AuthError if response.status_code == 401 else OrchestratorError
            raise cls(f"{method} {path}: {response.status_code}: {message}", code=code)
        if response.status_code == 204 or not response.content:
            return {}
        return response.json()

    def create(self, options: UpOptions) -> dict[str, Any]:
        spec = options.spec
        body = {
            "provider": options.provider,
            "mounts": [m.model_dump() for m in spec.mounts],
            "env": dict(spec.env),
            "limits": spec.limits.model_dump(),
            "ttl_s": options.timeout_s,
            "idle_timeout_s": options.timeout_s,
            "labels": {"created_by": "orchestrator up"},
        }
        created: dict[str, Any] = self._call("POST", "/v1/sessions", json=body)
        return created

    def delete(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/sessions/{quote(session_id, safe='')}")
        return result

    def list(self) -> list[dict[str, Any]]:
        body = self._call("GET", "/v1/sessions")
        items = body.get("data", body.get("sessions", [])) if isinstance(body, dict) else body
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def tty_url(self, session_id: str) -> str:
        parts = urlsplit(self.base)
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
        path = parts.path.rstrip("/") + f"/v1/sessions/{quote(session_id, safe='')}/tty"
        return urlunsplit((scheme, parts.netloc, path, "", ""))


class WebSocketTerminal:
    """The client side of the tty protocol; output is fed into a pipe the relay selects on."""

    def __init__(self, url: str, token: str | None):
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            self.ws = connect(url, additional_headers=headers, open_timeout=30, max_size=2**22)
        except Exception as exc:  # noqa: BLE001 - websockets, OS and HTTP errors all mean "cannot attach"
            raise OrchestratorError(f"cannot open the terminal at {url}: {exc}", code="server.tty_failed") from None
        self.read_fd, self._write_fd = os.pipe2(os.O_CLOEXEC)
        self.end: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._receive, name="tty-receive", daemon=True)

    def start(self, argv: list[str] | None, env: dict[str, str], size: tuple[int, int]) -> None:
        self.ws.send(json.dumps({"type": "start", "argv": argv, "env": env, "rows": size[0], "cols": size[1]}))
        first = self.ws.recv(timeout=60)
        message = json.loads(first) if isinstance(first, str) else {}
        if message.get("type") != "started":
            raise OrchestratorError(
                f"the server refused the terminal: {message.get('message', message)}",
                code=str(message.get("code", "server.tty_failed")),
            )
        self._thread.start()

    def _receive(self) -> None:
        try:
            for message in self.ws:
                if isinstance(message, bytes):
                    view = memoryview(message)
                    while view:
                        view = view[os.write(self._write_fd, view) :]
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(message)
                    if isinstance(event, dict) and event.get("type") in ("exit", "error"):
                        self.end = event
        except Exception:  # noqa: BLE001,S110 - a dropped connection ends the session like an exit
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(self._write_fd)

    def send_input(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(Exception):
            self.ws.send(data)

    def resize(self, rows: int, cols: int) -> None:
        with self._lock, contextlib.suppress(Exception):
            self.ws.send(json.dumps({"type": "resize", "rows": rows, "cols": cols}))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self._thread.join(5) if self._thread.is_alive() else None
        with contextlib.suppress(OSError):
            os.close(self.read_fd)


def run_remote(server: str, token: str | None, options: UpOptions, terminal: Terminal) -> int:
    client = SessionClient(server, token)
    session_id: str | None = None
    code = EXIT_FAILED
    try:
        with SignalTrap() as trap:
            created = client.create(options)
            session_id = str(created.get("id") or "")
            if not session_id:
                raise SandboxError("the server did not return a session id", code="server.bad_response")
            options.session_id = session_id
            program = options.command or ["(default shell)"]
            tty = WebSocketTerminal(client.tty_url(session_id), token)
            try:
                env = {"TERM": os.environ.get("TERM") or "xterm"}
                tty.start(options.command, env, terminal.size())
                note = f" on {server}" if options.output is None else f" on {server} (--output is not supported)"
                terminal.notice(banner(options, isolation="remote" + note, program=program))
                with terminal.raw():
                    end = relay(
                        terminal,
                        trap,
                        output_fd=tty.read_fd,
                        send_input=tty.send_input,
                        on_resize=tty.resize,
                        deadline=time.monotonic() + options.timeout_s,
                        on_input_eof=lambda: tty.send_input(b"\x04"),
                    )
            finally:
                tty.close()
            message, forced = end_message(end, options.timeout_s)
            if message:
                terminal.notice("\n" + message + "\n")
            if forced is not None:
                code = forced
            elif tty.end is not None and tty.end.get("type") == "exit":
                code = int(tty.end.get("code") or 0)
            else:
                reason = (tty.end or {}).get("message", "the connection closed")
                terminal.notice(f"orchestrator up: the terminal ended: {reason}\n")
                code = EXIT_FAILED
    except OrchestratorError as exc:
        terminal.notice(f"orchestrator: error [{exc.code}]: {exc.message}\n")
        code = EXIT_FAILED
    finally:
        if session_id:
            try:
                report = client.delete(session_id)
                terminal.notice(f"orchestrator up: session {session_id} destroyed on {server}{_summary(report)}\n")
            except OrchestratorError as exc:
                terminal.notice(
                    f"orchestrator up: destroying session {session_id} failed [{exc.code}]: {exc.message}\n"
                )
                code = EXIT_FAILED
        client.close()
    return code


def _summary(report: dict[str, Any]) -> str:
    """The server's answer to DELETE (``SessionPublic``): its final status and error, if any."""
    error = report.get("error")
    if isinstance(error, dict):
        return f" ({report.get('status')}): [{error.get('code')}] {error.get('message')}"
    status = report.get("status")
    return f" ({status}); nothing left" if status == "deleted" else f" ({status})" if status else ""
