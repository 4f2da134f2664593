"""The small interface every provider implements.

A provider turns a validated spec into a sandbox (``create``), runs programs in
it (``exec``), copies results out (``collect``) and destroys it (``destroy``).
The engine drives these calls and owns the guarantees: timeouts, teardown on
every path, events. Providers own only what differs between platforms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture
from orchestrator.result import Artifact
from orchestrator.spec import JobSpec


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a provider enforces on this host; reported by ``doctor`` and ``GET /v1/providers``."""

    name: str
    isolation: str
    network_modes: tuple[str, ...] = ("none",)
    limits: dict[str, str] = field(default_factory=dict)
    max_concurrency: int | None = None
    sessions: bool = False
    interactive: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ExecRequest:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    timeout_s: float
    stdin: bytes | None = None

    @classmethod
    def for_spec(cls, spec: JobSpec, argv: list[str]) -> ExecRequest:
        """A job's environment, directory, timeout and input around the argv its provider chose."""
        return cls(
            argv=argv,
            env=dict(spec.env),
            cwd=spec.workdir,
            timeout_s=spec.limits.timeout_s,
            stdin=spec.stdin.encode() if spec.stdin is not None else None,
        )


@dataclass
class ExecOutcome:
    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    limit: str | None = None  # "memory", "cpu", "pids", "disk" when a limit ended the program
    error_code: str | None = None  # set when the program could not be started
    error_message: str = ""
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass
class TeardownReport:
    clean: bool
    leftovers: list[str] = field(default_factory=list)


class Sandbox(Protocol):
    """A provider's handle on one live sandbox."""

    id: str
    provider: str


@runtime_checkable
class Provider(Protocol):
    name: ClassVar[str]

    def availability(self) -> Availability: ...

    def capabilities(self) -> Capabilities: ...

    def create(self, sandbox_id: str, spec: JobSpec, *, session: bool = False) -> Sandbox: ...

    def exec(
        self, sandbox: Sandbox, request: ExecRequest, output: OutputCapture, cancel: CancelToken
    ) -> ExecOutcome: ...

    def collect(self, sandbox: Sandbox, patterns: list[str], dest: Path | None, max_bytes: int) -> list[Artifact]: ...

    def destroy(self, sandbox: Sandbox) -> TeardownReport: ...

    def reap_orphans(self, live_ids: set[str]) -> list[str]:
        """Destroy sandboxes this provider left behind (after a crash) that no live job owns."""
        ...
