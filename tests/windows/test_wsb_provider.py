"""The wsb provider's logic against a ReplayTransport: ordering, retries, locks, stale cleanup, teardown."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cancel import CancelToken
from orchestrator.errors import (
    CancelledError,
    HostUnreachableError,
    SandboxCreateError,
    SandboxError,
    ScriptError,
    SpecError,
    TransportTimeoutError,
)
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecRequest, Provider
from orchestrator.providers.wsb import RUNNER_COMMAND, ControlPlaneLock, WsbProvider, WsbSandbox
from orchestrator.spec import parse_job_spec
from orchestrator.windows.replay import ReplayMismatch, ReplayTransport
from orchestrator.windows.scripts import render_script
from tests.windows.helpers import RECORDINGS, SANDBOX_GUID, js, provider

ROOT = "C:\\ProgramData\\Orchestrator\\wsb\\job-1"
OUT = ROOT + "\\out"
WSB = "C:\\Users\\orch\\AppData\\Local\\Microsoft\\WindowsApps\\wsb.exe"
CLASSIC = "C:\\Windows\\System32\\WindowsSandbox.exe"
STOPPED = {"remaining_ids": [], "remaining_processes": []}


def result_doc(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "version": 1,
        "exit_code": 0,
        "timed_out": False,
        "error": None,
        "duration_ms": 10,
        "stdout_bytes": 6,
        "stderr_bytes": 0,
        "artifacts": [],
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def outputs(transport: ReplayTransport, result: bytes | None = None, stdout: bytes = b"hello\n") -> None:
    transport.files[OUT + "\\result.json"] = result if result is not None else result_doc()
    transport.files[OUT + "\\stdout.txt"] = stdout
    transport.files[OUT + "\\stderr.txt"] = b""


def start(t: ReplayTransport, *, wsb: bool = True, stale: bool = False) -> None:
    t.add("windows-sandbox/acquire-lock.ps1", js({"acquired": True, "holder": "me", "broke_stale": False}))
    probe = {"wsb": WSB if wsb else None, "classic": CLASSIC, "ids": [], "processes": []}
    if stale:
        probe.update(ids=["11111111-2222-3333-4444-555555555555"], processes=[{"name": "WindowsSandbox", "id": 7}])
    t.add("windows-sandbox/probe.ps1", js(probe))
    if stale:
        t.add("windows-sandbox/stop.ps1", js(STOPPED))
    t.add("windows-sandbox/prepare.ps1", js({"root": ROOT}))
    if wsb:
        t.add("windows-sandbox/launch-wsb.ps1", js({"id": SANDBOX_GUID}))
        t.add("windows-sandbox/exec-wsb.ps1", js({"pid": 4242}))
    else:
        t.add("windows-sandbox/launch-classic.ps1", js({"pid": 99}))


def poll(t: ReplayTransport, started: bool, done: bool, running: bool = True) -> None:
    t.add("windows-sandbox/poll.ps1", js({"started": started, "done": done, "exec_running": running}))


def finish(t: ReplayTransport) -> None:
    t.add("windows-sandbox/stop.ps1", js(STOPPED))
    t.add("windows-sandbox/release-lock.ps1", js({"released": True}))


def request(**overrides: Any) -> ExecRequest:
    values: dict[str, Any] = {"argv": ["python.exe", "-c", "print('hello')"], "env": {}, "cwd": "/workspace"}
    values.update(overrides)
    values.setdefault("timeout_s", 60.0)
    return ExecRequest(**values)


SPEC = parse_job_spec({"command": ["python.exe"], "artifacts": ["out/*"]})


def run(p: WsbProvider, req: ExecRequest | None = None, cancel: CancelToken | None = None) -> tuple[Any, Any, Any]:
    box = p.create("job-1", SPEC)
    out = OutputCapture(1024)
    outcome = p.exec(box, req or request(), out, cancel or CancelToken())
    return box, outcome, out


def test_provider_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(provider(tmp_path, ReplayTransport()), Provider)


def test_happy_path_from_recording_in_exact_order(tmp_path: Path) -> None:
    t = ReplayTransport.from_file(RECORDINGS / "wsb-happy-path.json", strict_order=True)
    p = provider(tmp_path, t)
    box, outcome, out = run(p)
    assert outcome.exit_code == 0 and not outcome.timed_out and outcome.error_code is None
    assert out.stdout.text() == "hello\n"
    dest = tmp_path / "artifacts"
    artifacts = p.collect(box, ["out/*"], dest, 1 << 20)
    assert [(a.path, a.size) for a in artifacts] == [("out/report.json", 11)]
    assert (dest / "out" / "report.json").read_bytes() == b'{"ok": true'
    report = p.destroy(box)
    assert report.clean and t.pending() == []
    runs = [c.script for c in t.calls if not c.script.startswith("copy_")]
    assert runs[:5] == [
        "windows-sandbox/acquire-lock.ps1",
        "windows-sandbox/probe.ps1",
        "windows-sandbox/prepare.ps1",
        "windows-sandbox/launch-wsb.ps1",
        "windows-sandbox/exec-wsb.ps1",
    ]
    # Uploads happen after prepare and before launch.
    names = t.script_names()
    uploads = [i for i, n in enumerate(names) if n == "copy_to"]
    assert names.index("windows-sandbox/prepare.ps1") < min(uploads)
    assert max(uploads) < names.index("windows-sandbox/launch-wsb.ps1")
    assert set(t.uploaded) == {ROOT + "\\job\\job.json", ROOT + "\\job\\runner.ps1"}
    # wsb path: inline config without a logon command; the runner is started by exec as System.
    config = t.calls_to("windows-sandbox/launch-wsb.ps1")[0].parameters["Config"]
    assert "\n" not in config and "<LogonCommand>" not in config and "<Networking>Disable</Networking>" in config
    exec_call = t.calls_to("windows-sandbox/exec-wsb.ps1")[0].parameters
    assert exec_call == {"WsbPath": WSB, "Id": SANDBOX_GUID, "Command": RUNNER_COMMAND}
    assert not ControlPlaneLock(p.lock_path).path.read_text()  # the lock file exists and is released
    assert t.calls_to("windows-sandbox/cleanup.ps1")[0].parameters == {
        "StagingRoot": "C:\\ProgramData\\Orchestrator\\wsb",
        "Root": ROOT,
    }


def test_classic_path_uses_wsb_file_with_logon_command_and_kills_processes(tmp_path: Path) -> None:
    t = ReplayTransport(strict_order=True)
    start(t, wsb=False)
    poll(t, True, True)
    finish(t)
    outputs(t)
    _, outcome, _ = run(provider(tmp_path, t))
    assert outcome.exit_code == 0
    wsb_file = t.uploaded[ROOT + "\\job\\sandbox.wsb"].decode()
    assert f"<Command>{RUNNER_COMMAND}</Command>" in wsb_file
    assert t.calls_to("windows-sandbox/launch-classic.ps1")[0].parameters == {
        "ExePath": CLASSIC,
        "ConfigPath": ROOT + "\\job\\sandbox.wsb",
    }
    stop = t.calls_to("windows-sandbox/stop.ps1")[0]
    assert "Stop-Process" in stop.text  # the kill_processes variant
    assert stop.parameters == {"WsbPath": "", "Ids": []}


def test_stale_sandbox_is_stopped_before_the_launch(tmp_path: Path) -> None:
    t = ReplayTransport(strict_order=True)
    start(t, stale=True)
    poll(t, True, True)
    finish(t)
    outputs(t)
    run(provider(tmp_path, t))
    names = [n for n in t.script_names() if not n.startswith("copy_")]
    assert names.index("windows-sandbox/stop.ps1") < names.index("windows-sandbox/launch-wsb.ps1")
    first_stop = t.calls_to("windows-sandbox/stop.ps1")[0]
    assert first_stop.parameters["Ids"] == ["11111111-2222-3333-4444-555555555555"]
    assert "Stop-Process" in first_stop.text


def test_stale_sandbox_that_will_not_stop_blocks_the_launch(tmp_path: Path) -> None:
    t = ReplayTransport()
    t.add("windows-sandbox/acquire-lock.ps1", js({"acquired": True}))
    t.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "classic": None, "ids": ["x"], "processes": []}))
    t.add("windows-sandbox/stop.ps1", js({"remaining_ids": ["x"], "remaining_processes": []}))
    t.add("windows-sandbox/release-lock.ps1", js({"released": True}))
    p = provider(tmp_path, t)
    box = p.create("job-1", SPEC)
    with pytest.raises(SandboxCreateError) as info:
        p.exec(box, request(), OutputCapture(100), CancelToken())
    assert info.value.code == "sandbox.stale_running"
    assert "windows-sandbox/launch-wsb.ps1" not in t.script_names()
    assert p.destroy(box).clean  # nothing was launched or prepared
    assert t.script_names()[-1] == "windows-sandbox/release-lock.ps1"


def test_exec_is_retried_when_wsb_exec_ends_before_the_runner_starts(tmp_path: Path) -> None:
    t = ReplayTransport(strict_order=True)
    start(t)
    poll(t, False, False, running=False)
    t.add("windows-sandbox/exec-wsb.ps1", js({"pid": 4343}))
    poll(t, True, True)
    finish(t)
    outputs(t)
    _, outcome, _ = run(provider(tmp_path, t))
    assert outcome.exit_code == 0
    assert [c.parameters["ExecPid"] for c in t.calls_to("windows-sandbox/poll.ps1")] == [4242, 4343]


def test_exec_retries_are_bounded(tmp_path: Path) -> None:
    t = ReplayTransport(strict_order=True)
    start(t)
    for _ in range(2):
        poll(t, False, False, running=False)
        t.add("windows-sandbox/exec-wsb.ps1", js({"pid": 1}))
    poll(t, False, False, running=False)
    finish(t)
    with pytest.raises(SandboxCreateError) as info:
        run(provider(tmp_path, t))
    assert info.value.code == "sandbox.exec_failed"
    assert t.script_names()[-2:] == ["windows-sandbox/stop.ps1", "windows-sandbox/release-lock.ps1"]


def test_boot_timeout_stops_the_sandbox(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    for _ in range(40):
        poll(t, False, False)
    finish(t)
    with pytest.raises(SandboxCreateError) as info:
        run(provider(tmp_path, t))
    assert info.value.code == "sandbox.boot_timeout"
    assert t.script_names()[-2:] == ["windows-sandbox/stop.ps1", "windows-sandbox/release-lock.ps1"]
    assert t.calls_to("windows-sandbox/stop.ps1")[0].parameters["Ids"] == [SANDBOX_GUID]


def test_job_timeout_is_enforced_from_the_host(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    for _ in range(40):
        poll(t, True, False)
    finish(t)
    _, outcome, _ = run(provider(tmp_path, t), request(timeout_s=60.0))
    assert outcome.timed_out and outcome.exit_code is None
    # FakeClock: 10 s per poll; the deadline is timeout + 30 s grace after "started" was first seen.
    assert len(t.calls_to("windows-sandbox/poll.ps1")) == 10
    assert len(t.calls_to("windows-sandbox/stop.ps1")) == 1
    assert "copy_from" not in t.script_names()


def test_cancel_stops_the_sandbox(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    cancel = CancelToken()

    def cancel_then_running(_: Any) -> Any:
        cancel.cancel("user")
        return js({"started": True, "done": False, "exec_running": True})

    t.add("windows-sandbox/poll.ps1", cancel_then_running)
    finish(t)
    _, outcome, _ = run(provider(tmp_path, t), cancel=cancel)
    assert outcome.error_code == "job.cancelled"
    assert t.script_names()[-2:] == ["windows-sandbox/stop.ps1", "windows-sandbox/release-lock.ps1"]


@pytest.mark.parametrize(
    "failure",
    [
        HostUnreachableError("gone"),
        TransportTimeoutError("slow"),
        ScriptError("wsb start failed", details={"error_record": {"message": "0x800705B4"}}),
    ],
)
def test_launch_failure_still_stops_and_destroys(tmp_path: Path, failure: Exception) -> None:
    t = ReplayTransport()
    t.add("windows-sandbox/acquire-lock.ps1", js({"acquired": True}))
    t.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "classic": None, "ids": [], "processes": []}))
    t.add("windows-sandbox/prepare.ps1", js({"root": ROOT}))
    t.add("windows-sandbox/launch-wsb.ps1", js({"id": SANDBOX_GUID}))
    t.add("windows-sandbox/exec-wsb.ps1", error=failure)  # type: ignore[arg-type]
    finish(t)
    t.add("windows-sandbox/cleanup.ps1", js({"removed": True}))
    p = provider(tmp_path, t)
    box = p.create("job-1", SPEC)
    with pytest.raises(type(failure)):
        p.exec(box, request(), OutputCapture(100), CancelToken())
    assert box.stopped
    report = p.destroy(box)
    assert report.clean
    assert t.script_names()[-3:] == [
        "windows-sandbox/stop.ps1",
        "windows-sandbox/release-lock.ps1",
        "windows-sandbox/cleanup.ps1",
    ]
    assert p.destroy(box).clean and t.script_names().count("windows-sandbox/cleanup.ps1") == 1  # idempotent


def test_sandbox_that_will_not_stop_is_reported_by_destroy(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    outputs(t)
    stuck = {"remaining_ids": [SANDBOX_GUID], "remaining_processes": []}
    t.add("windows-sandbox/stop.ps1", js(stuck))
    t.add("windows-sandbox/stop.ps1", error=HostUnreachableError("gone"))
    t.add("windows-sandbox/cleanup.ps1", js({"removed": True}))
    t.add("windows-sandbox/release-lock.ps1", js({"released": True}))
    p = provider(tmp_path, t)
    box, _, _ = run(p)
    assert box.host_lock_owner is not None  # held while the sandbox may still run
    report = p.destroy(box)
    assert not report.clean and report.leftovers == [f"windows sandbox {SANDBOX_GUID}"]
    assert box.host_lock_owner is None and box.local_lock is None


def test_host_lock_queues_until_free(tmp_path: Path) -> None:
    t = ReplayTransport()
    t.add("windows-sandbox/acquire-lock.ps1", js({"acquired": False, "holder": "other:1:job-0"}))
    t.add("windows-sandbox/acquire-lock.ps1", js({"acquired": False, "holder": "other:1:job-0"}))
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t)
    _, outcome, _ = run(provider(tmp_path, t))
    assert outcome.exit_code == 0
    assert len(t.calls_to("windows-sandbox/acquire-lock.ps1")) == 3
    owner = t.calls_to("windows-sandbox/acquire-lock.ps1")[0].parameters["Owner"]
    assert owner.endswith(":job-1")
    assert t.calls_to("windows-sandbox/release-lock.ps1")[0].parameters["Owner"] == owner


def test_cancel_while_queued_for_the_host_lock(tmp_path: Path) -> None:
    t = ReplayTransport()
    cancel = CancelToken()

    def busy(_: Any) -> Any:
        cancel.cancel("user")
        return js({"acquired": False, "holder": "other"})

    t.add("windows-sandbox/acquire-lock.ps1", busy)
    p = provider(tmp_path, t)
    box = p.create("job-1", SPEC)
    with pytest.raises(CancelledError):
        p.exec(box, request(), OutputCapture(10), cancel)
    assert p.destroy(box).clean
    assert t.script_names() == ["windows-sandbox/acquire-lock.ps1"]


def test_control_plane_lock_queues_threads_and_honours_cancel(tmp_path: Path) -> None:
    first = ControlPlaneLock(tmp_path / "wsb.lock")
    first.acquire(None, 5)
    second = ControlPlaneLock(tmp_path / "wsb.lock")
    cancel = CancelToken()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            second.acquire(cancel, 30)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not second.held  # queued behind the first holder
    cancel.cancel()
    thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], CancelledError)
    first.release()
    second.acquire(None, 5)
    assert second.held
    second.release()


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[]",
        result_doc(exit_code="0"),
        result_doc(version=2),
        result_doc(extra_field=1),
        b"{" + b" " * 70_000 + b"}",
    ],
)
def test_hostile_result_json_is_refused(tmp_path: Path, bad: bytes) -> None:
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t, result=bad)
    with pytest.raises(SandboxError) as info:
        run(provider(tmp_path, t))
    assert info.value.code in ("sandbox.bad_result", "sandbox.output_too_large")
    assert len(t.calls_to("windows-sandbox/stop.ps1")) == 1


def test_stdout_truncation_by_the_guest_is_counted(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t, result=result_doc(stdout_bytes=5000), stdout=b"x" * 1024)
    _, outcome, out = run(provider(tmp_path, t))
    assert outcome.exit_code == 0 and out.stdout.kept == 1024 and out.stdout.truncated


def test_guest_error_is_reported(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t, result=result_doc(exit_code=None, error={"code": "job.command_not_found", "message": "nope"}))
    _, outcome, _ = run(provider(tmp_path, t))
    assert outcome.error_code == "job.command_not_found" and outcome.exit_code is None


@pytest.mark.parametrize("path", ["../evil", "/etc/passwd", "a/../../b", "C:/x", "a\\..\\b", ""])
def test_artifact_paths_from_the_guest_cannot_escape(tmp_path: Path, path: str) -> None:
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t)
    t.add("windows-sandbox/list-output.ps1", js({"files": [{"path": path, "size": 1}], "more": False}))
    p = provider(tmp_path, t)
    box, _, _ = run(p)
    with pytest.raises(SandboxError):
        p.collect(box, [], tmp_path / "dest", 1 << 20)
    assert not (tmp_path / "evil").exists()


def test_artifacts_respect_the_byte_budget(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t)
    files = [{"path": "a.bin", "size": 60}, {"path": "b.bin", "size": 60}]
    t.add("windows-sandbox/list-output.ps1", js({"files": files, "more": False}))
    t.files[OUT + "\\artifacts\\a.bin"] = b"a" * 60
    t.files[OUT + "\\artifacts\\b.bin"] = b"b" * 60
    p = provider(tmp_path, t)
    box, _, _ = run(p)
    assert [a.path for a in p.collect(box, [], None, 100)] == ["a.bin"]


def test_second_exec_on_the_same_sandbox_is_refused(tmp_path: Path) -> None:
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t)
    p = provider(tmp_path, t)
    box, _, _ = run(p)
    with pytest.raises(SandboxError):
        p.exec(box, request(), OutputCapture(10), CancelToken())


def test_remote_control_plane_stages_mount_folders(tmp_path: Path) -> None:
    source = tmp_path / "inputs"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "data.csv").write_text("1,2\n")
    spec = parse_job_spec({"command": ["cmd"], "mounts": [{"source": str(source), "target": "C:\\input"}]})
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t)
    t.add("windows-sandbox/cleanup.ps1", js({"removed": True}))
    p = provider(tmp_path, t, transport="winrm", host="win.example")
    box = p.create("job-1", spec)
    p.exec(box, request(), OutputCapture(100), CancelToken())
    prepare = t.calls_to("windows-sandbox/prepare.ps1")[0].parameters
    assert ROOT + "\\inputs\\0" in prepare["Directories"] and ROOT + "\\inputs\\0\\sub" in prepare["Directories"]
    assert t.uploaded[ROOT + "\\inputs\\0\\sub\\data.csv"] == b"1,2\n"
    config = t.calls_to("windows-sandbox/launch-wsb.ps1")[0].parameters["Config"]
    assert f"<HostFolder>{ROOT}\\inputs\\0</HostFolder><SandboxFolder>C:\\input</SandboxFolder>" in config
    p.destroy(box)
    assert t.script_names()[-1] == "windows-sandbox/cleanup.ps1"  # staged inputs removed with the job folder


def test_hostile_values_travel_as_parameters_and_files_only(tmp_path: Path) -> None:
    hostile = "'; Remove-Item C:\\ -Recurse; $(Stop-Computer) `n \" \n ✓"
    t = ReplayTransport()
    start(t)
    poll(t, True, True)
    finish(t)
    outputs(t)
    run(provider(tmp_path, t), request(argv=[hostile], env={"X": hostile}, stdin=hostile.encode()))
    for call in t.calls:
        if call.script.startswith("windows-sandbox/"):
            assert hostile not in call.text
            flags = {"kill_processes": False} if call.script.endswith("stop.ps1") else {}
            assert call.text == str(render_script(call.script + ".j2", **flags))
    job = json.loads(t.uploaded[ROOT + "\\job\\job.json"])
    assert job["argv"] == [hostile] and job["env"] == {"X": hostile} and job["stdin"] == hostile


def test_replay_refuses_unexpected_calls() -> None:
    t = ReplayTransport(strict_order=True)
    t.add("windows-sandbox/probe.ps1", js({}))
    with pytest.raises(ReplayMismatch):
        t.run(render_script("windows-sandbox/poll.ps1.j2"), {})


def test_availability_on_linux_with_local_transport(tmp_path: Path) -> None:
    t = ReplayTransport()
    availability = provider(tmp_path, t).availability()
    assert not availability.available and "linux" in availability.reason and "winrm" in availability.fix
    assert t.calls == []


def test_availability_over_winrm_reports_auth_failures(tmp_path: Path) -> None:
    from orchestrator.errors import TransportAuthError

    t = ReplayTransport().add("windows-sandbox/probe.ps1", error=TransportAuthError("denied"))
    availability = provider(tmp_path, t, transport="winrm", host="h").availability()
    assert not availability.available and "secrets_file" in availability.fix


def test_reap_orphans_stops_a_leftover_sandbox_when_the_lock_is_free(tmp_path: Path) -> None:
    t = ReplayTransport(strict_order=True)
    t.add("windows-sandbox/acquire-lock.ps1", js({"acquired": True}))
    t.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "classic": None, "ids": ["abc"], "processes": []}))
    t.add("windows-sandbox/stop.ps1", js(STOPPED))
    t.add("windows-sandbox/release-lock.ps1", js({"released": True}))
    p = provider(tmp_path, t)
    assert p.reap_orphans(set()) == ["abc"]
    assert p.reap_orphans({"job-9"}) == []
    assert t.pending() == []


def test_create_refuses_sessions_and_bad_ids(tmp_path: Path) -> None:
    p = provider(tmp_path, ReplayTransport())
    with pytest.raises(SpecError):
        p.create("job-1", SPEC, session=True)
    with pytest.raises(SpecError, match="invalid sandbox id"):
        p.create("..\\..\\Windows", SPEC)
    assert isinstance(p.create("job-1", SPEC), WsbSandbox)
