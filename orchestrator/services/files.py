"""Files in a live sandbox's workspace, reached from the host.

The workspace is written by untrusted code while we touch it, so every path is
walked one component at a time from an open directory fd with ``O_NOFOLLOW``:
a symlink, or a directory swapped for one mid-walk, is refused rather than
followed. Only regular files are read; uploads are written to a temporary name
and renamed into place, and they stop at a byte cap while still streaming.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic_core import PydanticCustomError

from orchestrator.errors import ConflictError, InvalidPathError, NotFoundError, PayloadTooLargeError
from orchestrator.spec import workspace_relative

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LISTING = 10_000


@dataclass(frozen=True)
class FileEntry:
    path: str
    type: str  # "file" | "directory" | "symlink" | "other"
    size: int
    mode: int
    mtime: float


def relative_path(path: str) -> str:
    """A workspace-relative path, or InvalidPathError for one that escapes the workspace."""
    try:
        return workspace_relative(path)
    except PydanticCustomError as exc:
        message = exc.message().replace("{path!r}", repr(path))
        raise InvalidPathError(message, details={"path": path}) from None


def _walk(workspace: Path, parts: tuple[str, ...], *, create: bool, owner: tuple[int, int] | None) -> int:
    try:
        fd = os.open(workspace, _DIR_FLAGS)
    except OSError as exc:
        raise NotFoundError(f"the workspace is gone: {exc.strerror}", code="session.not_active") from None
    walked: list[str] = []
    try:
        for part in parts:
            walked.append(part)
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise NotFoundError(f"{'/'.join(walked)} does not exist", code="file.not_found") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                if owner is not None:
                    os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InvalidPathError(
                        f"{'/'.join(walked)} is not a directory (symlinks are never followed)",
                        details={"path": "/".join(walked)},
                    ) from None
                raise
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


class Upload:
    """One file being written into a workspace; ``commit`` renames it into place."""

    def __init__(self, workspace: Path, path: str, *, owner: tuple[int, int] | None, max_bytes: int, mode: int):
        rel = PurePosixPath(relative_path(path))
        self.path = str(rel)
        self.max_bytes = max_bytes
        self.mode = mode
        self.owner = owner
        self.size = 0
        self._name = rel.name
        self._dir_fd = _walk(workspace, rel.parent.parts, create=True, owner=owner)
        self._tmp = f".orch-upload-{secrets.token_hex(8)}"
        try:
            self._fd = os.open(
                self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                dir_fd=self._dir_fd,
            )  # fmt: skip
        except OSError:
            os.close(self._dir_fd)
            raise

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise PayloadTooLargeError(
                f"the upload exceeds the {self.max_bytes}-byte limit",
                code="upload.too_large",
                details={"limit": self.max_bytes},
            )
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise PayloadTooLargeError(
                    "the workspace is full (its disk_mb limit)", code="session.workspace_full"
                ) from None
            raise

    def commit(self) -> FileEntry:
        try:
            os.fchmod(self._fd, self.mode)
            if self.owner is not None:
                os.fchown(self._fd, *self.owner)
            info = os.fstat(self._fd)
            os.close(self._fd)
            self._fd = -1
            try:
                os.rename(self._tmp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            except IsADirectoryError:
                raise ConflictError(f"{self.path} is a directory", code="file.is_directory") from None
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise ConflictError(f"{self.path} is a directory", code="file.is_directory") from None
                raise
        except BaseException:
            self.abort()
            raise
        os.close(self._dir_fd)
        self._dir_fd = -1
        return FileEntry(self.path, "file", info.st_size, stat.S_IMODE(info.st_mode), info.st_mtime)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._dir_fd >= 0:
            try:
                os.unlink(self._tmp, dir_fd=self._dir_fd)
            except OSError:
                pass
            os.close(self._dir_fd)
            self._dir_fd = -1


def open_regular_file(workspace: Path, path: str) -> tuple[int, int]:
    """An open fd on a regular file and its size; never follows a symlink."""
    rel = PurePosixPath(relative_path(path))
    dir_fd = _walk(workspace, rel.parent.parts, create=False, owner=None)
    try:
        fd = os.open(rel.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise NotFoundError(f"{rel} does not exist", code="file.not_found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidPathError(f"{rel} is a symlink; symlinks are never followed") from None
        raise
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ConflictError(f"{rel} is {kind}", code="file.not_regular")
    return fd, info.st_size


def list_directory(workspace: Path, path: str) -> tuple[list[FileEntry], bool]:
    """The entries of one workspace directory ('' for the top), without following symlinks."""
    parts = PurePosixPath(relative_path(path)).parts if path not in ("", ".", "/", "/workspace") else ()
    fd = _walk(workspace, parts, create=False, owner=None)
    prefix = "/".join(parts)
    entries: list[FileEntry] = []
    truncated = False
    try:
        with os.scandir(fd) as it:
            for entry in it:
                if len(entries) >= MAX_LISTING:
                    truncated = True
                    break
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    kind = "file"
                elif stat.S_ISDIR(info.st_mode):
                    kind = "directory"
                elif stat.S_ISLNK(info.st_mode):
                    kind = "symlink"
                else:
                    kind = "other"
                name = f"{prefix}/{entry.name}" if prefix else entry.name
                entries.append(FileEntry(name, kind, info.st_size, stat.S_IMODE(info.st_mode), info.st_mtime))
    finally:
        os.close(fd)
    return sorted(entries, key=lambda e: e.path), truncated
