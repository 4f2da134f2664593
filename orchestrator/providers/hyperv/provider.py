"""``HyperVProvider``: one disposable Hyper-V VM per job (or session), from a golden image.

create  -> warm-pool VM, or: create/import VM, remove NIC, attach ISO + data disks, start, wait for PS Direct
exec    -> guest runner over PowerShell Direct; host-side wall timeout and cancel turn the VM off
collect -> list, then Copy-Item -FromSession with size caps, re-checked here
destroy -> Stop-VM -TurnOff, Remove-VM, delete disks/ISO/folder, verify (retried)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import json
import logging
import secrets
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.cancel import CancelToken
from orchestrator.errors import (
    CapacityError,
    OrchestratorError,
    ProviderUnavailableError,
    SandboxCreateError,
    SandboxError,
)
from orchestrator.output import OutputCapture
from orchestrator.providers.base import (
    Availability,
    Capabilities,
    ExecOutcome,
    ExecRequest,
    Sandbox,
    TeardownReport,
)
from orchestrator.providers.hyperv import steps
from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.providers.hyperv.gc import collect_garbage
from orchestrator.providers.hyperv.host import Host
from orchestrator.providers.hyperv.inputs import iso_files, needs_iso
from orchestrator.providers.hyperv.iso import build_iso
from orchestrator.providers.hyperv.lifecycle import Clock, Sleep, VmLifecycle
from orchestrator.providers.hyperv.plan import Shape, VmPlan, make_plan, vm_name_for
from orchestrator.providers.hyperv.pool import Capacity, PooledVm, WarmPool
from orchestrator.result import Artifact
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec, workspace_relative
from orchestrator.windows import guest
from orchestrator.windows.transport import PowerShellTransport

log = logging.getLogger(__name__)

SCRIPT_NAME = "job-script"
"""Where ``spec.script`` lands, relative to the guest workspace."""

_KNOWN_RUNNER_ERRORS = {"job.command_not_found", "runner.error", "runner.artifacts"}


@dataclass
class HyperVSandbox:
    id: str
    plan: VmPlan
    spec: JobSpec
    image: str
    reserved_mb: int
    provider: str = "hyperv"
    warm: bool = False
    boot_s: float = 0.0
    runs: int = 0
    usage: dict[str, Any] = field(default_factory=dict)


class _RunnerError(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: str = Field("runner.error", max_length=100)
    message: str = Field("", max_length=8192)


class _RunnerResult(BaseModel):
    """``result.json`` written by templates/guest/runner.ps1. Parsed as hostile input."""

    model_config = ConfigDict(extra="ignore")
    version: int = 1
    exit_code: int | None = Field(None, ge=-(2**31), le=2**32)
    timed_out: bool = False
    error: _RunnerError | None = None
    duration_ms: float = Field(0, ge=0)
    stdout_bytes: int = Field(0, ge=0)
    stderr_bytes: int = Field(0, ge=0)


class HyperVProvider:
    name: ClassVar[str] = "hyperv"

    def __init__(
        self,
        settings: Settings,
        transport: PowerShellTransport | None = None,
        *,
        hyperv: HyperVSettings | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        poll_interval_s: float = 0.1,
    ):
        self.settings = settings
        self.hv = hyperv or HyperVSettings.model_validate({})
        self._transport = transport
        self._owns_transport = transport is None
        self._clock = clock
        self._sleep = sleep
        self.poll_interval_s = poll_interval_s
        self.capacity = Capacity(self.hv.max_vms, self.hv.memory_budget_mb)
        self._lock = threading.Lock()
        self._sandboxes: dict[str, HyperVSandbox] = {}
        self._busy: set[str] = set()  # VM names being created or destroyed
        self._live_ids: set[str] = set()
        self._pools: dict[str, WarmPool] = {}
        self._started = False
        self._stop = threading.Event()
        self._gc_thread: threading.Thread | None = None
        self._host: Host | None = None
        self._lifecycle: VmLifecycle | None = None

    # --- plumbing ---------------------------------------------------------------

    @property
    def host(self) -> Host:
        if self._host is None:
            self._host = Host(self._get_transport())
        return self._host

    @property
    def lifecycle(self) -> VmLifecycle:
        if self._lifecycle is None:
            self._lifecycle = VmLifecycle(
                self.hv, self.host, self.hv.guest_credentials, clock=self._clock, sleep=self._sleep
            )
        return self._lifecycle

    def _get_transport(self) -> PowerShellTransport:
        if self._transport is None:
            problem = self._host_problem()
            if problem:
                raise ProviderUnavailableError(problem[0], details={"fix": problem[1]})
            from orchestrator.windows.scripts import transport_from_settings

            self._transport = transport_from_settings(self.settings.windows)
        return self._transport

    def _host_problem(self) -> tuple[str, str] | None:
        windows = self.settings.windows
        if windows.transport == "local" and sys.platform != "win32":
            return (
                f"the hyperv provider drives Hyper-V on a Windows host; this is {sys.platform}",
                "run the orchestrator on a Windows host with Hyper-V, or set ORCH_WINDOWS__TRANSPORT=winrm "
                "and ORCH_WINDOWS__HOST to reach one",
            )
        if windows.transport == "winrm" and not windows.host:
            return ("no Windows host is configured for WinRM", "set ORCH_WINDOWS__HOST (and credentials)")
        return None

    # --- Provider protocol --------------------------------------------------------

    def availability(self) -> Availability:
        if self._transport is None:
            problem = self._host_problem()
            if problem:
                return Availability(False, reason=problem[0], fix=problem[1])
        try:
            self.hv.guest_credentials()
            reply = self.host.run(steps.probe_host(self.hv, self.hv.default_image))
        except OrchestratorError as exc:
            return Availability(
                False,
                reason=f"Hyper-V host check failed: {exc.message}",
                fix=str(exc.details.get("fix", "enable Hyper-V and run as a member of 'Hyper-V Administrators'")),
            )
        if reply.get("base_image") is not True:
            return Availability(
                False,
                reason=f"image {self.hv.default_image} is not on the host under {self.hv.images_dir}",
                fix="build it with images/windows/build-image.ps1 (see images/windows/README.md)",
            )
        details: dict[str, Any] = {k: reply.get(k) for k in ("host", "logical_processors", "memory_bytes")}
        with contextlib.suppress(ValueError, TypeError):
            details["image"] = json.loads(str(reply.get("manifest") or "{}"))
        return Availability(True, details=details)

    def capabilities(self) -> Capabilities:
        limits = {
            "timeout_s": "host-enforced: the VM is turned off on overrun",
            "memory_mb": f"static VM memory (at least {self.hv.min_memory_mb} MB)",
            "cpus": "virtual processors, plus Set-VMProcessor -Maximum for fractions",
            "output_bytes": "capped by the guest runner and again by the host",
        }
        if self.hv.max_iops:
            limits["disk_iops"] = f"Set-VMHardDiskDrive -MaximumIOPS {self.hv.max_iops}"
        return Capabilities(
            name=self.name,
            isolation="Hyper-V virtual machine, one disposable VM per job, no network adapter",
            network_modes=("none",),
            limits=limits,
            max_concurrency=self.hv.max_vms,
            sessions=True,
            interactive=False,
            notes=(
                "inputs are read-only by construction (ISO on a DVD drive, differencing data-disk child)",
                f"warm pool: {self.hv.pool_size} VM(s) of {self.hv.pool_memory_mb} MB per image; "
                f"clone mode {self.hv.clone_mode}",
                "output is returned when the job ends, not streamed live",
            ),
        )

    def create(self, sandbox_id: str, spec: JobSpec, *, session: bool = False) -> HyperVSandbox:
        plan = make_plan(self.hv, sandbox_id, spec)  # validates everything before any host work
        self.start()
        shape = plan.shape
        pool = self._pools.get(shape.image)
        pooled = pool.take(shape) if pool is not None else None
        if pooled is not None:
            plan = make_plan(self.hv, pooled.plan.sandbox_id, spec, shape)
        else:
            self._reserve(shape)
        sandbox = HyperVSandbox(sandbox_id, plan, spec, shape.image, shape.memory_mb, warm=pooled is not None)
        with self._lock:
            self._sandboxes[sandbox_id] = sandbox
            self._busy.add(plan.vm_name)
        log.info("hyperv create %s as %s (%s)", sandbox_id, plan.vm_name, "warm" if pooled else "cold")
        started = self._clock()
        workdir = Path(tempfile.mkdtemp(prefix="orch-hyperv-"))
        try:
            with_iso = needs_iso(plan, spec)
            if pooled is None:
                self.lifecycle.create(plan, from_saved_state=self._use_saved_state(shape))
            if with_iso:
                local_iso = workdir / "inputs.iso"
                build_iso(
                    local_iso,
                    iso_files(plan, spec, script_name=SCRIPT_NAME),
                    label=plan.iso_label,
                    max_bytes=self.hv.iso_max_bytes,
                )
                self._get_transport().copy_to(local_iso, plan.iso_path)
            self.lifecycle.attach(plan, with_iso=with_iso, set_cpu_cap=pooled is not None)
            if pooled is None:
                sandbox.boot_s = self.lifecycle.start(plan).seconds
            else:
                sandbox.boot_s = pooled.boot_s
            self.lifecycle.prepare(plan, with_iso=with_iso)
        except BaseException as exc:
            report = self._teardown(sandbox)
            if isinstance(exc, OrchestratorError) and not report.clean:
                exc.details.setdefault("leftovers", report.leftovers)
            if isinstance(exc, OrchestratorError) or not isinstance(exc, Exception):
                raise
            raise SandboxCreateError(f"creating {plan.vm_name} failed: {exc}") from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with self._lock:
                self._busy.discard(plan.vm_name)
        sandbox.usage["provision_s"] = round(self._clock() - started, 3)
        return sandbox

    def exec(self, sandbox: Sandbox, request: ExecRequest, output: OutputCapture, cancel: CancelToken) -> ExecOutcome:
        box = self._own(sandbox)
        box.runs += 1
        job = self._job_document(box, request)
        run_dir = str(PureWindowsPath(self.hv.guest_workspace).parent / f"run-{box.runs}-{secrets.token_hex(6)}")
        hard_limit = request.timeout_s + 2 * self.hv.exec_grace_s + 60.0
        step = steps.run_job(self.hv, box.plan, self.hv.guest_credentials(), job, run_dir=run_dir, timeout_s=hard_limit)
        done = threading.Event()
        holder: dict[str, Any] = {}

        def work() -> None:
            try:
                holder["reply"] = self.host.run(step)
            except BaseException as exc:  # handed to the caller's thread below
                holder["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name=f"hyperv-exec-{box.plan.vm_name}", daemon=True)
        worker.start()
        deadline = self._clock() + request.timeout_s + self.hv.exec_grace_s
        stopped: str | None = None
        while not done.is_set():
            if cancel.cancelled:
                stopped = "cancelled"
                break
            remaining = deadline - self._clock()
            if remaining <= 0:
                stopped = "timeout"
                break
            done.wait(min(self.poll_interval_s, remaining))
        if stopped is not None:
            log.warning("hyperv %s: %s, turning the VM off", box.plan.vm_name, stopped)
            self.lifecycle.turn_off(box.plan.vm_name)
            done.wait(max(5.0, self.hv.exec_grace_s))
            usage = self._usage(box)
            if stopped == "timeout":
                return ExecOutcome(exit_code=None, timed_out=True, usage=usage)
            return ExecOutcome(
                exit_code=None,
                error_code="job.cancelled",
                error_message=cancel.reason or "cancelled",
                usage=usage,
            )
        if "error" in holder:
            error = holder["error"]
            raise error if isinstance(error, BaseException) else SandboxError(str(error))
        return self._outcome(box, holder["reply"], output)

    def collect(self, sandbox: Sandbox, patterns: list[str], dest: Path | None, max_bytes: int) -> list[Artifact]:
        box = self._own(sandbox)
        if not patterns:
            return []
        credentials = self.hv.guest_credentials()
        reply = self.host.run(steps.list_artifacts(self.hv, box.plan, credentials, patterns))
        chosen = self._choose_artifacts(reply.get("files"), patterns, max_bytes)
        if not chosen:
            return []
        host_dir = str(PureWindowsPath(box.plan.vm_dir) / f"artifacts-{secrets.token_hex(4)}")
        fetched = self.host.run(
            steps.fetch_artifacts(
                self.hv, box.plan, credentials, [p for p, _ in chosen], [c for _, c in chosen], host_dir
            )
        )
        target_root = dest if dest is not None else Path(tempfile.mkdtemp(prefix="orch-hyperv-artifacts-"))
        artifacts: list[Artifact] = []
        try:
            entries = fetched.get("files") or []
            for entry in entries if isinstance(entries, list) else [entries]:
                artifact = self._fetch_one(entry, chosen, host_dir, target_root)
                if artifact is not None:
                    artifacts.append(artifact)
        finally:
            if dest is None:
                shutil.rmtree(target_root, ignore_errors=True)
        return artifacts

    def destroy(self, sandbox: Sandbox) -> TeardownReport:
        box = self._own(sandbox)
        with self._lock:
            self._busy.add(box.plan.vm_name)
        try:
            return self._teardown(box)
        finally:
            with self._lock:
                self._busy.discard(box.plan.vm_name)

    def reap_orphans(self, live_ids: set[str]) -> list[str]:
        with self._lock:
            self._live_ids = set(live_ids)
        return collect_garbage(self.hv, self.host, self._protected(), self.lifecycle.teardown)

    # --- life of the provider object ------------------------------------------------

    def start(self) -> None:
        """Start the warm pools and the periodic garbage collector (idempotent)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        if self.hv.pool_size > 0:
            shape = Shape(self.hv.default_image, self.hv.pool_memory_mb, self.hv.pool_cpus)
            pool = WarmPool(shape, self.hv.pool_size, self.capacity, self._boot_pooled, self._destroy_pooled)
            self._pools[shape.image] = pool
            pool.start()
        if self.hv.gc_interval_s > 0 and (self.hv.pool_size > 0 or self._owns_transport):
            self._gc_thread = threading.Thread(target=self._gc_loop, name="hyperv-gc", daemon=True)
            self._gc_thread.start()

    def close(self) -> None:
        self._stop.set()
        for pool in list(self._pools.values()):
            pool.close()
        if self._gc_thread is not None:
            self._gc_thread.join(10.0)
        if self._owns_transport and self._transport is not None:
            self._transport.close()

    def default_request(self, spec: JobSpec) -> ExecRequest:
        """The engine's exec request for a Windows guest: script path and default interpreter mapped."""
        script_path = str(PureWindowsPath(self.hv.guest_workspace) / SCRIPT_NAME)
        return ExecRequest.for_spec(spec, guest.script_argv(spec, script_path))

    def render(self, sandbox_id: str, spec: JobSpec) -> dict[str, str]:
        from orchestrator.providers.hyperv.render import render_job

        return render_job(self.hv, sandbox_id, spec, script_name=SCRIPT_NAME)

    def build_saved_state(self, image: str | None = None) -> str:
        """Build the fast-path export for ``image``: boot, probe, Save-VM, Export-VM, tear down."""
        shape = Shape(image or self.hv.default_image, self.hv.pool_memory_mb, self.hv.pool_cpus)
        plan = make_plan(self.hv, f"template-{shape.image}", JobSpec.model_validate({"command": ["template"]}), shape)
        try:
            self.lifecycle.create(plan)
            self.lifecycle.start(plan)
            reply = self.host.run(steps.export_saved(self.hv, plan))
        finally:
            report = self.lifecycle.teardown(plan.vm_name, plan.leftovers_to_check())
            if not report.clean:
                log.warning("template VM %s left %s", plan.vm_name, report.leftovers)
        return str(reply.get("vmcx", ""))

    # --- internals ----------------------------------------------------------------------

    def _own(self, sandbox: Sandbox) -> HyperVSandbox:
        if not isinstance(sandbox, HyperVSandbox):
            raise SandboxError(f"not a hyperv sandbox: {sandbox!r}")
        return sandbox

    def _use_saved_state(self, shape: Shape) -> bool:
        return self.hv.clone_mode == "saved_state" and shape == Shape(
            shape.image, self.hv.pool_memory_mb, self.hv.pool_cpus
        )

    def _reserve(self, shape: Shape) -> None:
        while not self.capacity.try_reserve(shape.memory_mb):
            if not any(pool.evict_one() for pool in self._pools.values()):
                vms, mb = self.capacity.used
                raise CapacityError(
                    f"the Hyper-V host is at capacity ({vms}/{self.capacity.max_vms} VMs, "
                    f"{mb}/{self.capacity.memory_mb} MB); retry later",
                    details={"fix": "raise ORCH_HYPERV_MAX_VMS / ORCH_HYPERV_MEMORY_BUDGET_MB if the host has room"},
                )

    def _teardown(self, box: HyperVSandbox) -> TeardownReport:
        report = self.lifecycle.teardown(box.plan.vm_name, box.plan.leftovers_to_check())
        with self._lock:
            known = self._sandboxes.pop(box.id, None) is not None
        if known:
            self.capacity.release(box.reserved_mb)
            for pool in self._pools.values():
                pool.wake()
        return report

    def _boot_pooled(self, shape: Shape) -> PooledVm:
        pool_id = f"pool-{secrets.token_hex(6)}"
        plan = make_plan(self.hv, pool_id, JobSpec.model_validate({"command": ["pool"]}), shape)
        with self._lock:
            self._busy.add(plan.vm_name)
        try:
            self.lifecycle.create(plan, from_saved_state=self._use_saved_state(shape))
            boot = self.lifecycle.start(plan)
            return PooledVm(plan, boot.seconds)
        except BaseException:
            self.lifecycle.teardown(plan.vm_name, plan.leftovers_to_check())
            raise
        finally:
            with self._lock:
                self._busy.discard(plan.vm_name)

    def _destroy_pooled(self, vm: PooledVm) -> None:
        report = self.lifecycle.teardown(vm.plan.vm_name, vm.plan.leftovers_to_check())
        if not report.clean:
            log.warning("pooled VM %s left %s", vm.plan.vm_name, report.leftovers)

    def _protected(self) -> set[str]:
        with self._lock:
            names = {box.plan.vm_name for box in self._sandboxes.values()} | set(self._busy)
            names |= {vm_name_for(self.hv, sid) for sid in self._live_ids}
        for pool in self._pools.values():
            names |= pool.owned_names()
        return names

    def _gc_loop(self) -> None:
        while not self._stop.wait(self.hv.gc_interval_s):
            try:
                collect_garbage(self.hv, self.host, self._protected(), self.lifecycle.teardown)
            except OrchestratorError as exc:
                log.warning("periodic garbage collection failed: %s", exc.message)

    def _job_document(self, box: HyperVSandbox, request: ExecRequest) -> dict[str, Any]:
        from orchestrator.providers.hyperv.plan import guest_workdir

        return {
            "version": 1,
            "argv": list(request.argv),
            "env": dict(request.env),
            "cwd": guest_workdir(self.hv, request.cwd),
            "timeout_s": request.timeout_s,
            "output_bytes": box.spec.limits.output_bytes,
            "stdin": request.stdin.decode("utf-8", "replace") if request.stdin is not None else None,
            "files": [],
            "artifacts": [],
            "max_artifact_bytes": 0,
        }

    def _usage(self, box: HyperVSandbox) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "image": box.image,
            "vm": box.plan.vm_name,
            "warm_pool": box.warm,
            "boot_s": round(box.boot_s, 3),
            **box.usage,
        }
        metering = self.lifecycle.metering(box.plan)
        if metering:
            usage["metering"] = metering
        return usage

    def _outcome(self, box: HyperVSandbox, reply: dict[str, Any], output: OutputCapture) -> ExecOutcome:
        usage = self._usage(box)
        for stream in ("stdout", "stderr"):
            data = _b64(reply.get(stream))
            if data:
                output.write(stream, data)
        try:
            result = _RunnerResult.model_validate_json(str(reply.get("result") or ""))
        except ValidationError as exc:
            return ExecOutcome(
                exit_code=None,
                error_code="sandbox.bad_guest_reply",
                error_message=f"the guest runner's result is not valid: {exc.error_count()} problem(s)",
                usage=usage,
            )
        # The runner kept only the first output_bytes; record what it dropped so truncation shows.
        output.stdout.total = max(output.stdout.total, result.stdout_bytes)
        output.stderr.total = max(output.stderr.total, result.stderr_bytes)
        usage["guest_duration_ms"] = result.duration_ms
        if result.timed_out:
            return ExecOutcome(exit_code=None, timed_out=True, usage=usage)
        if result.error is not None and result.exit_code is None:
            code = result.error.code if result.error.code in _KNOWN_RUNNER_ERRORS else "runner.error"
            return ExecOutcome(exit_code=None, error_code=code, error_message=result.error.message, usage=usage)
        return ExecOutcome(exit_code=result.exit_code, usage=usage)

    def _choose_artifacts(self, raw: object, patterns: list[str], max_bytes: int) -> list[tuple[str, int]]:
        chosen: list[tuple[str, int]] = []
        budget = max_bytes
        seen: set[str] = set()
        for line in (raw if isinstance(raw, list) else [raw] if raw else [])[: self.hv.artifact_max_files]:
            size_text, sep, rel = str(line).partition("|")
            if not sep or not size_text.isdigit():
                continue
            try:
                rel = workspace_relative(rel)
            except Exception:  # the guest named something outside the workspace: skip it
                continue
            if rel in seen or not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                continue
            size = int(size_text)
            if size > budget:
                continue
            seen.add(rel)
            chosen.append((rel, size))
            budget -= size
        return chosen

    def _fetch_one(
        self, entry: object, chosen: list[tuple[str, int]], host_dir: str, target_root: Path
    ) -> Artifact | None:
        if not isinstance(entry, dict) or entry.get("kept") is not True:
            return None
        index = entry.get("index")
        if not isinstance(index, int) or not 0 <= index < len(chosen):
            return None
        rel, cap = chosen[index]
        local = (target_root / rel).resolve()
        if not local.is_relative_to(target_root.resolve()):
            return None
        local.parent.mkdir(parents=True, exist_ok=True)
        remote = str(PureWindowsPath(host_dir) / f"{index}.bin")
        self._get_transport().copy_from(remote, local, max_bytes=cap)
        data = local.read_bytes()
        if len(data) > cap:
            local.unlink()
            return None
        return Artifact(path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _b64(value: object) -> bytes:
    if not isinstance(value, str) or not value:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""
