"""The per-job writable workspace: created fresh, size-limited, collected, destroyed.

As root the workspace is its own tmpfs with a hard size; as an ordinary user it
is a plain directory and the size limit is per file (RLIMIT_FSIZE). Everything
read back from it is treated as hostile: symlinks are never followed, only
regular files are copied, and copies stop at a byte cap.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
import shutil
import stat
from functools import cache
from pathlib import Path

from orchestrator.errors import InvalidPathError, PayloadTooLargeError
from orchestrator.result import Artifact
from orchestrator.spec import InlineFile

MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount_tmpfs(path: Path, *, size_bytes: int, uid: int, gid: int) -> None:
    options = f"size={size_bytes},mode=0700,uid={uid},gid={gid},nr_inodes={max(1024, size_bytes // 4096)}"
    rc = _libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def unmount(path: Path) -> None:
    rc = _libc().umount2(str(path).encode(), MNT_DETACH)
    if rc != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


def filesystem_type(path: Path) -> str:
    """The type of the file system holding ``path`` ("tmpfs", "ext4"...), from this namespace's mounts."""
    target = os.path.realpath(path)
    best, kind = "", ""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[fields.index("-") + 1]
    return kind


def mounted_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace."""
    prefix = str(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def write_inline_files(workspace: Path, files: list[InlineFile], *, owner: tuple[int, int] | None) -> None:
    total = 0
    for item in files:
        data = item.data()
        total += len(data)
        target = workspace / item.path
        parent = workspace
        for part in Path(item.path).parent.parts:
            parent = parent / part
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                raise InvalidPathError(f"inline file {item.path!r}: {part!r} is not a directory")
            if not parent.exists():
                parent.mkdir(mode=0o755)
                if owner:
                    os.chown(parent, *owner)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, item.mode)
        try:
            os.write(fd, data) if data else None
            os.fchmod(fd, item.mode)
            if owner:
                os.fchown(fd, *owner)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG):
                raise PayloadTooLargeError(
                    f"inline files do not fit in the workspace ({total} bytes so far)", code="spec.too_large"
                ) from None
            raise
        finally:
            os.close(fd)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _walk_regular_files(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every regular file under ``root`` without following a single symlink."""
    found: list[tuple[str, os.stat_result]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        directory = root / rel if rel else root
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(child)
            elif stat.S_ISREG(info.st_mode):
                found.append((child, info))
    return sorted(found)


def collect_artifacts(workspace: Path, patterns: list[str], dest: Path | None, max_bytes: int) -> list[Artifact]:
    if not patterns:
        return []
    regexes = [glob_to_regex(p) for p in patterns]
    artifacts: list[Artifact] = []
    budget = max_bytes
    for rel, info in _walk_regular_files(workspace):
        if not any(r.match(rel) for r in regexes):
            continue
        if info.st_size > budget:
            raise PayloadTooLargeError(
                f"artifacts exceed the {max_bytes}-byte cap at {rel!r}",
                code="artifacts.too_large",
                details={"path": rel, "cap": max_bytes},
            )
        digest = hashlib.sha256()
        size = 0
        fd = os.open(workspace / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        out = None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            if dest is not None:
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                out = open(target, "wb")  # noqa: SIM115 - closed below
            while chunk := os.read(fd, 1 << 20):
                size += len(chunk)
                if size > budget:
                    raise PayloadTooLargeError(
                        f"artifacts exceed the {max_bytes}-byte cap at {rel!r}", code="artifacts.too_large"
                    )
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
        finally:
            os.close(fd)
            if out is not None:
                out.close()
        budget -= size
        artifacts.append(Artifact(path=rel, size=size, sha256=digest.hexdigest()))
    return artifacts


def remove_tree(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return

    def _retry_writable(func, target, _exc):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700) if not os.path.islink(target) else None
        func(target)

    shutil.rmtree(path, onerror=_retry_writable)
