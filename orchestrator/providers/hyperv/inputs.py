"""What goes on a job's input ISO, and where the guest finds it.

Layout (UDF/Joliet/Rock Ridge names)::

    /orchestrator-inputs.txt   the ISO label; the guest finds its DVD by this file
    /files/<path>              inline files, copied into the workspace by prepare-guest
    /mounts/<n>/...            read-only mount n, linked into the workspace (never copied back)
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.providers.hyperv.iso import IsoFile, tree_files
from orchestrator.providers.hyperv.plan import VmPlan
from orchestrator.spec import JobSpec

MARKER_FILE = "orchestrator-inputs.txt"


def needs_iso(plan: VmPlan, spec: JobSpec) -> bool:
    return bool(spec.files or plan.iso_mounts or spec.script is not None)


def iso_files(plan: VmPlan, spec: JobSpec, *, script_name: str | None = None) -> list[IsoFile]:
    files = [IsoFile(MARKER_FILE, data=plan.iso_label.encode("ascii"))]
    for inline in spec.files:
        files.append(IsoFile(f"files/{inline.path}", data=inline.data()))
    if spec.script is not None and script_name is not None:
        files.append(IsoFile(f"files/{script_name}", data=spec.script.encode("utf-8")))
    for mount in plan.iso_mounts:
        files.extend(tree_files(Path(mount.source), mount.iso_dir))
    return files


def describe(plan: VmPlan, spec: JobSpec, *, script_name: str | None = None) -> dict[str, object]:
    """The ISO layout without reading any file (for ``render``)."""
    return {
        "label": plan.iso_label,
        "host_path": plan.iso_path,
        "files": [f"files/{f.path}" for f in spec.files] + ([f"files/{script_name}"] if spec.script else []),
        "mounts": [{"source": m.source, "iso_dir": m.iso_dir, "target": m.target} for m in plan.iso_mounts],
        "data_disks": [
            {"parent": d.parent, "child": d.child, "label": d.label, "target": d.target} for d in plan.data_disks
        ],
    }
