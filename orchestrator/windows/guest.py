"""What the wsb (and hyperv) providers hand to the guest: the job file and the runner.

The runner is ``templates/guest/runner.ps1`` (its contract is at the top of that
file). This module builds the ``job.json`` it reads and validates the
``result.json`` it writes, which is hostile input: size-capped, strictly parsed.
"""

from __future__ import annotations

import base64
import json
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import InvalidMountError, SandboxError
from orchestrator.spec import WORKSPACE, JobSpec
from orchestrator.templates import read_text

RUNNER_TEMPLATE = "guest/runner.ps1"
GUEST_WORKSPACE = "C:\\workspace"
MAX_RESULT_BYTES = 64 * 1024
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
#: The interpreter used for ``spec.script`` when the spec keeps the POSIX default (/bin/sh).
DEFAULT_WINDOWS_INTERPRETER = [
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-File",
]
_FORBIDDEN_TARGETS = (
    "C:\\Windows",
    "C:\\Program Files",
    "C:\\Program Files (x86)",
    "C:\\ProgramData",
    "C:\\Users",
    "C:\\orchestrator",
)
_BAD_PATH_CHARS = set('<>"|?*') | {chr(c) for c in range(32)}


def runner_script() -> str:
    return read_text(RUNNER_TEMPLATE)


def guest_path(posix: str) -> str:
    """A POSIX path inside the sandbox (``/workspace/x``) as its Windows guest path (``C:\\workspace\\x``)."""
    pure = PurePosixPath(posix)
    try:
        rel = pure.relative_to(WORKSPACE)
    except ValueError:
        rel = pure.relative_to("/")
        return str(PureWindowsPath("C:\\", *rel.parts))
    return str(PureWindowsPath(GUEST_WORKSPACE, *rel.parts))


def validate_windows_path(path: str, what: str) -> PureWindowsPath:
    """An absolute drive path (``C:\\input``) with no ``..``, no device or UNC form, no odd characters."""
    if any(ch in _BAD_PATH_CHARS for ch in path.replace(":", "", 1)) or "/" in path:
        raise InvalidMountError(f"{what} {path!r} contains characters not allowed in a Windows path")
    pure = PureWindowsPath(path)
    if not (len(pure.drive) == 2 and pure.drive[1] == ":" and pure.is_absolute()):
        raise InvalidMountError(f"{what} {path!r} must be an absolute path with a drive letter, like C:\\input")
    if any(part in ("..", ".") for part in pure.parts[1:]) or len(pure.parts) < 2:
        raise InvalidMountError(f"{what} {path!r} must name a folder below the drive root, without '..'")
    return pure


def validate_mount_target(target: str) -> str:
    pure = validate_windows_path(target, "mount target")
    for forbidden in _FORBIDDEN_TARGETS:
        bad = PureWindowsPath(forbidden)
        if pure == bad or bad in pure.parents or pure in bad.parents:
            raise InvalidMountError(
                f"mount target {target!r} overlaps the system or orchestrator folder {forbidden}",
                details={"target": target},
            )
    return str(pure)


def job_document(
    spec: JobSpec,
    *,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    timeout_s: float,
    output_bytes: int,
    stdin: bytes | None = None,
) -> dict[str, Any]:
    return {
        "version": 1,
        "argv": argv,
        "env": dict(env),
        "cwd": cwd,
        "timeout_s": timeout_s,
        "output_bytes": output_bytes,
        "stdin": stdin.decode("utf-8", errors="replace") if stdin is not None else spec.stdin,
        "files": [
            {
                "path": str(PureWindowsPath(*PurePosixPath(f.path).parts)),
                "base64": base64.b64encode(f.data()).decode(),
            }
            for f in spec.files
        ],
        "artifacts": [str(PureWindowsPath(*PurePosixPath(p).parts)) for p in spec.artifacts],
        "max_artifact_bytes": MAX_ARTIFACT_BYTES,
    }


def script_argv(spec: JobSpec, script_path: str) -> list[str]:
    """``spec.argv`` for Windows: the POSIX default interpreter becomes Windows PowerShell."""
    if spec.script is not None and spec.interpreter == ["/bin/sh"]:
        return [*DEFAULT_WINDOWS_INTERPRETER, script_path]
    return spec.argv(script_path)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GuestError(_Strict):
    code: str = Field(max_length=100)
    message: str

    @field_validator("message")
    @classmethod
    def _short(cls, value: str) -> str:
        return value[:2000]


class GuestArtifact(_Strict):
    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)


class GuestResult(_Strict):
    version: int = Field(ge=1, le=1)
    exit_code: int | None = Field(None, ge=-(2**31), le=2**32 - 1)
    timed_out: bool
    error: GuestError | None = None
    duration_ms: int = Field(ge=0)
    stdout_bytes: int = Field(ge=0)
    stderr_bytes: int = Field(ge=0)
    artifacts: list[GuestArtifact] = Field(default_factory=list, max_length=10_000)


def parse_result(data: bytes) -> GuestResult:
    """Strictly parse the runner's ``result.json``; anything unexpected is a SandboxError."""
    if len(data) > MAX_RESULT_BYTES:
        raise SandboxError(f"the guest result is {len(data)} bytes, over {MAX_RESULT_BYTES}", code="sandbox.bad_result")
    try:
        raw = json.loads(data.decode("utf-8-sig"))
        return GuestResult.model_validate(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise SandboxError(f"the guest result is malformed: {str(exc)[:300]}", code="sandbox.bad_result") from None


def safe_relative(path: str) -> PurePosixPath:
    """A guest-reported relative path, refused if it could escape the destination."""
    if "\0" in path or "\\" in path or ":" in path:
        raise SandboxError(f"the guest reported an unsafe path {path!r}", code="sandbox.bad_result")
    pure = PurePosixPath(path)
    if pure.is_absolute() or not pure.parts or any(p in ("..", ".", "") for p in pure.parts):
        raise SandboxError(f"the guest reported an unsafe path {path!r}", code="sandbox.bad_result")
    return pure
