"""The WebSocket terminal (``/v1/sessions/{id}/tty``) and ``up --server``, against the real app."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.sync.client import connect

from api.app import create_app
from api.routes import tty
from orchestrator.settings import Settings
from tests.api.helpers import auth, free_port, make_token, with_api
from tests.conftest import assert_nothing_left
from tests.up.conftest import PROMPT, cli, finish, spawn_up


@dataclass
class LiveServer:
    url: str
    token: str
    settings: Settings

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(self.token), timeout=60)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """create_app(settings) plus the tty router (exactly what api/app.py needs), served by uvicorn."""
    api_settings = with_api(settings)
    token = make_token(api_settings, "alpha")
    app = create_app(api_settings)
    app.include_router(tty.router)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", token, api_settings)
    server.should_exit = True
    thread.join(20)
    assert_nothing_left(api_settings)


def ws_url(server: LiveServer, session_id: str) -> str:
    return server.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/tty"


def read_until(ws: Any, needle: bytes, timeout: float = 15.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, bytes):
            seen += message
        else:
            event = json.loads(message)
            raise AssertionError(f"unexpected event {event} while waiting for {needle!r}; output: {seen!r}")
    return seen


def test_websocket_terminal_protocol(live_server: LiveServer) -> None:
    with live_server.client() as http:
        session = http.post("/v1/sessions", json={"limits": {"memory_mb": 256}}).json()
        url = ws_url(live_server, session["id"])
        with connect(url, additional_headers=auth(live_server.token)) as ws:
            ws.send(json.dumps({"type": "start", "argv": None, "env": {"TERM": "xterm"}, "rows": 20, "cols": 70}))
            assert json.loads(ws.recv(timeout=15)) == {"type": "started"}
            read_until(ws, b"(sandbox)")
            ws.send(b"stty size; echo $((40 + 2))\r")
            out = read_until(ws, b"42\r\n")
            assert b"20 70" in out
            ws.send(json.dumps({"type": "resize", "rows": 33, "cols": 101}))
            time.sleep(0.2)
            ws.send(b"stty size; touch /workspace/made-over-ws\r")
            read_until(ws, b"33 101")
            ws.send(b"sleep 30\r")
            time.sleep(0.3)
            ws.send(b"\x03")  # Ctrl-C reaches the job; the shell stays
            read_until(ws, b"(sandbox)")
            ws.send(b"exit 4\r")
            event: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                while True:
                    message = ws.recv(timeout=15)
                    if isinstance(message, str):
                        event = json.loads(message)
                        break
            assert event == {"type": "exit", "code": 4, "signal": None}
        # The session outlives its terminal: the file made over the socket is still there.
        files = http.get(f"/v1/sessions/{session['id']}/files").json()
        assert "made-over-ws" in [f["path"].rsplit("/", 1)[-1] for f in files["data"]]
        assert http.delete(f"/v1/sessions/{session['id']}").json()["status"] == "deleted"


@pytest.mark.parametrize(
    ("headers", "session", "close_code", "error_code"),
    [
        ({"Authorization": "Bearer orch_nope_nope"}, "real", 4401, "auth.invalid_token"),
        ({}, "real", 4401, "auth.required"),
        (None, "does-not-exist", 4404, "session.not_found"),
    ],
)
def test_websocket_terminal_refusals(
    live_server: LiveServer, headers: dict[str, str] | None, session: str, close_code: int, error_code: str
) -> None:
    with live_server.client() as http:
        real = http.post("/v1/sessions", json={}).json()["id"]
        target = real if session == "real" else session
        headers_ = auth(live_server.token) if headers is None else headers
        ws = connect(ws_url(live_server, target), additional_headers=headers_)
        messages: list[Any] = []
        with contextlib.suppress(Exception):
            ws.send(json.dumps({"type": "start", "rows": 24, "cols": 80}))
        with contextlib.suppress(Exception):
            while True:
                messages.append(ws.recv(timeout=15))
        ws.close()
        [event] = [json.loads(m) for m in messages]
        assert event["type"] == "error" and event["code"] == error_code, event
        assert ws.close_code == close_code
        http.delete(f"/v1/sessions/{real}")


def test_up_server_through_a_pty(live_server: LiveServer) -> None:
    child = spawn_up(live_server.settings, "--server", live_server.url, "--token", live_server.token, "--timeout", "60")
    try:
        child.expect("orchestrator up: session ([A-Za-z0-9_-]+) on provider linux \\(remote on ")
        session_id = child.match.group(1)
        child.expect("network: +off")
        child.expect(PROMPT)
        with live_server.client() as http:
            assert http.get(f"/v1/sessions/{session_id}").json()["status"] == "active"
        listing = cli(
            live_server.settings, "sessions", "list", "--server", live_server.url, "--token", live_server.token
        )
        assert session_id in listing.stdout, listing.stdout + listing.stderr
        child.sendline("echo remote-$((1 + 1)); hostname")
        child.expect("remote-2")
        child.expect("sandbox")
        child.expect(PROMPT)
        child.setwinsize(44, 120)
        time.sleep(0.3)
        child.sendline("stty size")
        child.expect("44 120")
        child.expect(PROMPT)
        child.sendline("sleep 30")
        time.sleep(0.5)
        child.sendintr()
        child.expect(PROMPT)
        child.sendline("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), 2)\" 2>&1 | tail -1")
        child.expect("(Network is unreachable|OSError)")
        child.expect(PROMPT)
        child.sendcontrol("d")
        child.expect(f"session {session_id} destroyed on .*\\(deleted\\); nothing left")
        assert finish(child) == (0, None)
        with live_server.client() as http:
            assert http.get(f"/v1/sessions/{session_id}").json()["status"] == "deleted"
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_up_server_sigterm_deletes_the_session(live_server: LiveServer) -> None:
    child = spawn_up(live_server.settings, "--server", live_server.url, "--token", live_server.token)
    try:
        child.expect("session ([A-Za-z0-9_-]+) on provider")
        session_id = child.match.group(1)
        child.expect(PROMPT)
        child.kill(15)
        child.expect("SIGTERM received")
        child.expect(f"session {session_id} destroyed")
        assert finish(child) == (143, None)
        with live_server.client() as http:
            assert http.get(f"/v1/sessions/{session_id}").json()["status"] == "deleted"
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_up_server_with_a_bad_token_fails_cleanly(live_server: LiveServer) -> None:
    proc = cli(live_server.settings, "up", "--server", live_server.url, "--token", "orch_bad_token")
    assert proc.returncode == 125
    assert "auth.invalid_token" in proc.stderr
