"""The ``wsb`` provider: one Windows Sandbox per job, driven through a PowerShellTransport.

Windows Sandbox runs one instance per host user session, so jobs are serial:
a process-level lock (``threading`` + a lock file under ``runtime_dir``) queues
jobs from this control plane, and a host-wide lock file (taken by a script on
the Windows host) queues control planes. Both honour the job's CancelToken.

``create`` only validates and renders; the host is touched in ``exec``:

1. take the locks; probe the host (launch path, sandboxes left running by a
   crash) and stop anything stale before launching;
2. create ``<staging_dir>\\wsb\\<id>\\{job,out[,inputs\\N]}`` on the host; upload
   the job file and the guest runner (and, when the control plane is remote,
   the input folders: they are staged and removed afterwards);
3. launch: ``wsb start --config <inline xml>`` + ``wsb exec --run-as System``
   when wsb.exe exists, else ``WindowsSandbox.exe <file.wsb>`` whose
   LogonCommand starts the runner;
4. poll the output folder: the boot timeout ends when the runner writes
   ``started``, the job timeout (plus a grace) when it writes ``done``;
5. fetch and strictly parse ``result.json``, stdout and stderr (size-capped);
6. stop the sandbox and check it is gone, on every path (errors included).

``collect`` fetches artifacts with path checks; ``destroy`` (idempotent) stops
the sandbox if needed, removes the per-job folders and releases the locks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PureWindowsPath
from typing import Any, ClassVar, Literal

from orchestrator.cancel import CancelToken
from orchestrator.errors import (
    CancelledError,
    InvalidMountError,
    OrchestratorError,
    PayloadTooLargeError,
    SandboxCreateError,
    SandboxError,
    SpecError,
    TransportError,
)
from orchestrator.output import CappedBuffer, OutputCapture
from orchestrator.providers.base import Availability, Capabilities, ExecOutcome, ExecRequest, TeardownReport
from orchestrator.result import Artifact
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec
from orchestrator.templates import render as render_template
from orchestrator.windows import guest
from orchestrator.windows.scripts import render_script, transport_from_settings
from orchestrator.windows.transport import PowerShellTransport, PSResult

log = logging.getLogger(__name__)

GUEST_ROOT = "C:\\orchestrator"
GUEST_JOB = GUEST_ROOT + "\\job"
GUEST_OUT = GUEST_ROOT + "\\out"
GUEST_SCRIPT = GUEST_JOB + "\\script.ps1"
#: Fixed: no job value is ever part of the command line that starts the runner.
RUNNER_COMMAND = (
    "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "
    f"{GUEST_JOB}\\runner.ps1 -JobPath {GUEST_JOB}\\job.json -OutDir {GUEST_OUT}"
)
BOOT_TIMEOUT_S = 180.0
RUNNER_GRACE_S = 30.0
SCRIPT_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 1.0
LOCK_WAIT_S = 6 * 3600.0
MAX_EXEC_ATTEMPTS = 3
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_XML_GAP = re.compile(r">\s+<")

LaunchPath = Literal["wsb", "classic"]


# --- locks -------------------------------------------------------------------

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


class ControlPlaneLock:
    """Queues this control plane's wsb jobs: a thread lock plus an OS lock on a file."""

    def __init__(self, path: Path):
        self.path = path
        with _PROCESS_LOCKS_GUARD:
            self._thread_lock = _PROCESS_LOCKS.setdefault(str(path), threading.Lock())
        self._fd: int | None = None

    def acquire(self, cancel: CancelToken | None, timeout_s: float, poll_s: float = 0.2) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._thread_lock.acquire(timeout=poll_s):
            _check_wait(cancel, deadline, "the wsb lock of this control plane")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            while not _try_lock_fd(fd):
                try:
                    _check_wait(cancel, deadline, f"the wsb lock file {self.path}")
                except BaseException:
                    os.close(fd)
                    raise
                time.sleep(poll_s)
            self._fd = fd
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _unlock_fd(fd)
            os.close(fd)
            self._thread_lock.release()

    @property
    def held(self) -> bool:
        return self._fd is not None


def _try_lock_fd(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised only on Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        if sys.platform == "win32":  # pragma: no cover
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)


def _check_wait(cancel: CancelToken | None, deadline: float, what: str) -> None:
    if cancel is not None and cancel.cancelled:
        raise CancelledError(f"cancelled while queued for {what}", details={"reason": cancel.reason})
    if time.monotonic() >= deadline:
        raise SandboxCreateError(f"timed out waiting for {what}", code="sandbox.lock_timeout")


# --- the sandbox handle ----------------------------------------------------------


@dataclass(frozen=True)
class MappedFolder:
    host: str
    sandbox: str
    read_only: bool
    stage_from: Path | None = None  # a control-plane folder copied to ``host`` first (remote hosts)


@dataclass
class WsbSandbox:
    id: str
    spec: JobSpec
    root: str
    folders: list[MappedFolder]
    provider: str = "wsb"
    launch: LaunchPath | None = None
    wsb_path: str | None = None
    sandbox_ids: list[str] = field(default_factory=list)
    launched: bool = False
    stopped: bool = False
    prepared: bool = False
    executed: bool = False
    destroyed: bool = False
    host_lock_owner: str | None = None
    local_lock: ControlPlaneLock | None = None
    result: guest.GuestResult | None = None
    classic_path: str | None = None
    exec_pid: int = 0

    @property
    def job_dir(self) -> str:
        return self.root + "\\job"

    @property
    def out_dir(self) -> str:
        return self.root + "\\out"


# --- the provider --------------------------------------------------------------


class WsbProvider:
    name: ClassVar[str] = "wsb"

    def __init__(
        self,
        settings: Settings,
        transport: PowerShellTransport | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_interval_s: float = POLL_INTERVAL_S,
    ):
        self.settings = settings
        self._transport = transport
        self._clock = clock
        self.poll_interval_s = poll_interval_s
        win: Any = settings.windows
        # Optional settings (read if the settings model grows them): ProtectedClient and the boot timeout.
        self.protected_client: bool = bool(getattr(win, "wsb_protected_client", True))
        self.boot_timeout_s: float = float(getattr(win, "wsb_boot_timeout_s", BOOT_TIMEOUT_S))
        self.lock_path = Path(settings.runtime_dir) / "wsb.lock"

    # -- plumbing

    @property
    def transport(self) -> PowerShellTransport:
        if self._transport is None:
            self._transport = transport_from_settings(self.settings.windows)
        return self._transport

    @property
    def remote(self) -> bool:
        return self.settings.windows.transport != "local"

    @property
    def staging_root(self) -> str:
        return str(PureWindowsPath(self.settings.windows.staging_dir, "wsb"))

    @property
    def host_lock_path(self) -> str:
        return self.staging_root + "\\host.lock"

    def _run(self, name: str, params: dict[str, Any], *, timeout_s: float = SCRIPT_TIMEOUT_S, **flags: bool) -> Any:
        """Run a windows-sandbox script and return its single JSON output, parsed."""
        result: PSResult = self.transport.run(
            render_script(f"windows-sandbox/{name}.ps1.j2", **flags), params, timeout_s=timeout_s
        )
        if not result.output:
            raise TransportError(f"{name}.ps1 returned no output", code="transport.bad_output")
        last = result.output[-1]
        try:
            return json.loads(last) if isinstance(last, str) else last
        except json.JSONDecodeError:
            raise TransportError(f"{name}.ps1 returned non-JSON output", code="transport.bad_output") from None

    # -- Provider protocol

    def availability(self) -> Availability:
        if not self.remote and sys.platform != "win32":
            return Availability(
                False,
                reason="Windows Sandbox needs a Windows 10/11 Pro, Enterprise or Education host; "
                f"this is {sys.platform}",
                fix="run the control plane on the Windows host, or set ORCH_WINDOWS__TRANSPORT=winrm "
                "and ORCH_WINDOWS__HOST to drive one remotely",
            )
        try:
            probe = self._run("probe", {})
        except OrchestratorError as exc:
            return Availability(False, reason=f"cannot probe the Windows host: {exc.message}", fix=_fix_for(exc))
        if not probe.get("wsb") and not probe.get("classic"):
            return Availability(
                False,
                reason="Windows Sandbox is not installed on the host",
                fix='Enable-WindowsOptionalFeature -FeatureName "Containers-DisposableClientVM" -All -Online',
            )
        return Availability(True, details={"launch": "wsb" if probe.get("wsb") else "classic"})

    def capabilities(self) -> Capabilities:
        return Capabilities(
            name=self.name,
            isolation="Windows Sandbox (Hyper-V isolated disposable Windows guest)",
            network_modes=("none",),
            limits={
                "timeout_s": "enforced by the guest runner and again from the host",
                "memory_mb": "MemoryInMB (Windows raises values below 2048)",
                "output_bytes": "capped by the guest runner and on fetch",
                "cpus": "not enforced",
                "cpu_s": "not enforced",
                "pids": "not enforced",
                "disk_mb": "not enforced",
            },
            max_concurrency=1,
            sessions=False,
            notes=(
                "one sandbox per host: jobs queue behind a host-wide lock",
                "networking, vGPU, audio/video input, printer and clipboard redirection are disabled",
            ),
        )

    def create(self, sandbox_id: str, spec: JobSpec, *, session: bool = False) -> WsbSandbox:
        if session:
            raise SpecError("the wsb provider does not support sessions", code="spec.unsupported")
        if not _ID.match(sandbox_id):
            raise SpecError(f"invalid sandbox id {sandbox_id!r}", code="spec.invalid_id")
        root = f"{self.staging_root}\\{sandbox_id}"
        return WsbSandbox(sandbox_id, spec, root, self._folders(root, spec))

    def _folders(self, root: str, spec: JobSpec) -> list[MappedFolder]:
        folders = [
            MappedFolder(root + "\\job", GUEST_JOB, True),
            MappedFolder(root + "\\out", GUEST_OUT, False),
        ]
        seen = {GUEST_JOB.lower(), GUEST_OUT.lower()}
        for index, mount in enumerate(spec.mounts):
            target = guest.validate_mount_target(mount.target)
            if target.lower() in seen:
                raise InvalidMountError(f"two mounts share the target {target}", details={"target": target})
            seen.add(target.lower())
            if self.remote:
                source = Path(mount.source)
                if not source.is_absolute() or not source.is_dir():
                    raise InvalidMountError(
                        f"mount source {mount.source!r} must be an existing folder on the control plane",
                        details={"source": mount.source},
                    )
                folders.append(MappedFolder(f"{root}\\inputs\\{index}", target, mount.read_only, source))
            else:
                host = guest.validate_windows_path(mount.source, "mount source")
                folders.append(MappedFolder(str(host), target, mount.read_only))
        return folders

    def wsb_config(self, sandbox: WsbSandbox, *, logon: bool, inline: bool = False) -> str:
        text = render_template(
            "windows-sandbox/sandbox.wsb.j2",
            vgpu="Disable",
            networking="Disable",
            audio_input="Disable",
            video_input="Disable",
            protected_client="Enable" if self.protected_client else "Disable",
            printer_redirection="Disable",
            clipboard_redirection="Disable",
            memory_mb=int(sandbox.spec.limits.memory_mb),
            mapped_folders=[{"host": f.host, "sandbox": f.sandbox, "read_only": f.read_only} for f in sandbox.folders],
            logon_command=RUNNER_COMMAND if logon else "",
        )
        return _XML_GAP.sub("><", text.strip()) if inline else text

    def job_document(self, sandbox: WsbSandbox, request: ExecRequest, output_bytes: int) -> dict[str, Any]:
        return guest.job_document(
            sandbox.spec,
            argv=request.argv,
            env=request.env,
            cwd=guest.guest_path(request.cwd) if request.cwd.startswith("/") else request.cwd,
            timeout_s=request.timeout_s,
            output_bytes=output_bytes,
            stdin=request.stdin,
        )

    def default_request(self, spec: JobSpec) -> ExecRequest:
        return ExecRequest.for_spec(spec, guest.script_argv(spec, GUEST_SCRIPT))

    def _job_files(self, sandbox: WsbSandbox, request: ExecRequest, output_bytes: int) -> dict[str, str]:
        files = {
            "job.json": json.dumps(self.job_document(sandbox, request, output_bytes), indent=2, sort_keys=True) + "\n",
            "runner.ps1": guest.runner_script(),
        }
        if sandbox.spec.script is not None:
            files["script.ps1"] = sandbox.spec.script
        return files

    def render(self, sandbox_id: str, spec: JobSpec) -> dict[str, str]:
        """Everything that would be launched for ``spec``, by file name; runs nothing."""
        sandbox = self.create(sandbox_id, spec)
        request = self.default_request(spec)
        files = {
            "sandbox.wsb": self.wsb_config(sandbox, logon=True),
            "wsb-start-config.xml": self.wsb_config(sandbox, logon=False, inline=True) + "\n",
            **self._job_files(sandbox, request, spec.limits.output_bytes),
        }
        for name in (
            "probe",
            "acquire-lock",
            "release-lock",
            "prepare",
            "launch-wsb",
            "exec-wsb",
            "launch-classic",
            "poll",
            "list-output",
            "cleanup",
        ):
            files[f"scripts/{name}.ps1"] = str(render_script(f"windows-sandbox/{name}.ps1.j2"))
        files["scripts/stop-wsb.ps1"] = str(render_script("windows-sandbox/stop.ps1.j2", kill_processes=False))
        files["scripts/stop-classic.ps1"] = str(render_script("windows-sandbox/stop.ps1.j2", kill_processes=True))
        return files

    # -- exec

    def exec(self, sandbox: Any, request: ExecRequest, output: OutputCapture, cancel: CancelToken) -> ExecOutcome:
        box: WsbSandbox = sandbox
        if box.executed:
            raise SandboxError("the wsb provider runs one program per sandbox", code="sandbox.already_ran")
        box.executed = True
        try:
            self._acquire_locks(box, cancel)
            self._cleanup_stale(box)
            self._prepare(box, request, output.stdout.limit)
            self._launch(box)
            outcome = self._wait(box, request, cancel)
            if outcome is None:
                outcome = self._read_result(box, output)
            return outcome
        finally:
            # The sandbox is stopped on every path; the host lock is released once it is gone.
            self._stop(box)
            if box.stopped or not box.launched:
                self._release_locks(box)

    def _acquire_locks(self, box: WsbSandbox, cancel: CancelToken) -> None:
        lock = ControlPlaneLock(self.lock_path)
        lock.acquire(cancel, LOCK_WAIT_S)
        box.local_lock = lock
        owner = f"{socket.gethostname()}:{os.getpid()}:{box.id}"
        stale_after = int(self.settings.max_limits.timeout_s + self.boot_timeout_s + RUNNER_GRACE_S + 600)
        deadline = self._clock() + LOCK_WAIT_S
        delay = self.poll_interval_s
        while True:
            answer = self._run(
                "acquire-lock",
                {"LockPath": self.host_lock_path, "Owner": owner, "StaleAfterSeconds": stale_after},
            )
            if answer.get("acquired") is True:
                box.host_lock_owner = owner
                if answer.get("broke_stale"):
                    log.warning("broke a stale Windows Sandbox host lock for %s", box.id)
                return
            log.info("sandbox %s queued behind the host lock held by %s", box.id, answer.get("holder"))
            if cancel.cancelled:
                raise CancelledError("cancelled while queued for the Windows Sandbox host lock")
            if self._clock() >= deadline:
                raise SandboxCreateError(
                    "timed out waiting for the Windows Sandbox host lock", code="sandbox.lock_timeout"
                )
            if cancel.wait(delay):
                raise CancelledError("cancelled while queued for the Windows Sandbox host lock")
            delay = min(delay * 2, 30.0)

    def _cleanup_stale(self, box: WsbSandbox) -> None:
        probe = self._run("probe", {})
        box.wsb_path = probe.get("wsb") or None
        classic = probe.get("classic") or None
        box.launch = "wsb" if box.wsb_path else ("classic" if classic else None)
        if box.launch is None:
            raise SandboxCreateError("Windows Sandbox is not installed on the host", code="sandbox.unavailable")
        box.classic_path = classic
        ids = [str(i) for i in probe.get("ids") or []]
        processes = probe.get("processes") or []
        if ids or processes:
            log.warning("stopping a Windows Sandbox left running (ids=%s, processes=%d)", ids, len(processes))
            stop = self._run(
                "stop",
                {"WsbPath": box.wsb_path or "", "Ids": ids},
                timeout_s=SCRIPT_TIMEOUT_S,
                kill_processes=True,
            )
            if stop.get("remaining_ids") or stop.get("remaining_processes"):
                raise SandboxCreateError(
                    "a Windows Sandbox left running could not be stopped",
                    code="sandbox.stale_running",
                    details=stop,
                )

    def _prepare(self, box: WsbSandbox, request: ExecRequest, output_bytes: int) -> None:
        box.prepared = True  # from here on, destroy() removes the folder tree
        directories = [box.job_dir, box.out_dir] + [f.host for f in box.folders if f.stage_from is not None]
        for folder in box.folders:
            if folder.stage_from is not None:
                directories += [
                    folder.host + "\\" + "\\".join(p.relative_to(folder.stage_from).parts)
                    for p in sorted(folder.stage_from.rglob("*"))
                    if p.is_dir() and not p.is_symlink()
                ]
        self._run("prepare", {"StagingRoot": self.staging_root, "Root": box.root, "Directories": directories})
        files = self._job_files(box, request, output_bytes)
        if box.launch == "classic":
            files["sandbox.wsb"] = self.wsb_config(box, logon=True)
        with tempfile.TemporaryDirectory(prefix="orch-wsb-") as tmp:
            for name, text in files.items():
                local = Path(tmp) / name
                local.write_text(text, encoding="utf-8-sig" if name.endswith(".ps1") else "utf-8")
                self.transport.copy_to(local, f"{box.job_dir}\\{name}")
        for folder in box.folders:
            if folder.stage_from is not None:
                for path in sorted(folder.stage_from.rglob("*")):
                    if path.is_file() and not path.is_symlink():
                        rel = "\\".join(path.relative_to(folder.stage_from).parts)
                        self.transport.copy_to(path, f"{folder.host}\\{rel}")

    def _launch(self, box: WsbSandbox) -> None:
        if box.launch == "wsb":
            assert box.wsb_path is not None
            started = self._run(
                "launch-wsb",
                {"WsbPath": box.wsb_path, "Config": self.wsb_config(box, logon=False, inline=True)},
            )
            sandbox_id = str(started.get("id") or "")
            if not _GUID.match(sandbox_id):
                raise SandboxCreateError(f"wsb start returned an unexpected id {sandbox_id[:80]!r}")
            box.sandbox_ids.append(sandbox_id)
            box.launched = True
            box.exec_pid = self._exec_runner(box)
        else:
            box.launched = True
            self._run("launch-classic", {"ExePath": box.classic_path, "ConfigPath": f"{box.job_dir}\\sandbox.wsb"})
            box.exec_pid = 0

    def _exec_runner(self, box: WsbSandbox) -> int:
        answer = self._run("exec-wsb", {"WsbPath": box.wsb_path, "Id": box.sandbox_ids[-1], "Command": RUNNER_COMMAND})
        return int(answer.get("pid") or 0)

    def _wait(self, box: WsbSandbox, request: ExecRequest, cancel: CancelToken) -> ExecOutcome | None:
        """Poll until the runner is done. None when it is; an outcome for timeout or cancel."""
        boot_deadline = self._clock() + self.boot_timeout_s
        run_deadline: float | None = None
        attempts = 1
        while True:
            if cancel.cancelled:
                self._stop(box)
                return ExecOutcome(None, error_code=CancelledError.code, error_message="cancelled")
            state = self._run("poll", {"OutDir": box.out_dir, "ExecPid": box.exec_pid})
            now = self._clock()
            if state.get("done") is True:
                return None
            if state.get("started") is True:
                if run_deadline is None:
                    run_deadline = now + request.timeout_s + RUNNER_GRACE_S
                elif now >= run_deadline:
                    log.info("sandbox %s: job timed out after %.0fs; stopping it", box.id, request.timeout_s)
                    self._stop(box)
                    return ExecOutcome(None, timed_out=True)
            else:
                if now >= boot_deadline:
                    raise SandboxCreateError(
                        f"Windows Sandbox did not start the job within {self.boot_timeout_s:g}s",
                        code="sandbox.boot_timeout",
                    )
                if box.launch == "wsb" and state.get("exec_running") is False:
                    if attempts >= MAX_EXEC_ATTEMPTS:
                        raise SandboxCreateError(
                            f"wsb exec could not start the runner after {attempts} attempts",
                            code="sandbox.exec_failed",
                        )
                    attempts += 1
                    log.info("sandbox %s: wsb exec ended before the runner started; retrying", box.id)
                    box.exec_pid = self._exec_runner(box)
            cancel.wait(self.poll_interval_s)

    def _fetch(self, remote: str, max_bytes: int) -> bytes:
        with tempfile.TemporaryDirectory(prefix="orch-wsb-") as tmp:
            local = Path(tmp) / "data"
            try:
                self.transport.copy_from(remote, local, max_bytes=max_bytes)
            except PayloadTooLargeError as exc:
                # The guest wrote more than the runner may: treat it as hostile, not as a spec problem.
                raise SandboxError(exc.message, code="sandbox.output_too_large", details=exc.details) from None
            return local.read_bytes()

    def _read_result(self, box: WsbSandbox, output: OutputCapture) -> ExecOutcome:
        result = guest.parse_result(self._fetch(box.out_dir + "\\result.json", guest.MAX_RESULT_BYTES))
        box.result = result
        for stream, buffer, total in (
            ("stdout", output.stdout, result.stdout_bytes),
            ("stderr", output.stderr, result.stderr_bytes),
        ):
            data = self._fetch(f"{box.out_dir}\\{stream}.txt", buffer.limit)
            output.write(stream, data)  # type: ignore[arg-type]
            _account(buffer, total, len(data))
        if result.error is not None:
            return ExecOutcome(result.exit_code, error_code=result.error.code, error_message=result.error.message)
        return ExecOutcome(result.exit_code, timed_out=result.timed_out)

    def _stop(self, box: WsbSandbox) -> None:
        if not box.launched or box.stopped:
            return
        try:
            answer = self._run(
                "stop",
                {"WsbPath": box.wsb_path or "", "Ids": list(box.sandbox_ids)},
                kill_processes=box.launch == "classic",
            )
        except OrchestratorError as exc:
            log.error("sandbox %s: stopping failed: %s", box.id, exc.message)
            return
        if answer.get("remaining_ids") or answer.get("remaining_processes"):
            log.error("sandbox %s: still running after stop: %s", box.id, answer)
            return
        box.stopped = True

    def _release_locks(self, box: WsbSandbox) -> None:
        if box.host_lock_owner is not None:
            with contextlib.suppress(OrchestratorError):
                self._run("release-lock", {"LockPath": self.host_lock_path, "Owner": box.host_lock_owner})
            box.host_lock_owner = None
        if box.local_lock is not None:
            box.local_lock.release()
            box.local_lock = None

    # -- collect / destroy / reap

    def collect(self, sandbox: Any, patterns: list[str], dest: Path | None, max_bytes: int) -> list[Artifact]:
        box: WsbSandbox = sandbox
        if not box.prepared or box.result is None:
            return []
        listing = self._run("list-output", {"OutDir": box.out_dir, "MaxEntries": 1000})
        artifacts: list[Artifact] = []
        budget = max_bytes
        for entry in listing.get("files") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise SandboxError("the guest artifact listing is malformed", code="sandbox.bad_result")
            rel = guest.safe_relative(entry["path"])
            if patterns and not any(fnmatch(str(rel), p) for p in patterns):
                continue
            size = entry.get("size")
            if not isinstance(size, int) or size < 0 or size > budget:
                log.warning("sandbox %s: skipping artifact %s (size %r over the remaining budget)", box.id, rel, size)
                continue
            data = self._fetch(f"{box.out_dir}\\artifacts\\" + "\\".join(rel.parts), budget)
            budget -= len(data)
            if dest is not None:
                target = (dest / Path(*rel.parts)).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise SandboxError(f"artifact {rel} escapes the destination", code="sandbox.bad_result")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            artifacts.append(Artifact(path=str(rel), size=len(data), sha256=hashlib.sha256(data).hexdigest()))
        return artifacts

    def destroy(self, sandbox: Any) -> TeardownReport:
        box: WsbSandbox = sandbox
        if box.destroyed:
            return TeardownReport(clean=True)
        leftovers: list[str] = []
        self._stop(box)
        if box.launched and not box.stopped:
            leftovers.append(f"windows sandbox {','.join(box.sandbox_ids) or box.launch}")
        if box.prepared:
            try:
                self._run("cleanup", {"StagingRoot": self.staging_root, "Root": box.root})
            except OrchestratorError as exc:
                leftovers.append(f"host folder {box.root}: {exc.message}")
        # Even when the sandbox would not stop: nothing stays locked forever, and the
        # stale-sandbox check of the next job stops it before launching.
        self._release_locks(box)
        box.destroyed = True
        return TeardownReport(clean=not leftovers, leftovers=leftovers)

    def reap_orphans(self, live_ids: set[str]) -> list[str]:
        """Stop a sandbox left running by a crash, when no job of ours is live and the host lock is free."""
        if live_ids:
            return []
        owner = f"{socket.gethostname()}:{os.getpid()}:reaper"
        answer = self._run(
            "acquire-lock", {"LockPath": self.host_lock_path, "Owner": owner, "StaleAfterSeconds": 2**31 - 1}
        )
        if answer.get("acquired") is not True:
            return []
        try:
            probe = self._run("probe", {})
            ids = [str(i) for i in probe.get("ids") or []]
            if ids or probe.get("processes"):
                self._run("stop", {"WsbPath": probe.get("wsb") or "", "Ids": ids}, kill_processes=True)
                return ids or ["windows-sandbox"]
            return []
        finally:
            with contextlib.suppress(OrchestratorError):
                self._run("release-lock", {"LockPath": self.host_lock_path, "Owner": owner})


def _account(buffer: CappedBuffer, reported_total: int, fetched: int) -> None:
    """Count bytes the guest produced beyond what was fetched, so ``truncated`` is right."""
    if reported_total > fetched:
        buffer.total += reported_total - fetched


def _fix_for(exc: OrchestratorError) -> str:
    code = exc.code
    if code == "transport.auth_failed":
        return "check windows.username/password or windows.secrets_file"
    if code in ("transport.unreachable", "transport.tls_failed"):
        return "check windows.host/port and that WinRM over HTTPS listens there (port 5986)"
    if code == "transport.powershell_not_found":
        return "set windows.powershell to powershell.exe or pwsh"
    return "see the error code " + code
