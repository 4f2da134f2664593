"""``/v1/jobs`` against the real app and real sandboxes (in-process client)."""

from __future__ import annotations

import threading
import time

from api.app import create_app
from orchestrator.settings import Settings
from tests.api.helpers import LOOPBACK_PEER, TestClient, auth, make_token, wait_until, with_api
from tests.conftest import assert_nothing_left

JOB_FIELDS = {
    "id", "status", "tenant", "spec", "effective_limits", "created_at", "started_at", "finished_at", "result",
}  # fmt: skip


def test_submit_and_wait_returns_the_finished_job(app_client: TestClient) -> None:
    spec = {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"], "limits": {"memory_mb": 128}}
    resp = app_client.post("/v1/jobs?wait=true", json=spec)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert set(job) == JOB_FIELDS
    assert job["status"] == "completed" and job["tenant"] == "alpha"
    assert job["effective_limits"]["memory_mb"] == 128 and job["spec"]["command"] == spec["command"]
    assert job["result"]["exit_code"] == 3 and job["result"]["stdout"] == "out\n" and job["result"]["stderr"] == "err\n"
    assert job["started_at"] and job["finished_at"] and resp.headers["location"] == f"/v1/jobs/{job['id']}"
    assert app_client.get(f"/v1/jobs/{job['id']}").json() == job
    events = app_client.get(f"/v1/jobs/{job['id']}/events").json()["data"]
    states = [e["state"] for e in events]
    assert states == ["queued", "provisioning", "running", "collecting", "tearing_down", "completed"]
    logs = app_client.get(f"/v1/jobs/{job['id']}/logs")
    assert logs.headers["content-type"].startswith("text/event-stream")
    assert 'event: stdout\nid: 1\ndata: {"text":"out\\n"}' in logs.text and "event: end" in logs.text


def test_without_wait_the_job_is_queued_and_finishes(app_client: TestClient) -> None:
    job = app_client.post("/v1/jobs", json={"command": ["true"]}).json()
    assert job["status"] in ("queued", "provisioning", "running", "collecting", "tearing_down", "completed")
    done = wait_until(lambda: (j := app_client.get(f"/v1/jobs/{job['id']}").json())["status"] == "completed" and j)
    assert done["result"]["exit_code"] == 0
    timed = app_client.post("/v1/jobs?wait=0.2", json={"command": ["sleep", "5"]}).json()
    assert timed["status"] != "completed" and timed["result"] is None
    app_client.delete(f"/v1/jobs/{timed['id']}")


def test_validation_errors_carry_the_cli_codes(app_client: TestClient) -> None:
    cases = [
        ({"command": ["x"], "mounts": [{"source": "/a\u0000", "target": "/x"}]}, 422, "spec.invalid_mount"),
        ({"command": ["x"], "limits": {"memory_mb": 100_000}}, 422, "spec.limit_exceeds_maximum"),
        ({"command": ["x"], "files": [{"path": "../escape", "content": ""}]}, 422, "spec.invalid_path"),
        ({"command": ["x"], "script": "echo"}, 422, "spec.invalid_command"),
        ({"command": ["x"], "provider": "nope"}, 422, "provider.unknown"),
        ({"command": ["x"], "bogus": 1}, 422, "spec.invalid"),
    ]
    for body, status, code in cases:
        resp = app_client.post("/v1/jobs", json=body)
        assert resp.status_code == status, (body, resp.text)
        error = resp.json()["error"]
        assert error["code"] == code and set(error) == {"code", "message", "details"}, error
    resp = app_client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "spec.malformed"
    resp = app_client.get("/v1/jobs/does-not-exist")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "job.not_found"


def test_request_size_limit(settings: Settings) -> None:
    limited = with_api(settings, max_request_bytes=4096)
    token = make_token(limited, "alpha")
    with TestClient(create_app(limited), client=LOOPBACK_PEER, headers=auth(token)) as client:
        resp = client.post("/v1/jobs", json={"command": ["true"], "env": {"A": "x" * 10_000}})
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "request.too_large"


def test_idempotent_retries_return_the_same_job(app_client: TestClient) -> None:
    spec = {"command": ["sh", "-c", "echo once"]}
    key = {"Idempotency-Key": "retry-1"}
    results: list[dict[str, object]] = []

    def post() -> None:
        results.append(app_client.post("/v1/jobs", json=spec, headers=key).json())

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["id"] for r in results}) == 1, results
    again = app_client.post("/v1/jobs?wait=true", json=spec, headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == results[0]["id"] and again.json()["status"] == "completed"
    assert len(app_client.get("/v1/jobs").json()["data"]) == 1
    events = app_client.get(f"/v1/jobs/{results[0]['id']}/events").json()["data"]
    assert [e["state"] for e in events].count("provisioning") == 1  # it ran exactly once
    conflict = app_client.post("/v1/jobs", json={"command": ["sh", "-c", "echo twice"]}, headers=key)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency.key_reused"


def test_cancel_mid_run_tears_the_sandbox_down(app_client: TestClient, api_settings: Settings) -> None:
    job = app_client.post("/v1/jobs", json={"command": ["sleep", "60"]}).json()
    wait_until(lambda: app_client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running")
    started = time.monotonic()
    resp = app_client.delete(f"/v1/jobs/{job['id']}")
    assert resp.status_code == 200 and time.monotonic() - started < 5
    cancelled = resp.json()
    assert cancelled["status"] == "cancelled" and cancelled["result"]["error"]["code"] == "job.cancelled"
    assert_nothing_left(api_settings)
    assert app_client.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"  # idempotent


def test_two_tenants_see_only_their_own_jobs(app_client: TestClient, api_settings: Settings) -> None:
    mine = app_client.post("/v1/jobs?wait=true", json={"command": ["true"]}).json()
    other = auth(make_token(api_settings, "beta"))
    for method, path in (
        ("GET", f"/v1/jobs/{mine['id']}"),
        ("DELETE", f"/v1/jobs/{mine['id']}"),
        ("GET", f"/v1/jobs/{mine['id']}/events"),
        ("GET", f"/v1/jobs/{mine['id']}/logs"),
    ):
        resp = app_client.request(method, path, headers=other)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "job.not_found", (method, path)
    assert app_client.get("/v1/jobs", headers=other).json()["data"] == []
    theirs = app_client.post("/v1/jobs", json={"command": ["true"]}, headers=other).json()
    assert theirs["tenant"] == "beta"
    assert [j["id"] for j in app_client.get("/v1/jobs").json()["data"]] == [mine["id"]]
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer orch_nope_nope"}, {"Authorization": "Basic x"}):
        resp = app_client.get("/v1/jobs", headers=headers)
        assert resp.status_code == 401 and resp.json()["error"]["code"].startswith("auth."), headers
    wait_until(lambda: app_client.get(f"/v1/jobs/{theirs['id']}", headers=other).json()["status"] == "completed")


def test_list_filters_and_paginates(app_client: TestClient) -> None:
    ids = [
        app_client.post("/v1/jobs?wait=true", json={"command": ["sh", "-c", f"exit {i}"]}).json()["id"]
        for i in range(5)
    ]
    page = app_client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["next_cursor"]
    rest = app_client.get("/v1/jobs", params={"limit": 10, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["data"]] == ids[::-1][2:] and rest["next_cursor"] is None
    assert len(app_client.get("/v1/jobs", params={"status": "completed"}).json()["data"]) == 5
    assert app_client.get("/v1/jobs", params={"status": "cancelled"}).json()["data"] == []


def test_artifacts_are_served(app_client: TestClient) -> None:
    spec = {"command": ["sh", "-c", "mkdir out; echo data > out/r.txt"], "artifacts": ["out/*.txt"]}
    job = app_client.post("/v1/jobs?wait=true", json=spec).json()
    assert [a["path"] for a in job["result"]["artifacts"]] == ["out/r.txt"]
    resp = app_client.get(f"/v1/jobs/{job['id']}/artifacts/out/r.txt")
    assert resp.status_code == 200 and resp.content == b"data\n"
    assert app_client.get(f"/v1/jobs/{job['id']}/artifacts/out/missing").status_code == 404


def test_a_full_queue_answers_503_with_retry_after(settings: Settings) -> None:
    small = with_api(settings, workers_per_provider=1, queue_limit=1)
    token = make_token(small, "alpha")
    with TestClient(create_app(small), client=LOOPBACK_PEER, headers=auth(token)) as client:
        running = client.post("/v1/jobs", json={"command": ["sleep", "30"]}).json()
        wait_until(lambda: client.get(f"/v1/jobs/{running['id']}").json()["status"] == "running")
        queued = client.post("/v1/jobs", json={"command": ["true"]}).json()
        assert queued["status"] == "queued"
        refused = client.post("/v1/jobs", json={"command": ["true"]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "capacity.queue_full"
        metrics = client.get("/metrics").text
        assert 'orchestrator_queue_depth{provider="linux"} 1.0' in metrics
        assert 'orchestrator_live_sandboxes{kind="job",provider="linux"} 1.0' in metrics
        assert client.delete(f"/v1/jobs/{queued['id']}").json()["status"] == "cancelled"
        assert client.delete(f"/v1/jobs/{running['id']}").json()["status"] == "cancelled"
        assert 'orchestrator_jobs_finished_total{provider="linux",status="cancelled"}' in client.get("/metrics").text
    assert_nothing_left(small)


def test_providers_health_and_readiness(app_client: TestClient) -> None:
    providers = {p["name"]: p for p in app_client.get("/v1/providers").json()["data"]}
    linux = providers["linux"]
    assert linux["available"] and linux["default"] and linux["capabilities"]["sessions"]
    assert linux["max_limits"]["memory_mb"] == 8192 and linux["capacity"]["workers"] == 2
    assert app_client.get("/healthz").json()["status"] == "ok"
    assert app_client.get("/readyz").json()["status"] == "ok"
