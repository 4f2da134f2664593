"""Helpers for the control-plane tests: settings, tokens, and a real uvicorn server."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

from orchestrator.services.store import Store
from orchestrator.services.tokens import TokenService
from orchestrator.settings import ApiSettings, Settings
from tests.conftest import orchestrator_env

with warnings.catch_warnings():
    # Starlette's TestClient warns at import that it would rather use httpx2; httpx works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["TestClient"]

LOOPBACK_PEER = ("127.0.0.1", 50000)


def with_api(settings: Settings, **api: Any) -> Settings:
    base = {"workers_per_provider": 2, "session_sweep_interval_s": 0.1, "shutdown_grace_s": 2.0}
    return settings.model_copy(update={"api": ApiSettings(**{**base, **api})})


def make_token(settings: Settings, tenant: str) -> str:
    store = Store.from_settings(settings)
    try:
        store.create_schema()
        return TokenService(store).create(tenant).token
    finally:
        store.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


# --- a real server --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(settings: Settings) -> dict[str, str]:
    env = orchestrator_env(settings)
    for key, value in settings.api.model_dump().items():
        if value is not None and key not in ("host", "port"):
            env[f"ORCH_API__{key.upper()}"] = str(value)
    return env


class Server:
    """``orchestrator serve`` as a child process."""

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1"):
        self.settings = settings
        self.host = host
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(settings.data_dir).parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str, wait: bool = True) -> Server:
        Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "serve", "--host", self.host, "--port", str(self.port), *extra],
                env=server_env(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.log.read_text()[-2000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def client(self, token: str | None = None, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(token) if token else {}, timeout=timeout)
