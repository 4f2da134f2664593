"""``up`` for hyperv (PowerShell over PowerShell Direct) and wsb (the sandbox window), with no Windows host.

The VM lifecycle runs against the fake Hyper-V host; the interactive lines and
the wsb steps are replayed (``ReplayTransport``), so what is sent to the host
is checked exactly.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.interactive.session import UpOptions
from orchestrator.interactive.terminal import Terminal
from orchestrator.interactive.windows import run_windows
from orchestrator.providers.hyperv import HyperVProvider
from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec
from orchestrator.windows.replay import ReplayTransport
from orchestrator.windows.scripts import script_name
from orchestrator.windows.transport import PSResult
from tests.hyperv.fakehost import FakeHyperVHost
from tests.windows.helpers import SANDBOX_GUID, js
from tests.windows.helpers import provider as wsb_provider

WSB = "C:\\Users\\orch\\AppData\\Local\\Microsoft\\WindowsApps\\wsb.exe"
STOPPED = {"remaining_ids": [], "remaining_processes": []}


class Router:
    """The interactive steps go to a replay, the VM lifecycle to the fake host."""

    def __init__(self, host: FakeHyperVHost, replay: ReplayTransport):
        self.host = host
        self.replay = replay

    def run(self, script: str, parameters: Mapping[str, Any] | None = None, *, timeout_s: float | None = None) -> Any:
        if script_name(script).startswith("interactive/"):
            return self.replay.run(script, parameters, timeout_s=timeout_s)
        return self.host.run(script, parameters, timeout_s=timeout_s)

    def copy_to(self, local: Path, remote: str) -> None:
        self.host.copy_to(local, remote)

    def copy_from(self, remote: str, local: Path, *, max_bytes: int) -> None:
        self.host.copy_from(remote, local, max_bytes=max_bytes)

    def close(self) -> None:
        self.host.close()


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Terminal, Path]]:
    """A terminal whose output and notices land in a file (no tty: the hyperv shell reads lines)."""
    out = tmp_path / "terminal.txt"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    yield Terminal(stdin_fd=null, stdout_fd=fd, stderr_fd=fd), out
    os.close(fd)
    os.close(null)


def options(provider: str, timeout_s: float = 60.0, output: Path | None = None) -> UpOptions:
    spec = JobSpec.model_validate({"command": ["powershell.exe"], "provider": provider})
    return UpOptions(provider=provider, spec=spec, command=None, shell=None, output=output, timeout_s=timeout_s)


def hyperv(host: FakeHyperVHost, replay: ReplayTransport) -> HyperVProvider:
    hv = HyperVSettings.model_validate({"guest_password": "s3cret!", "exec_grace_s": 0})
    return HyperVProvider(Settings(), Router(host, replay), hyperv=hv, sleep=lambda s: None, poll_interval_s=0.01)


def lines(*items: str) -> Any:
    prompts: list[str] = []
    queue = list(items)

    def read_line(prompt: str) -> str:
        prompts.append(prompt)
        if not queue:
            raise EOFError
        return queue.pop(0)

    read_line.prompts = prompts  # type: ignore[attr-defined]
    return read_line


def test_hyperv_powershell_lines_over_powershell_direct(
    settings: Settings, terminal: tuple[Terminal, Path], tmp_path: Path
) -> None:
    host = FakeHyperVHost()
    replay = ReplayTransport()
    replay.add(
        "interactive/hyperv-line.ps1",
        js({"output": "Directory: C:\\workspace\\sub\n", "cwd": "C:\\workspace\\sub", "truncated": False}),
    )
    replay.add("interactive/hyperv-line.ps1", js({"output": "42\n", "cwd": "C:\\workspace\\sub"}))
    read_line = lines("cd sub; Write-Output marker-7", "", "40 + 2", "exit", "never read")
    term, out = terminal
    code = run_windows(settings, options("hyperv"), term, provider=hyperv(host, replay), read_line=read_line)
    assert code == 0
    text = out.read_text()
    assert "on provider hyperv (Hyper-V VM, PowerShell Direct)" in text and "network:  off" in text
    assert "Directory: C:\\workspace\\sub" in text and "42\n" in text
    assert "destroyed; nothing left" in text
    workspace = HyperVSettings.model_validate({}).guest_workspace
    assert read_line.prompts == [  # type: ignore[attr-defined]
        f"PS (sandbox) {workspace}> ",
        "PS (sandbox) C:\\workspace\\sub> ",
        "PS (sandbox) C:\\workspace\\sub> ",
        "PS (sandbox) C:\\workspace\\sub> ",
    ]
    first, second = replay.calls
    # The line travels as a parameter: never spliced into the script text.
    assert first.parameters["Command"] == "cd sub; Write-Output marker-7" and "marker-7" not in first.text
    assert first.parameters["Cwd"] == workspace and second.parameters["Cwd"] == "C:\\workspace\\sub"
    assert first.parameters["GuestPassword"] == "s3cret!" and first.parameters["VMName"].startswith("orch-")
    assert "s3cret!" not in first.text
    assert replay.pending() == []
    assert host.leftovers() == []


def test_hyperv_sigterm_while_a_line_runs_destroys_the_vm(settings: Settings, terminal: tuple[Terminal, Path]) -> None:
    host = FakeHyperVHost()
    replay = ReplayTransport()

    def slow(_params: Mapping[str, Any]) -> PSResult:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)
        return js({"output": "late\n", "cwd": "C:\\workspace"})

    replay.add("interactive/hyperv-line.ps1", slow)
    term, out = terminal
    code = run_windows(
        settings, options("hyperv"), term, provider=hyperv(host, replay), read_line=lines("Start-Sleep 60")
    )
    assert code == 128 + signal.SIGTERM
    text = out.read_text()
    assert "SIGTERM received; tearing the session down" in text and "nothing left" in text
    assert host.leftovers() == []


def test_hyperv_timeout_tears_down_with_a_warning(settings: Settings, terminal: tuple[Terminal, Path]) -> None:
    host = FakeHyperVHost()

    def idle(_prompt: str) -> str:
        time.sleep(10)
        return "exit"

    term, out = terminal
    provider = hyperv(host, ReplayTransport())
    code = run_windows(settings, options("hyperv", timeout_s=1.0), term, provider=provider, read_line=idle)
    assert code == 124
    assert "WARNING: the session reached its --timeout of 1s" in out.read_text()
    assert host.leftovers() == []


def test_wsb_opens_the_window_and_waits_for_it_to_close(tmp_path: Path, terminal: tuple[Terminal, Path]) -> None:
    replay = ReplayTransport(strict_order=True)
    replay.add("windows-sandbox/acquire-lock.ps1", js({"acquired": True, "holder": "me", "broke_stale": False}))
    replay.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "classic": None, "ids": [], "processes": []}))
    replay.add("windows-sandbox/prepare.ps1", js({"root": "C:\\ProgramData\\Orchestrator\\wsb\\up-1"}))
    replay.add("windows-sandbox/launch-wsb.ps1", js({"id": SANDBOX_GUID}))
    replay.add("interactive/wsb-connect.ps1", js({"pid": 77}))
    replay.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "ids": [SANDBOX_GUID], "processes": [{"id": 1}]}))
    replay.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "ids": [SANDBOX_GUID.upper()], "processes": []}))
    replay.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "ids": [], "processes": []}))  # window closed
    replay.add("windows-sandbox/stop.ps1", js(STOPPED))
    replay.add("windows-sandbox/cleanup.ps1", js({"removed": True}))
    replay.add("windows-sandbox/release-lock.ps1", js({"released": True}))
    provider = wsb_provider(tmp_path, replay)
    up = options("wsb")
    up.session_id = "up-1"
    term, out = terminal
    assert run_windows(provider.settings, up, term, provider=provider) == 0
    assert replay.pending() == []
    [launch] = replay.calls_to("windows-sandbox/launch-wsb.ps1")
    config = launch.parameters["Config"]
    assert "<Networking>Disable</Networking>" in config and "<LogonCommand>" not in config  # no runner: it is yours
    [connect] = replay.calls_to("interactive/wsb-connect.ps1")
    assert connect.parameters == {"WsbPath": WSB, "Id": SANDBOX_GUID}
    text = out.read_text()
    assert "waiting for the sandbox window to close" in text and "the sandbox window closed" in text
    assert "destroyed; nothing left" in text


def test_wsb_sigterm_stops_the_sandbox(tmp_path: Path, terminal: tuple[Terminal, Path]) -> None:
    replay = ReplayTransport()
    replay.add("windows-sandbox/acquire-lock.ps1", js({"acquired": True}))
    replay.add("windows-sandbox/probe.ps1", js({"wsb": WSB, "classic": None, "ids": [], "processes": []}))
    replay.add("windows-sandbox/prepare.ps1", js({}))
    replay.add("windows-sandbox/launch-wsb.ps1", js({"id": SANDBOX_GUID}))
    replay.add("interactive/wsb-connect.ps1", js({"pid": 77}))

    def still_running(_params: Mapping[str, Any]) -> PSResult:
        os.kill(os.getpid(), signal.SIGTERM)
        return js({"wsb": WSB, "ids": [SANDBOX_GUID], "processes": []})

    for _ in range(50):
        replay.add("windows-sandbox/probe.ps1", still_running)
    replay.add("windows-sandbox/stop.ps1", js(STOPPED))
    replay.add("windows-sandbox/cleanup.ps1", js({}))
    replay.add("windows-sandbox/release-lock.ps1", js({"released": True}))
    provider = wsb_provider(tmp_path, replay)
    term, out = terminal
    assert run_windows(provider.settings, options("wsb"), term, provider=provider) == 143
    stop = replay.calls_to("windows-sandbox/stop.ps1")
    assert stop and stop[0].parameters["Ids"] == [SANDBOX_GUID]
    assert replay.calls_to("windows-sandbox/release-lock.ps1")
    assert "SIGTERM received" in out.read_text()
