"""The job contract: what a caller asks to run, validated before anything starts.

The same models are used by every provider, the CLI (``orchestrator run --spec``),
the API (``POST /v1/jobs``) and batch input lines.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.errors import PayloadTooLargeError, SpecError

WORKSPACE = "/workspace"
MAX_INLINE_FILE_BYTES = 1024 * 1024
MAX_INLINE_TOTAL_BYTES = 8 * 1024 * 1024
MAX_ARGV_BYTES = 256 * 1024
MAX_ENV_BYTES = 64 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Resource limits. Every field has a safe default, so an empty spec is still bounded."""

    timeout_s: float = Field(60.0, gt=0, le=7 * 24 * 3600, description="Wall-clock limit in seconds.")
    cpu_s: float = Field(60.0, gt=0, le=7 * 24 * 3600, description="CPU time limit in seconds.")
    cpus: float = Field(1.0, gt=0, le=1024, description="CPU share as a number of CPUs.")
    memory_mb: int = Field(512, ge=16, le=4 * 1024 * 1024)
    pids: int = Field(256, ge=1, le=1_000_000, description="Processes and threads at once.")
    output_bytes: int = Field(1024 * 1024, ge=0, le=1024**3, description="Cap per output stream.")
    disk_mb: int = Field(512, ge=1, le=16 * 1024 * 1024, description="Size of the writable workspace.")


class Mount(_Strict):
    source: str = Field(min_length=1, max_length=4096, description="Host path.")
    target: str = Field(min_length=1, max_length=4096, description="Path inside the sandbox.")
    read_only: bool = True

    @field_validator("source", "target")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\0" in value:
            raise PydanticCustomError("spec.invalid_mount", "mount paths cannot contain NUL bytes")
        return value


class InlineFile(_Strict):
    """A small file placed in the workspace before the job starts."""

    path: str = Field(min_length=1, max_length=1024, description="Relative to the workspace.")
    content: str = Field(max_length=2 * MAX_INLINE_FILE_BYTES)
    encoding: Literal["utf-8", "base64"] = "utf-8"
    mode: int = Field(0o644, ge=0, le=0o777)

    @field_validator("path")
    @classmethod
    def _inside_workspace(cls, value: str) -> str:
        return workspace_relative(value)

    def data(self) -> bytes:
        if self.encoding == "base64":
            try:
                return base64.b64decode(self.content, validate=True)
            except binascii.Error as exc:
                raise SpecError(f"file {self.path!r}: content is not valid base64") from exc
        return self.content.encode("utf-8")


class NetworkPolicy(_Strict):
    mode: Literal["none"] = "none"


class JobSpec(_Strict):
    command: list[str] | None = Field(None, min_length=1, description="argv; argv[0] is looked up in PATH.")
    script: str | None = Field(None, max_length=MAX_INLINE_FILE_BYTES)
    interpreter: list[str] = Field(default_factory=lambda: ["/bin/sh"], min_length=1)
    stdin: str | None = Field(None, max_length=MAX_INLINE_FILE_BYTES)
    files: list[InlineFile] = Field(default_factory=list, max_length=1000)
    mounts: list[Mount] = Field(default_factory=list, max_length=64)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = WORKSPACE
    limits: Limits = Field(default_factory=Limits)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    artifacts: list[str] = Field(default_factory=list, max_length=100)
    provider: str | None = Field(None, description="Provider name; the host default when omitted.")
    image: str | None = Field(None, max_length=200, description="Image version for VM providers.")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("command", "interpreter")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any("\0" in arg for arg in value):
            raise PydanticCustomError("spec.invalid_command", "arguments cannot contain NUL bytes")
        if not value[0]:
            raise PydanticCustomError("spec.invalid_command", "the program name is empty")
        if sum(len(a.encode()) + 1 for a in value) > MAX_ARGV_BYTES:
            raise PydanticCustomError("spec.too_large", "the command line is too long")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_env(value)

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str) -> str:
        if "\0" in value or not value.startswith("/"):
            raise PydanticCustomError("spec.invalid_path", "workdir must be an absolute path")
        return str(PurePosixPath(value))

    @field_validator("artifacts")
    @classmethod
    def _artifacts(cls, value: list[str]) -> list[str]:
        for pattern in value:
            workspace_relative(pattern)
        return value

    @model_validator(mode="after")
    def _one_program(self) -> JobSpec:
        if (self.command is None) == (self.script is None):
            raise PydanticCustomError("spec.invalid_command", "give exactly one of 'command' or 'script'")
        total = sum(len(f.content) for f in self.files)
        if total > MAX_INLINE_TOTAL_BYTES * 4 // 3 + 4:
            raise PydanticCustomError("spec.too_large", "inline files exceed the total size limit")
        return self

    def argv(self, script_path: str) -> list[str]:
        """The argv to execute; ``script_path`` is where the provider placed ``script``."""
        if self.command is not None:
            return list(self.command)
        return [*self.interpreter, script_path]


class SessionSpec(_Strict):
    """A long-lived sandbox: a job spec without a program, plus lifetimes."""

    files: list[InlineFile] = Field(default_factory=list, max_length=1000)
    mounts: list[Mount] = Field(default_factory=list, max_length=64)
    env: dict[str, str] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    provider: str | None = None
    image: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    ttl_s: float = Field(3600.0, gt=0, le=7 * 24 * 3600)
    idle_timeout_s: float = Field(600.0, gt=0, le=7 * 24 * 3600)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_env(value)

    def as_job(self, command: list[str]) -> JobSpec:
        return JobSpec(
            command=command,
            files=self.files,
            mounts=self.mounts,
            env=self.env,
            limits=self.limits.model_copy(
                update={"timeout_s": self.ttl_s, "cpu_s": max(self.limits.cpu_s, self.ttl_s)}
            ),
            network=self.network,
            provider=self.provider,
            image=self.image,
            labels=self.labels,
        )


def validate_env(value: dict[str, str]) -> dict[str, str]:
    size = 0
    for key, val in value.items():
        if not key or "=" in key or "\0" in key or "\0" in val:
            raise PydanticCustomError("spec.invalid_env", "invalid environment variable name '{key}'", {"key": key})
        size += len(key.encode()) + len(val.encode()) + 2
    if size > MAX_ENV_BYTES:
        raise PydanticCustomError("spec.too_large", "the environment is too large")
    return value


def workspace_relative(path: str) -> str:
    """Normalise a path given relative to the workspace; refuse any that escapes it."""
    if "\0" in path:
        raise PydanticCustomError("spec.invalid_path", "path contains a NUL byte")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        try:
            pure = pure.relative_to(WORKSPACE)
        except ValueError:
            raise PydanticCustomError(
                "spec.invalid_path", "path '{path}' is outside the workspace", {"path": path}
            ) from None
    if ".." in pure.parts or str(pure) in ("", "."):
        raise PydanticCustomError("spec.invalid_path", "path '{path}' escapes the workspace", {"path": path})
    return str(pure)


def stable_code(errors: Sequence[Mapping[str, Any]]) -> str:
    """The code of a list of pydantic errors: the first of ours (``spec.*``), else ``spec.invalid``."""
    return next((str(e["type"]) for e in errors if str(e.get("type", "")).startswith("spec.")), "spec.invalid")


def translate_validation_error(exc: ValidationError, what: str = "job spec") -> SpecError:
    """Turn pydantic's error list into one SpecError with the most specific stable code."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    code = stable_code(errors)
    first = errors[0] if errors else {"loc": (), "msg": str(exc)}
    where = ".".join(str(p) for p in first.get("loc", ())) or what
    details = {"errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]}
    error_cls: type[SpecError] = PayloadTooLargeError if code == "spec.too_large" else SpecError
    return error_cls(f"invalid {what}: {where}: {first.get('msg')}", code=code, details=details)


def parse_job_spec(data: Any) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise translate_validation_error(exc) from None


def parse_session_spec(data: Any) -> SessionSpec:
    try:
        return SessionSpec.model_validate(data)
    except ValidationError as exc:
        raise translate_validation_error(exc, "session spec") from None


def load_job_spec(path: Path) -> JobSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}", code="spec.unreadable") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec file {path} is not valid JSON: {exc}", code="spec.malformed") from None
    return parse_job_spec(data)
