"""``--server``: the control-plane client, against fakes and (when present) the real app."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.batch.formats import Sample
from orchestrator.batch.remote import RemoteError, RemoteExecutor
from orchestrator.batch.runner import BatchOptions, FatalBatchError, run_batch
from orchestrator.cancel import CancelToken
from orchestrator.settings import Settings
from orchestrator.spec import parse_job_spec
from tests.batch.conftest import CORRECT, PROBLEM, WRONG, read_jsonl, run_batch_cli, write_jsonl

SPEC = parse_job_spec({"script": "print(1)", "interpreter": ["python3"]})


def job_result(exit_code: int) -> dict[str, Any]:
    return {"id": "j1", "status": "completed", "exit_code": exit_code, "stdout": "", "provider": "linux"}


def executor(handler: Any, **kw: Any) -> RemoteExecutor:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return RemoteExecutor("http://plane/", "tok", client=client, max_retry_after_s=0.01, **kw)


def test_posts_the_spec_with_the_token_and_reads_the_result() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "j1", "status": "completed", "result": job_result(0)})

    result = executor(handler).run(SPEC, CancelToken())
    assert result.exit_code == 0
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/v1/jobs" and request.url.params["wait"] == "true"
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content)["script"] == "print(1)"


def test_queue_full_waits_for_retry_after_then_gives_up_as_infra() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"error": {"code": "capacity.exhausted"}})
        return httpx.Response(201, json={"id": "j", "status": "completed", "result": job_result(1)})

    assert executor(handler).run(SPEC, CancelToken()).exit_code == 1 and calls["n"] == 3

    def always_full(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "0"})

    records: list[dict[str, Any]] = []
    sample = Sample(id="s", task="t", program="pass")
    opts = BatchOptions(parallel=1, retries=1, retry_backoff_s=0.0)
    run_batch([sample], executor(always_full, queue_retries=2), opts, on_record=records.append)
    assert records[0]["verdict"] == "infra_error" and records[0]["error_code"] == "remote.queue_full"


def test_polls_when_the_wait_ends_before_the_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"id": "j9", "status": "running", "result": None})
        assert request.url.path == "/v1/jobs/j9"
        return httpx.Response(200, json={"id": "j9", "status": "completed", "result": job_result(0)})

    assert executor(handler, poll_interval_s=0.0).run(SPEC, CancelToken()).exit_code == 0


def test_errors_are_infra_and_bad_credentials_stop_everything() -> None:
    def server_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": {"code": "spec.limit_exceeds_maximum", "message": "too big"}})

    with pytest.raises(RemoteError) as info:
        executor(server_error).run(SPEC, CancelToken())
    assert info.value.code == "remote.spec.limit_exceeds_maximum"

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(RemoteError) as info:
        executor(unreachable).run(SPEC, CancelToken())
    assert info.value.code == "remote.unreachable"

    def unauthorized(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "auth.invalid_token", "message": "no"}})

    with pytest.raises(FatalBatchError):
        executor(unauthorized).run(SPEC, CancelToken())


class FakePlane(BaseHTTPRequestHandler):
    """Judges HumanEval's add(): exit 0 when the program contains 'a + b'."""

    full_once: set[str] = set()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != "Bearer sekret":
            return self._send(401, {"error": {"code": "auth.invalid_token", "message": "bad", "details": {}}})
        if body["script"] not in self.full_once:  # the queue is full the first time each program comes
            self.full_once.add(body["script"])
            return self._send(503, {"error": {"code": "capacity.exhausted", "message": "full", "details": {}}})
        code = 0 if "a + b" in body["script"] else 1
        self._send(201, {"id": "j", "status": "completed", "result": job_result(code)})

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def plane() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePlane)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cli_with_server(settings: Settings, tmp_path: Path, plane: str) -> None:
    samples = write_jsonl(tmp_path / "s.jsonl", [{**PROBLEM, "completion": c} for c in (CORRECT, WRONG)])
    out = tmp_path / "out.jsonl"
    env_token = ("--token", "sekret")
    proc = run_batch_cli(settings, str(samples), "-o", str(out), "--format", "humaneval", "--server", plane, *env_token)
    assert proc.returncode == 0, proc.stderr
    assert sorted((r["id"], r["verdict"]) for r in read_jsonl(out)) == [("T/0#0", "passed"), ("T/0#1", "failed")]
    proc = run_batch_cli(settings, str(samples), "-o", str(out), "--format", "humaneval", "--server", plane)
    assert proc.returncode == 125 and "auth.invalid_token" in proc.stderr


def test_against_the_real_app(settings: Settings, no_leaks: None) -> None:
    import socket

    import uvicorn

    from api.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        remote = RemoteExecutor(f"http://127.0.0.1:{sock.getsockname()[1]}", None)
        records: list[dict[str, Any]] = []
        samples = [Sample(id=str(c), task="t", spec={"command": ["sh", "-c", f"exit {c}"]}) for c in (0, 3)]
        run_batch(samples, remote, BatchOptions(parallel=2, retries=0), on_record=records.append)
        remote.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert sorted((r["id"], r["verdict"], r["exit_code"]) for r in records) == [("0", "passed", 0), ("3", "failed", 3)]
