"""``/v1/sessions``: live sandboxes, exec, workspace files, expiry (in-process client)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from api.app import create_app
from orchestrator.settings import Settings
from tests.api.helpers import LOOPBACK_PEER, TestClient, auth, make_token, wait_until, with_api
from tests.conftest import assert_nothing_left


def _session(client: TestClient, **spec: object) -> str:
    resp = client.post("/v1/sessions", json={"limits": {"memory_mb": 256}, **spec})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "active" and body["effective_limits"]["memory_mb"] == 256
    return str(body["id"])


def test_commands_share_one_sandbox(app_client: TestClient, api_settings: Settings) -> None:
    sid = _session(app_client, env={"BASE": "b"})
    run = app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["sh", "-c", "echo 41 > n"]}).json()
    assert run["exit_code"] == 0 and run["error"] is None
    spec = {"command": ["sh", "-c", "echo $(( $(cat n) + 1 )) $BASE $X; cat; exit 4"], "env": {"X": "x"}, "stdin": "in"}
    run = app_client.post(f"/v1/sessions/{sid}/exec", json=spec).json()
    assert (run["exit_code"], run["stdout"]) == (4, "42 b x\nin")
    run = app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["sleep", "10"], "timeout_s": 0.3}).json()
    assert run["timed_out"]
    run = app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["/no/such"]}).json()
    assert run["error"]["code"] == "job.command_not_found"
    bad = app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["a\u0000b"]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "spec.invalid_command"
    with app_client.stream(
        "POST", f"/v1/sessions/{sid}/exec?stream=true", json={"command": ["sh", "-c", "echo a; sleep 0.2; echo b >&2"]}
    ) as resp:
        text = resp.read().decode()
    assert text.index("event: stdout") < text.index("event: stderr") < text.index("event: exit")
    assert '"exit_code":0' in text
    deleted = app_client.delete(f"/v1/sessions/{sid}").json()
    assert deleted["status"] == "deleted" and deleted["finished_at"]
    assert_nothing_left(api_settings)
    gone = app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["true"]})
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "session.not_active"


def test_workspace_files(app_client: TestClient) -> None:
    sid = _session(app_client)
    put = app_client.put(f"/v1/sessions/{sid}/files/src/main.py?mode=755", content=b"print('hi')\n")
    assert put.status_code == 201 and put.json() == {**put.json(), "path": "src/main.py", "size": 12, "mode": 0o755}
    run = app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["sh", "-c", "ls -l src; echo made > out.txt"]})
    assert "-rwxr-xr-x" in run.json()["stdout"]
    assert app_client.get(f"/v1/sessions/{sid}/files/out.txt").content == b"made\n"
    top = app_client.get(f"/v1/sessions/{sid}/files").json()["data"]
    assert {(e["path"], e["type"]) for e in top} == {("src", "directory"), ("out.txt", "file")}
    inner = app_client.get(f"/v1/sessions/{sid}/files", params={"path": "src"}).json()["data"]
    assert [e["path"] for e in inner] == ["src/main.py"]
    assert app_client.get(f"/v1/sessions/{sid}/files/missing").status_code == 404


def test_paths_never_escape_the_workspace(app_client: TestClient) -> None:
    sid = _session(app_client)
    links = "ln -s /etc/passwd link; ln -s /etc linkdir; mkdir d; ln -s /tmp d/up"
    app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["sh", "-c", links]})
    for path in ("%2E%2E/etc/passwd", "/etc/passwd", "link", "linkdir/passwd", "d/up/x"):
        resp = app_client.get(f"/v1/sessions/{sid}/files/{path}")
        assert resp.status_code in (404, 422), (path, resp.status_code)
        if resp.status_code == 422:
            assert resp.json()["error"]["code"] == "spec.invalid_path", path
    for path in ("linkdir/evil", "d/up/evil", "%2E%2E/evil"):
        resp = app_client.put(f"/v1/sessions/{sid}/files/{path}", content=b"x")
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "spec.invalid_path", path
    resp = app_client.put(f"/v1/sessions/{sid}/files/link", content=b"replaced")
    assert resp.status_code == 201  # the symlink itself is replaced, its target untouched
    assert "root:" in open("/etc/passwd").read()
    listing = app_client.get(f"/v1/sessions/{sid}/files", params={"path": "linkdir"})
    assert listing.status_code == 422


def test_upload_size_limit(settings: Settings) -> None:
    small = with_api(settings, max_upload_bytes=1000)
    token = make_token(small, "alpha")
    with TestClient(create_app(small), client=LOOPBACK_PEER, headers=auth(token)) as client:
        sid = _session(client)
        ok = client.put(f"/v1/sessions/{sid}/files/a", content=b"x" * 1000)
        assert ok.status_code == 201

        def chunks() -> object:
            for _ in range(5):
                yield b"y" * 600

        big = client.put(f"/v1/sessions/{sid}/files/b", content=chunks())  # streamed, no Content-Length
        assert big.status_code == 413 and big.json()["error"]["code"] == "upload.too_large"
        declared = client.put(f"/v1/sessions/{sid}/files/c", content=b"z" * 1001)
        assert declared.status_code == 413
        names = [e["path"] for e in client.get(f"/v1/sessions/{sid}/files").json()["data"]]
        assert names == ["a"]  # nothing partial left behind
    assert_nothing_left(small)


def test_ttl_and_idle_expiry(app_client: TestClient, api_settings: Settings) -> None:
    ttl = _session(app_client, ttl_s=1.0)
    idle = _session(app_client, idle_timeout_s=0.6)
    busy = app_client.post(f"/v1/sessions/{idle}/exec", json={"command": ["sleep", "1"]}).json()
    assert busy["exit_code"] == 0  # a running command keeps an idle session alive
    ended = wait_until(
        lambda: all(app_client.get(f"/v1/sessions/{s}").json()["status"] == "expired" for s in (ttl, idle)), 10
    )
    assert ended
    assert app_client.get(f"/v1/sessions/{ttl}").json()["error"]["code"] == "session.expired"
    assert app_client.get(f"/v1/sessions/{idle}").json()["error"]["code"] == "session.idle"
    assert_nothing_left(api_settings)
    assert 'orchestrator_sessions_ended_total{provider="linux",reason="session.expired"} 1.0' in (
        app_client.get("/metrics").text
    )


def test_sessions_belong_to_their_tenant(app_client: TestClient, api_settings: Settings) -> None:
    sid = _session(app_client)
    other = auth(make_token(api_settings, "beta"))
    for method, path, body in (
        ("GET", f"/v1/sessions/{sid}", None),
        ("POST", f"/v1/sessions/{sid}/exec", {"command": ["true"]}),
        ("GET", f"/v1/sessions/{sid}/files", None),
        ("GET", f"/v1/sessions/{sid}/files/x", None),
        ("DELETE", f"/v1/sessions/{sid}", None),
    ):
        resp = app_client.request(method, path, json=body, headers=other)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "session.not_found", (method, path)
    assert app_client.put(f"/v1/sessions/{sid}/files/x", content=b"x", headers=other).status_code == 404
    assert app_client.get("/v1/sessions", headers=other).json()["data"] == []
    assert [s["id"] for s in app_client.get("/v1/sessions", params={"status": "active"}).json()["data"]] == [sid]


def test_session_limits_are_checked(app_client: TestClient) -> None:
    too_long = app_client.post("/v1/sessions", json={"ttl_s": 100_000})
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "spec.limit_exceeds_maximum"
    too_big = app_client.post("/v1/sessions", json={"limits": {"cpus": 64}})
    assert too_big.status_code == 422 and too_big.json()["error"]["code"] == "spec.limit_exceeds_maximum"
    started = time.monotonic()
    assert app_client.post("/v1/sessions", json={"command": ["x"]}).json()["error"]["code"] == "spec.invalid"
    assert time.monotonic() - started < 5


def test_session_env_is_checked_like_a_job_env(app_client: TestClient) -> None:
    resp = app_client.post("/v1/sessions", json={"env": {"": "x"}})  # found by schemathesis: was a 500
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "spec.invalid_env"


def test_activity_is_persisted_by_the_sweeper(app_client: TestClient) -> None:
    """A restart must see when each session was last used: the sweeper writes it for all at once."""
    services = app_client.app.state.services  # type: ignore[attr-defined]
    ids = [_session(app_client) for _ in range(2)]
    before = {sid: services.store.get_session(sid).last_used_at for sid in ids}
    time.sleep(0.05)
    for sid in ids:
        assert app_client.post(f"/v1/sessions/{sid}/exec", json={"command": ["true"]}).json()["exit_code"] == 0
    services.sessions.sweep()
    after = {sid: services.store.get_session(sid).last_used_at for sid in ids}
    assert all(after[sid] > before[sid] for sid in ids), (before, after)
    for sid in ids:
        app_client.delete(f"/v1/sessions/{sid}")


def test_the_exec_fast_path_answers_as_the_documented_route(
    app_client: TestClient, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``api/fastpath.py`` serves plain exec calls; every answer must be the documented route's."""
    import api.app
    import api.fastpath

    monkeypatch.setattr(api.app, "ExecFastPath", lambda app: app)  # an app without the fast path
    served: list[object] = []
    original = api.fastpath.exec_params
    monkeypatch.setattr(api.fastpath, "exec_params", lambda body: served.append(body) or original(body))
    token = make_token(api_settings, "beta")
    with TestClient(api.app.create_app(api_settings), client=LOOPBACK_PEER, headers=auth(token)) as plain:
        ids = {}
        for name, client in (("fast", app_client), ("plain", plain)):
            ids[name] = client.post("/v1/sessions", json={}).json()["id"]
        calls: list[tuple[str, dict[str, Any] | bytes, dict[str, str]]] = [
            ("{sid}/exec", {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}, {}),
            ("{sid}/exec", {"command": ["cat"], "stdin": "aGk=", "env": {"A": "1"}, "cwd": "/workspace"}, {}),
            ("{sid}/exec", {"command": ["a\u0000b"]}, {}),  # the job spec's own check
            ("{sid}/exec", {"command": []}, {}),  # body validation
            ("{sid}/exec", {"command": ["true"], "extra": 1}, {}),
            ("{sid}/exec", b"{not json", {"content-type": "application/json"}),
            ("{sid}/exec", {"command": ["true"], "stdin": "%%%"}, {}),
            ("no-such-session/exec", {"command": ["true"]}, {}),
            ("bad id!/exec", {"command": ["true"]}, {}),
            ("{sid}/exec", {"command": ["true"]}, {"authorization": "Bearer wrong"}),
            ("{sid}/exec", {"command": ["true"]}, {"content-type": "text/plain"}),
        ]
        for path, body, headers in calls:
            answers = []
            for name, client in (("fast", app_client), ("plain", plain)):
                url = "/v1/sessions/" + path.format(sid=ids[name])
                if isinstance(body, bytes):
                    resp = client.post(url, content=body, headers=headers)
                elif "content-type" in headers:
                    resp = client.post(url, content=json.dumps(body), headers=headers)
                else:
                    resp = client.post(url, json=body, headers=headers)
                doc = resp.json()
                doc.pop("duration_ms", None)
                if isinstance(doc.get("error"), dict):
                    doc["error"]["message"] = doc["error"]["message"].replace(ids[name], "SID")
                answers.append((resp.status_code, resp.headers["content-type"], doc))
            assert answers[0] == answers[1], (path, body, headers)
        assert len(served) == 5  # the fast path answered every call that reached a service, itself
        for name, client in (("fast", app_client), ("plain", plain)):
            client.delete(f"/v1/sessions/{ids[name]}")
