"""WinRMTransport: error translation, credentials, wall timeout, size caps (pypsrp faked at its API)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import spnego.exceptions
from pypsrp import exceptions as psrp_exc
from pypsrp.complex_objects import PSInvocationState

from orchestrator.errors import (
    HostUnreachableError,
    PayloadTooLargeError,
    ScriptError,
    TransportAuthError,
    TransportError,
    TransportTimeoutError,
)
from orchestrator.settings import WindowsHostSettings
from orchestrator.windows import winrm
from orchestrator.windows.scripts import PSScript, transport_from_settings

PASSWORD = "s3cr3t-Pa55"


def _instance(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, psrp_exc.WinRMTransportError):
        return cls("http", 500, "oops")
    if issubclass(cls, psrp_exc.WSManFaultError):
        return cls(123, "m", "reason", "p", "pp", "pf")
    if issubclass(cls, psrp_exc._InvalidStateError):
        return cls(PSInvocationState.RUNNING, [PSInvocationState.COMPLETED], "do it")
    return cls("message")


def test_every_pypsrp_exception_is_translated() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(psrp_exc, inspect.isclass)
        if issubclass(c, Exception) and c.__module__ == psrp_exc.__name__
    ]
    assert len(classes) >= 9
    for cls in classes:
        mapped = winrm.translate(_instance(cls), "host1")
        assert isinstance(mapped, TransportError), cls


@pytest.mark.parametrize(
    ("exc", "expected", "code"),
    [
        (psrp_exc.AuthenticationError("Failed to authenticate the user bob with ntlm"), TransportAuthError, None),
        (psrp_exc.WinRMTransportError("http", 401, ""), TransportAuthError, None),
        (psrp_exc.WSManFaultError(2150858793, "m", "timed out", "", "", ""), TransportTimeoutError, None),
        (psrp_exc.WSManFaultError(5, "m", "access denied", "", "", ""), TransportError, "transport.wsman_fault"),
        (requests.exceptions.ConnectionError("refused"), HostUnreachableError, None),
        (requests.exceptions.SSLError("bad cert"), HostUnreachableError, "transport.tls_failed"),
        (requests.exceptions.ConnectTimeout("slow"), HostUnreachableError, None),
        (requests.exceptions.ReadTimeout("slow"), TransportTimeoutError, None),
        (spnego.exceptions.BadMechanismError(context_msg="no kerberos"), TransportAuthError, None),
    ],
)
def test_specific_translations(exc: BaseException, expected: type[TransportError], code: str | None) -> None:
    with pytest.raises(expected) as info, winrm.map_psrp_errors("host1"):
        raise exc
    assert info.value.__cause__ is exc
    if code:
        assert info.value.code == code
    assert info.value.details["host"] == "host1"


def test_unrelated_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), winrm.map_psrp_errors("h"):
        raise KeyError("x")


def _settings(**values: Any) -> WindowsHostSettings:
    return WindowsHostSettings.model_validate({"transport": "winrm", "host": "win.example", **values})


def test_credentials_from_secrets_file_are_never_shown(tmp_path: Path) -> None:
    secrets = tmp_path / "winrm.json"
    secrets.write_text(json.dumps({"username": "ORCH\\svc", "password": PASSWORD}))
    creds = winrm.load_credentials(_settings(secrets_file=str(secrets)))
    assert creds is not None and creds.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)
    transport = winrm.WinRMTransport(_settings(username="u", password=PASSWORD))
    assert PASSWORD not in repr(transport)


@pytest.mark.parametrize("content", ["not json", "[]", '{"username": "u"}'])
def test_bad_secrets_file(tmp_path: Path, content: str) -> None:
    secrets = tmp_path / "winrm.json"
    secrets.write_text(content)
    with pytest.raises(TransportAuthError) as info:
        winrm.load_credentials(_settings(secrets_file=str(secrets)))
    assert info.value.code == "transport.secrets_unreadable"


class FakeClient:
    instances: list[FakeClient] = []

    def __init__(self, server: str, **kwargs: Any):
        self.server = server
        self.kwargs = kwargs
        self.wsman = object()
        self.fetched: list[str] = []
        FakeClient.instances.append(self)

    def fetch(self, src: str, dest: str) -> None:
        self.fetched.append(src)
        Path(dest).write_bytes(b"x" * 10)

    def close(self) -> None:
        pass


class FakePool:
    def __init__(self, wsman: Any):
        self.wsman = wsman

    def __enter__(self) -> FakePool:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class Streams:
    def __init__(self) -> None:
        self.error: list[Any] = []
        self.warning: list[Any] = []
        self.verbose: list[Any] = []
        self.information: list[Any] = []


class FakePowerShell:
    behaviour = "complete"
    last: FakePowerShell | None = None

    def __init__(self, pool: Any):
        self.script = ""
        self.params: dict[str, Any] = {}
        self.state = PSInvocationState.NOT_STARTED
        self.output: list[Any] = []
        self.streams = Streams()
        self.stopped = False
        FakePowerShell.last = self

    def add_script(self, script: str) -> FakePowerShell:
        self.script = script
        return self

    def add_parameters(self, params: dict[str, Any]) -> FakePowerShell:
        self.params = params
        return self

    def begin_invoke(self) -> None:
        self.state = PSInvocationState.RUNNING

    def poll_invoke(self, timeout: int | None = None) -> None:
        assert timeout is not None and timeout >= 1
        if self.behaviour == "complete":
            self.output = ["42"]
            self.state = PSInvocationState.COMPLETED
        elif self.behaviour == "fail":
            self.streams.error.append("Cannot find path")
            self.state = PSInvocationState.FAILED

    def stop(self) -> None:
        self.stopped = True
        self.state = PSInvocationState.STOPPED


@pytest.fixture
def fake_pypsrp(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeClient.instances.clear()
    monkeypatch.setattr(winrm, "Client", FakeClient)
    monkeypatch.setattr(winrm, "RunspacePool", FakePool)
    monkeypatch.setattr(winrm, "PowerShell", FakePowerShell)
    FakePowerShell.behaviour = "complete"


def test_safe_connection_defaults(fake_pypsrp: None) -> None:
    transport = transport_from_settings(_settings(username="u", password=PASSWORD))
    assert isinstance(transport, winrm.WinRMTransport)
    transport.run("Write-Output 1")
    kwargs = FakeClient.instances[0].kwargs
    assert kwargs["ssl"] is True and kwargs["cert_validation"] is True and kwargs["auth"] == "negotiate"
    assert kwargs["username"] == "u" and kwargs["password"] == PASSWORD


def test_parameters_are_bound_not_spliced(fake_pypsrp: None) -> None:
    hostile = "'; Remove-Item C:\\ -Recurse; $(x)\n`"
    script = PSScript("param($Value)\nWrite-Output $Value\n", "t/echo.ps1")
    result = winrm.WinRMTransport(_settings()).run(script, {"Value": hostile})
    ps = FakePowerShell.last
    assert ps is not None and ps.script == script and ps.params == {"Value": hostile}
    assert result.output == ["42"]


def test_wall_timeout_stops_the_pipeline(fake_pypsrp: None) -> None:
    FakePowerShell.behaviour = "hang"
    with pytest.raises(TransportTimeoutError):
        winrm.WinRMTransport(_settings()).run("Start-Sleep 100", timeout_s=0.05)
    assert FakePowerShell.last is not None and FakePowerShell.last.stopped


def test_failed_pipeline_is_a_script_error(fake_pypsrp: None) -> None:
    FakePowerShell.behaviour = "fail"
    with pytest.raises(ScriptError) as info:
        winrm.WinRMTransport(_settings()).run(PSScript("x", "t/x.ps1"))
    assert info.value.details["error_record"]["message"] == "Cannot find path"


def test_fetch_checks_the_size_on_the_host_first(fake_pypsrp: None, tmp_path: Path) -> None:
    transport = winrm.WinRMTransport(_settings())
    with pytest.raises(PayloadTooLargeError):  # the fake host reports 42 bytes
        transport.copy_from("C:\\out\\big.bin", tmp_path / "big.bin", max_bytes=41)
    assert FakeClient.instances[0].fetched == []
    transport.copy_from("C:\\out\\ok.bin", tmp_path / "ok.bin", max_bytes=42)
    assert (tmp_path / "ok.bin").read_bytes() == b"x" * 10
    assert FakePowerShell.last is not None and FakePowerShell.last.params == {"Path": "C:\\out\\ok.bin"}


def test_host_is_required() -> None:
    with pytest.raises(TransportError):
        winrm.WinRMTransport(WindowsHostSettings.model_validate({"transport": "winrm"}))
