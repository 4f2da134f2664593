"""The result document every provider, the CLI and the API return."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(str, enum.Enum):
    COMPLETED = "completed"
    TIMED_OUT = "timed_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    CANCELLED = "cancelled"
    ERROR = "error"


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class Artifact(BaseModel):
    path: str
    size: int
    sha256: str


class PhaseTimings(BaseModel):
    provision_ms: float = 0.0
    run_ms: float = 0.0
    collect_ms: float = 0.0
    teardown_ms: float = 0.0


class JobResult(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    id: str
    status: JobStatus
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: float = 0.0
    provider: str
    error: ErrorInfo | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    timings: PhaseTimings = Field(default_factory=PhaseTimings)
    usage: dict[str, Any] = Field(default_factory=dict, description="Provider-reported resource usage.")
    image: str | None = None
