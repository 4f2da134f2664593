"""Persistence for the control plane: jobs, their events, sessions and API tokens.

SQLAlchemy Core over any URL; SQLite (a file under ``data_dir``, WAL mode) by
default. Everything a restart must see is written here before it is reported
to a client. With SQLite, writes from this process are serialised by a lock so
concurrent threads never meet ``database is locked``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import IntegrityError

from orchestrator.lifecycle import TERMINAL, LifecycleEvent
from orchestrator.settings import Settings

RecordT = TypeVar("RecordT")

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant", String(200), nullable=False),
    Column("status", String(32), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("effective_limits", JSON, nullable=False),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("result", JSON),
    UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
    Index("ix_jobs_tenant_seq", "tenant", "seq"),
    Index("ix_jobs_status", "status"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("state", String(32), nullable=False),
    Column("previous", String(32)),
    Column("at", Float, nullable=False),
    Column("details", JSON, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant", String(200), nullable=False),
    Column("status", String(32), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("effective_limits", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("error", JSON),
    Index("ix_sessions_tenant_seq", "tenant", "seq"),
    Index("ix_sessions_status", "status"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

ACTIVE_JOB_STATES = ("provisioning", "running", "collecting", "tearing_down")
LIVE_SESSION_STATES = ("starting", "active")
TERMINAL_JOB_STATES = tuple(state.value for state in TERMINAL)

# The statements every job runs, built once with bound parameters: building one per call (with the
# values as literals) cost SQLAlchemy several times what SQLite spends executing it.
_JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("b_id"))
_JOB_BY_ID_AND_TENANT = _JOB_BY_ID.where(jobs.c.tenant == bindparam("b_tenant"))
_CLAIM_JOB = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_id"), jobs.c.status == "queued")
    .values(status="provisioning", started_at=bindparam("b_at"))
)
_SET_JOB_STATUS = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_id"), jobs.c.status.not_in(TERMINAL_JOB_STATES))
    .values(status=bindparam("b_status"))
)
_FINISH_JOB = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), result=bindparam("b_result", type_=JSON), finished_at=bindparam("b_at"))
)
_FINISH_JOB_FROM = _FINISH_JOB.where(jobs.c.status.in_(bindparam("b_from", expanding=True)))
_TOUCH_SESSION = update(sessions).where(sessions.c.id == bindparam("b_id")).values(last_used_at=bindparam("b_at"))


@dataclass(frozen=True)
class JobRecord:
    seq: int
    id: str
    tenant: str
    status: str
    provider: str
    spec: dict[str, Any]
    effective_limits: dict[str, Any]
    idempotency_key: str | None
    request_hash: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: dict[str, Any] | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATES


@dataclass(frozen=True)
class EventRecord:
    seq: int
    job_id: str
    state: str
    previous: str | None
    at: float
    details: dict[str, Any]


@dataclass(frozen=True)
class SessionRecord:
    seq: int
    id: str
    tenant: str
    status: str
    provider: str
    spec: dict[str, Any]
    effective_limits: dict[str, Any]
    created_at: float
    expires_at: float
    last_used_at: float
    finished_at: float | None
    error: dict[str, Any] | None

    @property
    def live(self) -> bool:
        return self.status in LIVE_SESSION_STATES


@dataclass(frozen=True)
class TokenRecord:
    id: str
    tenant: str
    name: str
    token_hash: str
    created_at: float
    revoked_at: float | None


class DuplicateKey(Exception):
    """An insert hit a unique constraint (an idempotency key raced with another request)."""


def default_database_url(settings: Settings) -> str:
    return f"sqlite:///{Path(settings.data_dir) / 'orchestrator.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: SqlEngine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=32
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=32)
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(settings.api.database_url or default_database_url(settings))

    def create_schema(self) -> None:
        with self._writing() as conn:
            metadata.create_all(conn)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # --- jobs -------------------------------------------------------------

    def insert_job(self, values: dict[str, Any]) -> JobRecord:
        try:
            with self._writing() as conn:
                key = conn.execute(insert(jobs), values).inserted_primary_key
        except IntegrityError as exc:
            raise DuplicateKey(str(exc.orig)) from None
        assert key is not None
        unset = {"started_at": None, "finished_at": None, "result": None, "idempotency_key": None}
        return JobRecord(**{**unset, **values, "seq": key[0]})

    def get_job(self, job_id: str, tenant: str | None = None) -> JobRecord | None:
        with self._reading() as conn:
            if tenant is None:
                row = conn.execute(_JOB_BY_ID, {"b_id": job_id}).first()
            else:
                row = conn.execute(_JOB_BY_ID_AND_TENANT, {"b_id": job_id, "b_tenant": tenant}).first()
        return _job(row) if row is not None else None

    def find_job_by_key(self, tenant: str, key: str) -> JobRecord | None:
        query = select(jobs).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key)
        with self._reading() as conn:
            row = conn.execute(query).first()
        return _job(row) if row is not None else None

    def list_jobs(
        self, tenant: str, *, statuses: list[str] | None = None, limit: int = 50, before_seq: int | None = None
    ) -> list[JobRecord]:
        return self._page(jobs, _job, tenant, statuses, limit, before_seq)

    def jobs_in(self, statuses: tuple[str, ...]) -> list[JobRecord]:
        return self._in_states(jobs, _job, statuses)

    def count_jobs_by_status(self) -> dict[str, int]:
        query = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        with self._reading() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}

    def claim_job(self, job_id: str, now: float) -> bool:
        """queued -> provisioning, unless it was cancelled meanwhile."""
        with self._writing() as conn:
            done = conn.execute(_CLAIM_JOB, {"b_id": job_id, "b_at": now})
        return done.rowcount == 1

    def record_events(self, job_id: str, events: list[LifecycleEvent], *, set_status: bool) -> None:
        """Append events in one transaction; with ``set_status`` the job takes the last one's state."""
        with self._writing() as conn:
            self._insert_events(conn, job_id, events)
            if set_status and events:
                conn.execute(_SET_JOB_STATUS, {"b_id": job_id, "b_status": events[-1].state.value})

    @staticmethod
    def _insert_events(conn: Connection, job_id: str, events: list[LifecycleEvent]) -> None:
        if events:
            rows = [
                {
                    "job_id": job_id,
                    "state": ev.state.value,
                    "previous": ev.previous.value if ev.previous else None,
                    "at": ev.at,
                    "details": _jsonable(ev.details),
                }
                for ev in events
            ]
            conn.execute(insert(job_events), rows)

    def add_event(self, job_id: str, state: str, previous: str | None, at: float, details: dict[str, Any]) -> None:
        with self._writing() as conn:
            conn.execute(
                insert(job_events).values(
                    job_id=job_id, state=state, previous=previous, at=at, details=_jsonable(details)
                )
            )

    def finish_job(
        self,
        job_id: str,
        status: str,
        result: dict[str, Any],
        now: float,
        *,
        only_from: tuple[str, ...] | None = None,
        events: list[LifecycleEvent] | None = None,
    ) -> bool:
        """The result, and the last lifecycle events, in one transaction."""
        params: dict[str, Any] = {"b_id": job_id, "b_status": status, "b_result": result, "b_at": now}
        if only_from is not None:
            params["b_from"] = list(only_from)
        with self._writing() as conn:
            self._insert_events(conn, job_id, events or [])
            done = conn.execute(_FINISH_JOB if only_from is None else _FINISH_JOB_FROM, params)
        return done.rowcount == 1

    def job_events(self, job_id: str) -> list[EventRecord]:
        query = select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.seq)
        with self._reading() as conn:
            return [
                EventRecord(r.seq, r.job_id, r.state, r.previous, r.at, dict(r.details or {}))
                for r in conn.execute(query)
            ]

    # --- sessions ---------------------------------------------------------

    def insert_session(self, values: dict[str, Any]) -> SessionRecord:
        with self._writing() as conn:
            conn.execute(insert(sessions).values(**values))
        record = self.get_session(values["id"])
        assert record is not None
        return record

    def get_session(self, session_id: str, tenant: str | None = None) -> SessionRecord | None:
        query = select(sessions).where(sessions.c.id == session_id)
        if tenant is not None:
            query = query.where(sessions.c.tenant == tenant)
        with self._reading() as conn:
            row = conn.execute(query).first()
        return _session(row) if row is not None else None

    def list_sessions(
        self, tenant: str, *, statuses: list[str] | None = None, limit: int = 50, before_seq: int | None = None
    ) -> list[SessionRecord]:
        return self._page(sessions, _session, tenant, statuses, limit, before_seq)

    def sessions_in(self, statuses: tuple[str, ...]) -> list[SessionRecord]:
        return self._in_states(sessions, _session, statuses)

    def _page(
        self,
        table: Table,
        to_record: Callable[[Any], RecordT],
        tenant: str,
        statuses: list[str] | None,
        limit: int,
        before_seq: int | None,
    ) -> list[RecordT]:
        """A tenant's rows, newest first, ``limit`` at a time, before a cursor."""
        query = select(table).where(table.c.tenant == tenant)
        if statuses:
            query = query.where(table.c.status.in_(statuses))
        if before_seq is not None:
            query = query.where(table.c.seq < before_seq)
        query = query.order_by(table.c.seq.desc()).limit(limit)
        with self._reading() as conn:
            return [to_record(row) for row in conn.execute(query)]

    def _in_states(self, table: Table, to_record: Callable[[Any], RecordT], statuses: tuple[str, ...]) -> list[RecordT]:
        query = select(table).where(table.c.status.in_(statuses)).order_by(table.c.seq)
        with self._reading() as conn:
            return [to_record(row) for row in conn.execute(query)]

    def update_session(self, session_id: str, *, only_from: tuple[str, ...] | None = None, **values: Any) -> bool:
        query = update(sessions).where(sessions.c.id == session_id)
        if only_from is not None:
            query = query.where(sessions.c.status.in_(only_from))
        with self._writing() as conn:
            done = conn.execute(query.values(**values))
        return done.rowcount == 1

    def touch_sessions(self, last_used: dict[str, float]) -> None:
        if not last_used:
            return
        with self._writing() as conn:
            conn.execute(_TOUCH_SESSION, [{"b_id": session_id, "b_at": at} for session_id, at in last_used.items()])

    # --- tokens -----------------------------------------------------------

    def insert_token(self, record: TokenRecord) -> None:
        with self._writing() as conn:
            conn.execute(
                insert(tokens).values(
                    id=record.id,
                    tenant=record.tenant,
                    name=record.name,
                    token_hash=record.token_hash,
                    created_at=record.created_at,
                    revoked_at=record.revoked_at,
                )
            )

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        with self._reading() as conn:
            row = conn.execute(select(tokens).where(tokens.c.token_hash == token_hash)).first()
        return _token(row) if row is not None else None

    def list_tokens(self, *, tenant: str | None = None) -> list[TokenRecord]:
        query = select(tokens).order_by(tokens.c.created_at)
        if tenant is not None:
            query = query.where(tokens.c.tenant == tenant)
        with self._reading() as conn:
            return [_token(row) for row in conn.execute(query)]

    def active_token_count(self) -> int:
        query = select(func.count()).select_from(tokens).where(tokens.c.revoked_at.is_(None))
        with self._reading() as conn:
            return int(conn.execute(query).scalar_one())

    def revoke_token(self, token_id: str, now: float) -> bool:
        with self._writing() as conn:
            done = conn.execute(
                update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=now)
            )
        return done.rowcount == 1


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        out[str(key)] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
    return out


def _from_row(kind: Callable[..., RecordT], row: Row[Any]) -> RecordT:
    """A record from its row: each record's fields are its table's columns."""
    return kind(**row._mapping)


_job = functools.partial(_from_row, JobRecord)
_session = functools.partial(_from_row, SessionRecord)
_token = functools.partial(_from_row, TokenRecord)
