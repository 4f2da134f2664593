"""Host-side validation of mounts for the Linux sandbox.

Sources must be absolute and exist; symlinks are resolved here, once, and the
resolved path is what gets mounted. Targets must be absolute, normalised, and
must not cover the sandbox's own system view or the workspace itself.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.errors import InvalidMountError
from orchestrator.spec import WORKSPACE, Mount

# Targets a mount may not cover or sit inside: the system view and the sandbox plumbing.
PROTECTED = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/dev", "/sys", "/run")
INTERNAL = "/.orchestrator"


@dataclass(frozen=True)
class ResolvedMount:
    source: Path
    target: str
    read_only: bool
    is_dir: bool


def validate_target(target: str) -> str:
    if not target.startswith("/"):
        raise InvalidMountError(f"mount target {target!r} must be an absolute path", details={"target": target})
    pure = PurePosixPath(target)
    if ".." in pure.parts:
        raise InvalidMountError(f"mount target {target!r} must not contain '..'", details={"target": target})
    normal = str(pure)
    if normal in ("/", WORKSPACE, "/tmp"):
        raise InvalidMountError(f"mount target {normal!r} cannot be replaced", details={"target": target})
    for protected in (*PROTECTED, INTERNAL):
        if normal == protected or normal.startswith(protected + "/"):
            raise InvalidMountError(
                f"mount target {normal!r} would overlay the sandbox's system path {protected}",
                details={"target": target, "protected": protected},
            )
    return normal


def _readable_by_others(path: Path) -> bool:
    """Whether a process with no relation to the owner can reach ``path`` (every parent searchable)."""
    for parent in [*reversed(path.parents)]:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    mode = os.stat(path).st_mode
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need


def resolve_mounts(mounts: list[Mount], *, sandbox_is_other_user: bool) -> list[ResolvedMount]:
    resolved: list[ResolvedMount] = []
    seen: set[str] = set()
    for mount in mounts:
        if not mount.source.startswith("/"):
            raise InvalidMountError(
                f"mount source {mount.source!r} must be an absolute path", details={"source": mount.source}
            )
        source = Path(mount.source)
        try:
            real = source.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidMountError(
                f"mount source {mount.source!r} does not exist", details={"source": mount.source}
            ) from None
        except (OSError, RuntimeError) as exc:
            raise InvalidMountError(
                f"mount source {mount.source!r} cannot be resolved: {exc}", details={"source": mount.source}
            ) from None
        mode = os.stat(real).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise InvalidMountError(
                f"mount source {mount.source!r} is neither a file nor a directory", details={"source": mount.source}
            )
        if sandbox_is_other_user and not _readable_by_others(real):
            raise InvalidMountError(
                f"mount source {mount.source!r} is not readable by the unprivileged sandbox user; "
                "make it and its parent directories world-readable/searchable, or copy it elsewhere",
                details={"source": mount.source},
            )
        if sandbox_is_other_user and not mount.read_only and not mode & stat.S_IWOTH:
            raise InvalidMountError(
                f"read-write mount {mount.source!r}: the sandbox runs as an unprivileged host user that cannot "
                "write it; make it world-writable (e.g. a fresh temporary directory) or collect files as artifacts",
                details={"source": mount.source},
            )
        target = validate_target(mount.target)
        if target in seen:
            raise InvalidMountError(f"two mounts share the target {target!r}", details={"target": target})
        seen.add(target)
        resolved.append(ResolvedMount(real, target, mount.read_only, stat.S_ISDIR(mode)))
    # Parents first, so a mount inside another mount lands on top of it.
    resolved.sort(key=lambda m: m.target.count("/"))
    return resolved
