"""Pure planning: names, host paths, VM shape and input layout for one job VM.

Nothing here does I/O on the Hyper-V host. Every name is derived from the
sandbox id and settings; every value that came from a job is validated here
and later reaches PowerShell only as a parameter.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from orchestrator.errors import InvalidMountError, InvalidPathError, SpecError
from orchestrator.providers.hyperv.config import IMAGE_VERSION_PATTERN, HyperVSettings
from orchestrator.spec import WORKSPACE, JobSpec, Mount

MARKER = "orchestrator:hyperv:v1"
"""First token of the Notes of every VM we create; the garbage collector keys on it."""

_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
_BAD_CHARS = re.compile(r'[<>:"|?*\x00-\x1f]')
_DRIVE_PATH = re.compile(r"^[A-Za-z]:\\")


@dataclass(frozen=True)
class Shape:
    """What a VM is sized to; pool VMs are interchangeable only within one shape."""

    image: str
    memory_mb: int
    cpus: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024


@dataclass(frozen=True)
class DataDisk:
    parent: str  # read-only data VHDX on the host
    child: str  # throw-away differencing child, deleted at teardown
    label: str  # volume label the guest looks for
    target: str  # guest path (a junction to the volume)


@dataclass(frozen=True)
class IsoMount:
    source: str  # path on the control plane
    iso_dir: str  # folder inside the ISO
    target: str  # guest path (a junction into the DVD)


@dataclass(frozen=True)
class VmPlan:
    sandbox_id: str
    vm_name: str
    vm_dir: str
    child_vhd: str
    base_vhd: str
    iso_path: str
    iso_label: str
    notes: str
    shape: Shape
    processor_max_percent: int
    iso_mounts: tuple[IsoMount, ...] = ()
    data_disks: tuple[DataDisk, ...] = ()

    def leftovers_to_check(self) -> list[str]:
        return [self.child_vhd, self.iso_path, *(d.child for d in self.data_disks), self.vm_dir]


def vm_name_for(settings: HyperVSettings, sandbox_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9-]", "-", sandbox_id)[:40].strip("-") or "job"
    digest = hashlib.sha256(sandbox_id.encode()).hexdigest()[:8]
    return f"{settings.vm_prefix}{safe}-{digest}"


def owner_from_notes(notes: str) -> str | None:
    """The sandbox id recorded in a VM's Notes, or None when the VM is not ours."""
    first, _, rest = notes.partition(" ")
    if first != MARKER:
        return None
    for token in rest.split():
        key, _, value = token.partition("=")
        if key == "sandbox":
            return value
    return None


def image_version(settings: HyperVSettings, spec_image: str | None) -> str:
    version = spec_image or settings.default_image
    if not re.match(IMAGE_VERSION_PATTERN, version):
        raise SpecError(f"invalid image version {version!r}", code="spec.invalid_image", details={"image": version})
    return version


def shape_for(settings: HyperVSettings, spec: JobSpec) -> Shape:
    return Shape(
        image=image_version(settings, spec.image),
        memory_mb=max(settings.min_memory_mb, _round_up(spec.limits.memory_mb, 2)),
        cpus=max(1, math.ceil(spec.limits.cpus)),
    )


def make_plan(settings: HyperVSettings, sandbox_id: str, spec: JobSpec, shape: Shape | None = None) -> VmPlan:
    shape = shape or shape_for(settings, spec)
    vm_name = vm_name_for(settings, sandbox_id)
    vm_dir = PureWindowsPath(settings.vm_root) / vm_name
    iso_mounts, data_disks = classify_mounts(spec.mounts, vm_dir)
    # Set-VMProcessor -Maximum is a percentage of the VM's virtual processors.
    percent = min(100, max(1, round(100 * spec.limits.cpus / shape.cpus)))
    return VmPlan(
        sandbox_id=sandbox_id,
        vm_name=vm_name,
        vm_dir=str(vm_dir),
        child_vhd=str(vm_dir / "system.vhdx"),
        base_vhd=str(PureWindowsPath(settings.images_dir) / shape.image / "base.vhdx"),
        iso_path=str(vm_dir / "inputs.iso"),
        iso_label="ORCH" + hashlib.sha256(sandbox_id.encode()).hexdigest()[:12].upper(),
        notes=f"{MARKER} sandbox={note_token(sandbox_id)} image={shape.image}",
        shape=shape,
        processor_max_percent=percent,
        iso_mounts=tuple(iso_mounts),
        data_disks=tuple(data_disks),
    )


def classify_mounts(mounts: list[Mount], vm_dir: PureWindowsPath) -> tuple[list[IsoMount], list[DataDisk]]:
    """Split mounts into folders packed into the job ISO and data VHDXs attached as children."""
    iso: list[IsoMount] = []
    disks: list[DataDisk] = []
    targets: set[str] = set()
    for index, mount in enumerate(mounts):
        if not mount.read_only:
            raise InvalidMountError(
                f"mount {mount.target!r}: Hyper-V inputs are read-only; outputs come back as artifacts",
                details={"target": mount.target},
            )
        target = guest_target(mount.target)
        if target.lower() in targets:
            raise InvalidMountError(f"mount target {mount.target!r} is used twice", details={"target": mount.target})
        targets.add(target.lower())
        if _DRIVE_PATH.match(mount.source) and mount.source.lower().endswith(".vhdx"):
            parent = PureWindowsPath(mount.source)
            _check_windows_components(parent.parts[1:], mount.source)
            label = parent.stem
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", label):
                raise InvalidMountError(
                    f"data disk {mount.source!r}: the file stem must be its volume label (1-32 of A-Z 0-9 _ -)",
                    details={"source": mount.source},
                )
            if any(d.label.lower() == label.lower() for d in disks):
                raise InvalidMountError(
                    f"data disk {mount.source!r}: another data disk has the volume label {label!r}",
                    details={"source": mount.source},
                )
            disks.append(DataDisk(str(parent), str(vm_dir / f"data{index}.vhdx"), label, target))
        else:
            if mount.source.startswith("\\\\") or "\\" in mount.source:
                raise InvalidMountError(
                    f"mount source {mount.source!r}: give a control-plane folder or a host X:\\...\\name.vhdx",
                    details={"source": mount.source},
                )
            iso.append(IsoMount(mount.source, f"mounts/{index}", target))
    return iso, disks


def guest_target(target: str) -> str:
    """Map a mount target (``/workspace/x``, ``x``, ``C:\\Jobs\\workspace\\x``) to a relative path."""
    raw = target.replace("\\", "/")
    lowered = raw.lower()
    for prefix in ("c:/jobs/workspace/", WORKSPACE + "/"):
        if lowered.startswith(prefix):
            raw = raw[len(prefix) :]
            break
    else:
        if _DRIVE_PATH.match(target) or raw.startswith("/"):
            raise InvalidMountError(
                f"mount target {target!r} must be inside the workspace ({WORKSPACE})",
                details={"target": target},
            )
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidMountError(f"mount target {target!r} escapes the workspace", details={"target": target})
    _check_windows_components(parts, target)
    return "\\".join(parts)


def guest_workdir(settings: HyperVSettings, workdir: str) -> str:
    pure = PurePosixPath(workdir)
    if pure == PurePosixPath(WORKSPACE):
        return settings.guest_workspace
    try:
        rel = pure.relative_to(WORKSPACE)
    except ValueError:
        raise InvalidPathError(
            f"workdir {workdir!r}: on Hyper-V the working directory must be inside {WORKSPACE}",
            details={"workdir": workdir},
        ) from None
    _check_windows_components(rel.parts, workdir)
    return str(PureWindowsPath(settings.guest_workspace, *rel.parts))


def _check_windows_components(parts: tuple[str, ...] | list[str], original: str) -> None:
    for part in parts:
        stem = part.split(".")[0].upper()
        if _BAD_CHARS.search(part) or part.endswith((".", " ")) or stem in _RESERVED or len(part) > 255:
            raise InvalidMountError(
                f"path {original!r}: {part!r} is not a valid Windows file name", details={"path": original}
            )


def note_token(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", "_", value)[:100]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
