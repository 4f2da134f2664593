"""Every host-side script of the VM lifecycle, as data: template + parameters.

A ``Step`` is what one ``transport.run`` call gets. The templates take no
values; everything that varies (names, paths, limits, the job itself) is a
parameter, so nothing a job supplies is ever spliced into script text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import Any

from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.providers.hyperv.plan import MARKER, VmPlan
from orchestrator.windows.scripts import PSScript, render_script

SECRET_PARAMETERS = frozenset({"GuestPassword"})
MAX_RESULT_CHARS = 64 * 1024 * 1024


@dataclass(frozen=True)
class Step:
    name: str
    script: PSScript
    parameters: dict[str, Any]
    timeout_s: float
    secret: frozenset[str] = field(default=SECRET_PARAMETERS)

    def redacted_parameters(self) -> dict[str, Any]:
        return {k: ("<redacted>" if k in self.secret else v) for k, v in self.parameters.items()}


def _step(name: str, parameters: dict[str, Any], timeout_s: float) -> Step:
    return Step(name, render_script(f"hyperv/{name}.ps1.j2"), parameters, timeout_s)


def _guest(plan: VmPlan, credentials: tuple[str, str]) -> dict[str, Any]:
    return {"VMName": plan.vm_name, "GuestUser": credentials[0], "GuestPassword": credentials[1]}


def create_vm(settings: HyperVSettings, plan: VmPlan) -> Step:
    return _step(
        "create-vm",
        {
            "VMName": plan.vm_name,
            "VMDir": plan.vm_dir,
            "BaseVhd": plan.base_vhd,
            "ChildVhd": plan.child_vhd,
            "MemoryBytes": plan.shape.memory_bytes,
            "ProcessorCount": plan.shape.cpus,
            "ProcessorMaximum": plan.processor_max_percent,
            "MaximumIOPS": settings.max_iops,
            "SecureBootTemplate": settings.secure_boot_template,
            "Notes": plan.notes,
        },
        settings.step_timeout_s,
    )


def saved_state_dir(settings: HyperVSettings, image: str) -> str:
    return str(PureWindowsPath(settings.saved_state_dir) / image)


def import_vm(settings: HyperVSettings, plan: VmPlan) -> Step:
    return _step(
        "import-vm",
        {
            "VMName": plan.vm_name,
            "ExportDir": saved_state_dir(settings, plan.shape.image),
            "VMDir": plan.vm_dir,
            "ProcessorMaximum": plan.processor_max_percent,
            "MaximumIOPS": settings.max_iops,
            "Notes": plan.notes,
        },
        settings.step_timeout_s,
    )


def remove_nic(settings: HyperVSettings, plan: VmPlan) -> Step:
    return _step("remove-nic", {"VMName": plan.vm_name}, settings.step_timeout_s)


def attach_inputs(settings: HyperVSettings, plan: VmPlan, *, with_iso: bool, set_cpu_cap: bool = False) -> Step:
    params: dict[str, Any] = {"VMName": plan.vm_name}
    if set_cpu_cap:
        params["ProcessorMaximum"] = plan.processor_max_percent
    if with_iso:
        params["IsoPath"] = plan.iso_path
    if plan.data_disks:
        params["DataParents"] = [d.parent for d in plan.data_disks]
        params["DataChildren"] = [d.child for d in plan.data_disks]
    return _step("attach-inputs", params, settings.step_timeout_s)


def start_vm(settings: HyperVSettings, plan: VmPlan) -> Step:
    return _step("start-vm", {"VMName": plan.vm_name}, settings.step_timeout_s)


def probe_guest(plan: VmPlan, credentials: tuple[str, str], timeout_s: float) -> Step:
    return _step("probe-guest", _guest(plan, credentials), timeout_s)


def prepare_guest(settings: HyperVSettings, plan: VmPlan, credentials: tuple[str, str], *, with_iso: bool) -> Step:
    params = _guest(plan, credentials)
    params["Workspace"] = settings.guest_workspace
    if with_iso:
        params["IsoLabel"] = plan.iso_label
        if plan.iso_mounts:
            params["MountDirs"] = [m.iso_dir.replace("/", "\\") for m in plan.iso_mounts]
            params["MountTargets"] = [m.target for m in plan.iso_mounts]
    if plan.data_disks:
        params["DiskLabels"] = [d.label for d in plan.data_disks]
        params["DiskTargets"] = [d.target for d in plan.data_disks]
    return _step("prepare-guest", params, settings.step_timeout_s)


def run_job(
    settings: HyperVSettings,
    plan: VmPlan,
    credentials: tuple[str, str],
    job: dict[str, Any],
    *,
    run_dir: str,
    timeout_s: float,
) -> Step:
    output_bytes = int(job.get("output_bytes", 1024 * 1024))
    params = _guest(plan, credentials)
    params.update(
        {
            "RunnerPath": str(PureWindowsPath(settings.guest_root) / "runner.ps1"),
            "JobDir": run_dir,
            "JobJson": json.dumps(job, ensure_ascii=True, sort_keys=True),
            # base64 of the capped streams, plus room for result.json
            "MaxResultChars": min(MAX_RESULT_CHARS, (output_bytes + 2) // 3 * 4 + 1024 * 1024),
        }
    )
    return _step("run-job", params, timeout_s)


def list_artifacts(settings: HyperVSettings, plan: VmPlan, credentials: tuple[str, str], patterns: list[str]) -> Step:
    params = _guest(plan, credentials)
    params.update(
        {"Workspace": settings.guest_workspace, "Patterns": patterns, "MaxFiles": settings.artifact_max_files}
    )
    return _step("list-artifacts", params, settings.step_timeout_s)


def fetch_artifacts(
    settings: HyperVSettings,
    plan: VmPlan,
    credentials: tuple[str, str],
    paths: list[str],
    caps: list[int],
    host_dir: str,
) -> Step:
    params = _guest(plan, credentials)
    params.update({"Workspace": settings.guest_workspace, "GuestPaths": paths, "MaxBytes": caps, "HostDir": host_dir})
    return _step("fetch-artifacts", params, settings.step_timeout_s)


def turn_off(settings: HyperVSettings, vm_name: str) -> Step:
    return _step("turn-off", {"VMName": vm_name}, settings.step_timeout_s)


def metering(settings: HyperVSettings, plan: VmPlan) -> Step:
    return _step("metering", {"VMName": plan.vm_name}, settings.step_timeout_s)


def teardown(settings: HyperVSettings, vm_name: str, paths: list[str]) -> Step:
    return _step("teardown", {"VMName": vm_name, "Paths": paths}, settings.step_timeout_s)


def gc_list(settings: HyperVSettings) -> Step:
    return _step(
        "gc-list",
        {"Prefix": settings.vm_prefix, "Marker": MARKER, "VMRoot": settings.vm_root},
        settings.step_timeout_s,
    )


def probe_host(settings: HyperVSettings, image: str) -> Step:
    image_dir = PureWindowsPath(settings.images_dir) / image
    return _step(
        "probe-host",
        {"BaseVhd": str(image_dir / "base.vhdx"), "ManifestPath": str(image_dir / "manifest.json")},
        min(settings.step_timeout_s, 60.0),
    )


def export_saved(settings: HyperVSettings, plan: VmPlan) -> Step:
    return _step(
        "export-saved",
        {"VMName": plan.vm_name, "ExportDir": saved_state_dir(settings, plan.shape.image)},
        settings.step_timeout_s,
    )
