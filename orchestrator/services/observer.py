"""What services report for metrics, without depending on a metrics library."""

from __future__ import annotations

from typing import Protocol


class ServiceObserver(Protocol):
    def job_finished(self, provider: str, status: str, duration_s: float) -> None: ...

    def teardown_failed(self, provider: str, kind: str) -> None: ...

    def session_ended(self, provider: str, reason: str) -> None: ...


class NullObserver:
    def job_finished(self, provider: str, status: str, duration_s: float) -> None:
        return None

    def teardown_failed(self, provider: str, kind: str) -> None:
        return None

    def session_ended(self, provider: str, reason: str) -> None:
        return None
