"""Local interactive sessions: one record file per session, owned by the ``up`` process.

``<runtime_dir>/sessions/<id>.json`` says which process owns the session (pid
plus its start time, so a recycled pid is not mistaken for the owner), what
it is and when it expires. ``orchestrator sessions rm`` asks a live owner to
tear down (SIGTERM: the same path as closing its terminal) and destroys the
sandbox itself when the owner is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import procs
from orchestrator.errors import NotFoundError, SandboxError, SpecError
from orchestrator.settings import Settings

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class SessionRecord:
    id: str
    provider: str
    owner_pid: int
    owner_start: str | None
    created_at: float
    expires_at: float
    command: list[str]
    mounts: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    output: str | None = None

    @property
    def owner_alive(self) -> bool:
        return self.owner_start is not None and procs.start_time(self.owner_pid) == self.owner_start

    @property
    def state(self) -> str:
        return "running" if self.owner_alive else "orphaned"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state
        return data


def validate_id(session_id: str) -> str:
    if not _ID.match(session_id):
        raise SpecError(f"invalid session id {session_id!r}", code="spec.invalid_id")
    return session_id


class SessionRegistry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.directory = settings.runtime_dir / "sessions"

    def _path(self, session_id: str) -> Path:
        return self.directory / f"{validate_id(session_id)}.json"

    def add(self, record: SessionRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(record.id)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(record), handle)
        os.replace(tmp, path)

    def remove(self, session_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(session_id).unlink()

    def get(self, session_id: str) -> SessionRecord:
        try:
            raw = json.loads(self._path(session_id).read_text(encoding="utf-8"))
            return SessionRecord(**raw)
        except FileNotFoundError:
            raise NotFoundError(f"no local session {session_id!r}", code="session.not_found") from None
        except (ValueError, TypeError) as exc:
            raise SandboxError(
                f"session record {session_id!r} is unreadable: {exc}", code="session.bad_record"
            ) from None

    def list(self) -> list[SessionRecord]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("*.json")):
            with contextlib.suppress(NotFoundError, SandboxError):
                found.append(self.get(path.stem))
        return found

    def terminate(self, session_id: str, *, timeout_s: float = 30.0) -> tuple[SessionRecord, bool]:
        """Tear a session down: through its live owner, else directly. True when the owner did it."""
        record = self.get(session_id)
        via_owner = record.owner_alive and record.owner_pid != os.getpid()
        if via_owner:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.owner_pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if not self._path(session_id).exists() or not record.owner_alive:
                    break
                time.sleep(0.05)
            else:
                raise SandboxError(
                    f"session {session_id} did not end within {timeout_s:g}s of SIGTERM to its owner "
                    f"(pid {record.owner_pid})",
                    code="session.teardown_timeout",
                )
        if self._path(session_id).exists():
            destroy_orphan(self.settings, record)
            self.remove(session_id)
        return record, via_owner


def destroy_orphan(settings: Settings, record: SessionRecord) -> list[str]:
    """Destroy a session whose owner died (kill -9, crash): only this session, nothing else."""
    if record.provider != "linux":
        return []  # Windows sessions are stopped by the provider's own orphan reaping on its next start
    from orchestrator.providers.linux import LinuxProvider

    provider = LinuxProvider(settings)
    others = set(provider.live_sandbox_ids()) - {record.id}
    return provider.reap_orphans(others)
