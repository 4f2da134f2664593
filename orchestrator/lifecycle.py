"""The job lifecycle as a state machine with no I/O.

The engine feeds it what happened (``provisioned``, ``exited``, ``failed``...); the
machine decides the next state, refuses impossible transitions and records an
event for each one. Whatever goes wrong, every path that got past ``provisioning``
passes through ``tearing_down`` before reaching a terminal state.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator.result import JobStatus


class JobState(str, enum.Enum):
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    COLLECTING = "collecting"
    TEARING_DOWN = "tearing_down"
    COMPLETED = "completed"
    TIMED_OUT = "timed_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {JobState.COMPLETED, JobState.TIMED_OUT, JobState.LIMIT_EXCEEDED, JobState.CANCELLED, JobState.ERROR}
)

_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PROVISIONING, JobState.CANCELLED, JobState.ERROR}),
    JobState.PROVISIONING: frozenset({JobState.RUNNING, JobState.TEARING_DOWN}),
    JobState.RUNNING: frozenset({JobState.COLLECTING, JobState.TEARING_DOWN}),
    JobState.COLLECTING: frozenset({JobState.TEARING_DOWN}),
    JobState.TEARING_DOWN: TERMINAL,
}


class InvalidTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class LifecycleEvent:
    job_id: str
    state: JobState
    previous: JobState | None
    at: float
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "event": self.state.value,
            "previous": self.previous.value if self.previous else None,
            "at": self.at,
            "details": self.details,
        }


@dataclass
class Lifecycle:
    """Tracks one job. ``outcome`` is the terminal state chosen while running."""

    job_id: str
    state: JobState = JobState.QUEUED
    outcome: JobStatus | None = None
    events: list[LifecycleEvent] = field(default_factory=list)
    clock: Any = time.time

    def __post_init__(self) -> None:
        self._record(self.state, None, {})

    def _record(self, state: JobState, previous: JobState | None, details: dict[str, Any]) -> LifecycleEvent:
        event = LifecycleEvent(self.job_id, state, previous, self.clock(), details)
        self.events.append(event)
        return event

    def advance(self, target: JobState, **details: Any) -> LifecycleEvent:
        if target not in _ALLOWED.get(self.state, frozenset()):
            raise InvalidTransition(f"{self.job_id}: {self.state.value} -> {target.value} is not allowed")
        previous, self.state = self.state, target
        return self._record(target, previous, details)

    # The engine reports facts; the machine picks the transition.

    def provisioning(self) -> LifecycleEvent:
        return self.advance(JobState.PROVISIONING)

    def provisioned(self, **details: Any) -> LifecycleEvent:
        return self.advance(JobState.RUNNING, **details)

    def exited(self, status: JobStatus, **details: Any) -> LifecycleEvent:
        self.outcome = status
        return self.advance(JobState.COLLECTING, status=status.value, **details)

    def failed(self, status: JobStatus, **details: Any) -> LifecycleEvent:
        """Anything went wrong (or was cancelled) before collection finished."""
        if self.outcome is None or status in (JobStatus.ERROR, JobStatus.CANCELLED):
            self.outcome = status
        if self.state in (JobState.QUEUED,):
            return self.advance(JobState(status.value), **details)
        if self.state is JobState.TEARING_DOWN or self.state.terminal:
            return self._record(self.state, self.state, {"note": "failure after teardown began", **details})
        return self.advance(JobState.TEARING_DOWN, reason=status.value, **details)

    def collected(self, **details: Any) -> LifecycleEvent:
        if self.state is not JobState.COLLECTING:
            raise InvalidTransition(f"{self.job_id}: collected while {self.state.value}")
        return self.advance(JobState.TEARING_DOWN, **details)

    def torn_down(self, final: JobStatus | None = None, **details: Any) -> LifecycleEvent:
        """Teardown finished; ``final`` overrides the outcome when collection or teardown failed."""
        if final is not None:
            self.outcome = final
        outcome = self.outcome or JobStatus.ERROR
        return self.advance(JobState(outcome.value), **details)
