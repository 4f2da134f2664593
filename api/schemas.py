"""What goes over the wire, per direction. Records from the services are converted here."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.lifecycle import JobState
from orchestrator.result import ErrorInfo, JobResult
from orchestrator.services.files import FileEntry
from orchestrator.services.store import EventRecord, JobRecord, SessionRecord
from orchestrator.spec import MAX_ARGV_BYTES, MAX_INLINE_FILE_BYTES, WORKSPACE, JobSpec, Limits, SessionSpec

SessionStatus = Literal["starting", "active", "expired", "deleted", "error"]
FileType = Literal["file", "directory", "symlink", "other"]


def iso(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def iso_or_none(ts: float | None) -> datetime | None:
    return iso(ts) if ts is not None else None


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


class JobPublic(BaseModel):
    id: str
    status: JobState
    tenant: str
    spec: JobSpec
    effective_limits: Limits
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: JobResult | None

    @classmethod
    def of(cls, record: JobRecord) -> JobPublic:
        return cls.model_construct(
            id=record.id,
            status=JobState(record.status),
            tenant=record.tenant,
            spec=JobSpec.model_validate(record.spec),
            effective_limits=Limits.model_validate(record.effective_limits),
            created_at=iso(record.created_at),
            started_at=iso_or_none(record.started_at),
            finished_at=iso_or_none(record.finished_at),
            result=JobResult.model_validate(record.result) if record.result is not None else None,
        )


class JobsPage(BaseModel):
    data: list[JobPublic]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= to get the next (older) page.")


class EventPublic(BaseModel):
    seq: int
    state: str
    previous: str | None
    at: datetime
    details: dict[str, Any]

    @classmethod
    def of(cls, record: EventRecord) -> EventPublic:
        return cls(
            seq=record.seq, state=record.state, previous=record.previous, at=iso(record.at), details=record.details
        )


class EventsPage(BaseModel):
    data: list[EventPublic]


class SessionPublic(BaseModel):
    id: str
    status: SessionStatus
    tenant: str
    provider: str
    spec: SessionSpec
    effective_limits: Limits
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime
    finished_at: datetime | None
    error: ErrorInfo | None

    @classmethod
    def of(cls, record: SessionRecord) -> SessionPublic:
        return cls.model_construct(
            id=record.id,
            status=cast(SessionStatus, record.status),
            tenant=record.tenant,
            provider=record.provider,
            spec=SessionSpec.model_validate(record.spec),
            effective_limits=Limits.model_validate(record.effective_limits),
            created_at=iso(record.created_at),
            expires_at=iso(record.expires_at),
            last_used_at=iso(record.last_used_at),
            finished_at=iso_or_none(record.finished_at),
            error=ErrorInfo.model_validate(record.error) if record.error is not None else None,
        )


class SessionsPage(BaseModel):
    data: list[SessionPublic]
    next_cursor: str | None = None


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(min_length=1, max_length=4096, description="argv; argv[0] is looked up in PATH.")
    timeout_s: float = Field(60.0, gt=0, le=7 * 24 * 3600)
    env: dict[str, str] = Field(default_factory=dict)
    stdin: str | None = Field(None, max_length=2 * MAX_INLINE_FILE_BYTES)
    stdin_encoding: Literal["utf-8", "base64"] = "utf-8"
    cwd: str = Field(WORKSPACE, max_length=4096)

    def argv_size(self) -> int:
        return sum(len(a.encode()) + 1 for a in self.command)

    def stdin_bytes(self) -> bytes | None:
        if self.stdin is None:
            return None
        if self.stdin_encoding == "base64":
            return base64.b64decode(self.stdin, validate=True)
        return self.stdin.encode()


MAX_EXEC_ARGV_BYTES = MAX_ARGV_BYTES


class FilePublic(BaseModel):
    path: str
    type: FileType
    size: int
    mode: int
    mtime: datetime

    @classmethod
    def of(cls, entry: FileEntry) -> FilePublic:
        return cls.model_construct(
            path=entry.path, type=cast(FileType, entry.type), size=entry.size, mode=entry.mode, mtime=iso(entry.mtime)
        )


class FilesPage(BaseModel):
    data: list[FilePublic]
    truncated: bool = False


class ProviderPublic(BaseModel):
    name: str
    default: bool
    available: bool
    reason: str
    fix: str
    capabilities: dict[str, Any] | None
    max_limits: dict[str, Any]
    capacity: dict[str, int]


class ProvidersPage(BaseModel):
    data: list[ProviderPublic]


class Health(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str] = Field(default_factory=dict)
