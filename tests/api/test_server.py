"""``orchestrator serve`` as a real uvicorn process: streaming, crashes, auth modes, load."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx

from orchestrator.settings import Settings
from tests.api.helpers import Server, make_token, server_env, wait_until, with_api
from tests.conftest import assert_nothing_left


def test_logs_stream_while_the_job_runs(server: Server, api_settings: Settings) -> None:
    token = make_token(api_settings, "alpha")
    server.start()
    script = "for i in 1 2 3; do echo line$i; sleep 0.4; done; echo done >&2"
    with server.client(token) as client:
        job = client.post("/v1/jobs", json={"command": ["sh", "-c", script]}).json()
        seen: list[tuple[str, float]] = []
        with client.stream("GET", f"/v1/jobs/{job['id']}/logs") as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    seen.append((f"{event}:{json.loads(line[6:]).get('text', '')}", time.monotonic()))
        finished = client.get(f"/v1/jobs/{job['id']}").json()
    kinds = [k for k, _ in seen]
    assert kinds[:3] == ["stdout:line1\n", "stdout:line2\n", "stdout:line3\n"] and "stderr:done\n" in kinds
    assert kinds[-1] == "end:" and finished["status"] == "completed"
    assert seen[2][1] - seen[0][1] > 0.5  # delivered as they were written, not all at the end
    server.kill(signal.SIGTERM)
    assert_nothing_left(api_settings)


def test_sigkill_during_a_job_then_restart(settings: Settings) -> None:
    api_settings = with_api(settings, workers_per_provider=1)
    token = make_token(api_settings, "alpha")
    server = Server(api_settings).start()
    try:
        with server.client(token) as client:
            running = client.post("/v1/jobs", json={"command": ["sleep", "60"]}).json()
            queued = client.post("/v1/jobs", json={"command": ["sh", "-c", "echo after restart"]}).json()
            session = client.post("/v1/sessions", json={"limits": {"memory_mb": 128}}).json()
            wait_until(lambda: client.get(f"/v1/jobs/{running['id']}").json()["status"] == "running")
        server.kill(signal.SIGKILL)
        server.start()
        with server.client(token) as client:
            crashed = client.get(f"/v1/jobs/{running['id']}").json()
            assert crashed["status"] == "error" and crashed["result"]["error"]["code"] == "orchestrator.restarted"
            assert client.get(f"/v1/jobs/{running['id']}/events").json()["data"][-1]["state"] == "error"
            ended = client.get(f"/v1/sessions/{session['id']}").json()
            assert ended["status"] == "error" and ended["error"]["code"] == "orchestrator.restarted"
            resumed = wait_until(lambda: (j := client.get(f"/v1/jobs/{queued['id']}").json())["result"] and j)
            assert resumed["status"] == "completed" and resumed["result"]["stdout"] == "after restart\n"
            assert_nothing_left(api_settings)
    finally:
        server.kill(signal.SIGTERM)
    assert_nothing_left(api_settings)


def test_without_tokens_only_loopback_is_served(settings: Settings) -> None:
    api_settings = with_api(settings)
    refused = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=server_env(api_settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 125 and "[auth.no_tokens]" in refused.stderr and "0.0.0.0" in refused.stderr
    server = Server(api_settings).start()  # loopback with no token: open to local callers, as documented
    try:
        with server.client() as client:
            job = client.post("/v1/jobs?wait=true", json={"command": ["true"]}).json()
            assert job["status"] == "completed" and job["tenant"] == "local"
    finally:
        server.kill(signal.SIGTERM)
    closed = with_api(settings, allow_unauthenticated_loopback=False)
    server = Server(closed).start()
    try:
        with server.client() as client:
            resp = client.get("/v1/jobs")
            assert resp.status_code == 401 and resp.json()["error"]["code"] == "auth.required"
    finally:
        server.kill(signal.SIGTERM)


def test_tokens_cli_and_a_public_bind(settings: Settings) -> None:
    api_settings = with_api(settings)
    env = server_env(api_settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "tokens", *args], env=env, capture_output=True, text=True, timeout=60
        )

    created = cli("create", "--tenant", "acme")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("orch_") and "cannot be shown again" in created.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert [(t["tenant"], t["revoked_at"]) for t in listed] == [("acme", None)]
    assert token not in cli("list").stdout
    db = (api_settings.data_dir / "orchestrator.db").read_bytes()
    assert token.encode() not in db  # only the hash is stored
    server = Server(api_settings, host="0.0.0.0").start()
    try:
        with server.client(token) as client:
            assert client.get("/v1/jobs").status_code == 200
            assert client.get("/v1/jobs", headers={"Authorization": ""}).status_code == 401
            assert cli("revoke", listed[0]["id"]).returncode == 0
            wait_until(lambda: client.get("/v1/jobs").status_code == 401, timeout=5)  # auth is cached for 2 s
    finally:
        server.kill(signal.SIGTERM)
    assert cli("revoke", listed[0]["id"]).returncode == 125


def test_fifty_concurrent_clients(settings: Settings) -> None:
    api_settings = with_api(settings, workers_per_provider=4)
    tokens = [make_token(api_settings, f"tenant{i % 5}") for i in range(5)]
    server = Server(api_settings).start()
    failures: list[str] = []
    ids: list[str] = []

    def client_run(n: int) -> None:
        try:
            with server.client(tokens[n % 5], timeout=120) as client:
                spec = {"command": ["sh", "-c", f"echo {n}"]}
                job = client.post("/v1/jobs?wait=true", json=spec, headers={"Idempotency-Key": f"k{n}"})
                body = job.json()
                if job.status_code != 201 or body["status"] != "completed" or body["result"]["stdout"] != f"{n}\n":
                    failures.append(f"{n}: {job.status_code} {job.text[:300]}")
                    return
                if client.get(f"/v1/jobs/{body['id']}").json()["tenant"] != f"tenant{n % 5}":
                    failures.append(f"{n}: wrong tenant")
                ids.append(body["id"])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(f"{n}: {type(exc).__name__}: {exc}")

    try:
        threads = [threading.Thread(target=client_run, args=(n,)) for n in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert failures == [] and len(set(ids)) == 50
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'orchestrator_jobs_finished_total{provider="linux",status="completed"} 50.0' in metrics
    finally:
        server.kill(signal.SIGTERM)
    assert_nothing_left(api_settings)


def test_sigterm_drains_and_leaves_nothing(server: Server, api_settings: Settings) -> None:
    token = make_token(api_settings, "alpha")
    server.start()
    with server.client(token) as client:
        session = client.post("/v1/sessions", json={"limits": {"memory_mb": 128}}).json()
        job = client.post("/v1/jobs", json={"command": ["sleep", "60"]}).json()
        wait_until(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running")
    started = time.monotonic()
    server.kill(signal.SIGTERM)
    assert time.monotonic() - started < 20
    assert_nothing_left(api_settings)
    server.start()
    with server.client(token) as client:
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
        assert client.get(f"/v1/sessions/{session['id']}").json()["error"]["code"] == "orchestrator.shutdown"
