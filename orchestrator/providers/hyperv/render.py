"""``orchestrator render --provider hyperv``: every script a job would run, with its parameters.

Pure: reads no file and talks to no host. The guest password is redacted.
Artifact fetching depends on what the guest lists, so its parameters show the
shape only.
"""

from __future__ import annotations

import json
from pathlib import PureWindowsPath
from typing import Any

from orchestrator.providers.base import ExecRequest
from orchestrator.providers.hyperv import steps
from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.providers.hyperv.inputs import describe, needs_iso
from orchestrator.providers.hyperv.plan import guest_workdir, make_plan
from orchestrator.spec import JobSpec

REDACTED = "<redacted>"


def job_document(settings: HyperVSettings, spec: JobSpec, request: ExecRequest) -> dict[str, Any]:
    return {
        "version": 1,
        "argv": list(request.argv),
        "env": dict(request.env),
        "cwd": guest_workdir(settings, request.cwd),
        "timeout_s": request.timeout_s,
        "output_bytes": spec.limits.output_bytes,
        "stdin": request.stdin.decode("utf-8", "replace") if request.stdin is not None else None,
        "files": [],
        "artifacts": [],
        "max_artifact_bytes": 0,
    }


def render_job(settings: HyperVSettings, sandbox_id: str, spec: JobSpec, *, script_name: str) -> dict[str, str]:
    plan = make_plan(settings, sandbox_id, spec)
    credentials = (settings.guest_username, REDACTED)
    with_iso = needs_iso(plan, spec)
    script_path = str(PureWindowsPath(settings.guest_workspace) / script_name)
    request = ExecRequest(
        argv=spec.argv(script_path),
        env=dict(spec.env),
        cwd=spec.workdir,
        timeout_s=spec.limits.timeout_s,
        stdin=spec.stdin.encode("utf-8") if spec.stdin is not None else None,
    )
    run_dir = str(PureWindowsPath(settings.guest_workspace).parent / "run-1-<random>")
    sequence: list[steps.Step] = [
        steps.import_vm(settings, plan) if settings.clone_mode == "saved_state" else steps.create_vm(settings, plan),
        steps.remove_nic(settings, plan),
        steps.attach_inputs(settings, plan, with_iso=with_iso),
        steps.start_vm(settings, plan),
        steps.probe_guest(plan, credentials, 60.0),
        steps.prepare_guest(settings, plan, credentials, with_iso=with_iso),
        steps.run_job(
            settings,
            plan,
            credentials,
            job_document(settings, spec, request),
            run_dir=run_dir,
            timeout_s=spec.limits.timeout_s,
        ),
        steps.metering(settings, plan),
    ]
    if spec.artifacts:
        host_dir = str(PureWindowsPath(plan.vm_dir) / "artifacts-<random>")
        sequence += [
            steps.list_artifacts(settings, plan, credentials, list(spec.artifacts)),
            steps.fetch_artifacts(settings, plan, credentials, ["<listed path>"], [spec.limits.output_bytes], host_dir),
        ]
    sequence += [
        steps.turn_off(settings, plan.vm_name),
        steps.teardown(settings, plan.vm_name, plan.leftovers_to_check()),
        steps.gc_list(settings),
    ]
    files: dict[str, str] = {}
    for number, step in enumerate(sequence, start=1):
        stem = f"{number:02d}-{step.name}"
        files[f"{stem}.ps1"] = str(step.script)
        files[f"{stem}.params.json"] = json.dumps(step.redacted_parameters(), indent=2, sort_keys=True) + "\n"
    files["inputs.json"] = json.dumps(describe(plan, spec, script_name=script_name), indent=2) + "\n"
    files["plan.json"] = (
        json.dumps(
            {
                "vm_name": plan.vm_name,
                "image": plan.shape.image,
                "memory_mb": plan.shape.memory_mb,
                "cpus": plan.shape.cpus,
                "processor_max_percent": plan.processor_max_percent,
                "notes": plan.notes,
                "turn_off_on": "overrun of timeout_s + exec_grace_s, or cancel",
            },
            indent=2,
        )
        + "\n"
    )
    return files
