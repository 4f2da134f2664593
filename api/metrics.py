"""Prometheus metrics, on a registry per app (no process-global state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from orchestrator.services import Services

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class Metrics:
    """The service observer that feeds Prometheus; gauges are read from the services at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_finished = Counter(
            "orchestrator_jobs_finished",
            "Jobs that reached a terminal state, by provider and status.",
            ["provider", "status"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "orchestrator_job_duration_seconds",
            "Time from a worker picking a job up to its teardown, by provider and status.",
            ["provider", "status"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.teardown_failures = Counter(
            "orchestrator_teardown_failures",
            "Sandbox teardowns that left something behind, by provider and kind (job or session).",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.sessions_ended = Counter(
            "orchestrator_sessions_ended",
            "Sessions that ended, by provider and reason.",
            ["provider", "reason"],
            registry=self.registry,
        )

    def bind(self, services: Services) -> None:
        self.registry.register(_Gauges(services))

    # ServiceObserver

    def job_finished(self, provider: str, status: str, duration_s: float) -> None:
        self.jobs_finished.labels(provider, status).inc()
        self.job_duration.labels(provider, status).observe(duration_s)

    def teardown_failed(self, provider: str, kind: str) -> None:
        self.teardown_failures.labels(provider, kind).inc()

    def session_ended(self, provider: str, reason: str) -> None:
        self.sessions_ended.labels(provider, reason).inc()


class _Gauges(Collector):
    def __init__(self, services: Services):
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("orchestrator_jobs", "Jobs in the store, by status.", labels=["status"])
        for status, count in sorted(self.services.store.count_jobs_by_status().items()):
            jobs.add_metric([status], count)
        yield jobs
        queue = GaugeMetricFamily("orchestrator_queue_depth", "Jobs waiting for a worker.", labels=["provider"])
        for provider, depth in sorted(self.services.jobs.queue_depths().items()):
            queue.add_metric([provider], depth)
        yield queue
        live = GaugeMetricFamily(
            "orchestrator_live_sandboxes", "Sandboxes alive now, by provider and kind.", labels=["provider", "kind"]
        )
        for provider, count in sorted(self.services.jobs.running_counts().items()):
            live.add_metric([provider, "job"], count)
        for provider, count in sorted(self.services.sessions.live_count().items()):
            live.add_metric([provider, "session"], count)
        yield live

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
