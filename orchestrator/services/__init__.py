"""Transport-agnostic services shared by the API and the CLI.

``Services.build(settings)`` wires one store, one engine and the job, session
and token services; ``start()`` runs restart recovery (reap orphaned
sandboxes, mark interrupted work ``error``/``orchestrator.restarted``) and
then starts the workers; ``stop()`` drains them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from orchestrator.audit import JsonlAuditSink
from orchestrator.engine import Engine
from orchestrator.services.jobs import JobService
from orchestrator.services.observer import NullObserver, ServiceObserver
from orchestrator.services.providers import ProviderDirectory
from orchestrator.services.sessions import SessionService
from orchestrator.services.store import Store
from orchestrator.services.tokens import TokenService
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["JobService", "ProviderDirectory", "Services", "SessionService", "Store", "TokenService"]


@dataclass
class Services:
    settings: Settings
    engine: Engine
    store: Store
    providers: ProviderDirectory
    jobs: JobService
    sessions: SessionService
    tokens: TokenService
    started: bool = False

    @classmethod
    def build(
        cls, settings: Settings, *, engine: Engine | None = None, observer: ServiceObserver | None = None
    ) -> Services:
        engine = engine or Engine(settings, audit=JsonlAuditSink(settings.audit_path))
        store = Store.from_settings(settings)
        store.create_schema()
        providers = ProviderDirectory(engine)
        observer = observer or NullObserver()
        return cls(
            settings=settings,
            engine=engine,
            store=store,
            providers=providers,
            jobs=JobService(settings, engine, store, providers, observer=observer),
            sessions=SessionService(settings, engine, store, providers, observer=observer),
            tokens=TokenService(store),
        )

    def start(self) -> None:
        failed_jobs = self.jobs.recover()
        failed_sessions = self.sessions.recover()
        reaped = self.reap_orphans()
        if failed_jobs or failed_sessions or reaped:
            log.warning(
                "restart recovery: %d jobs and %d sessions marked orchestrator.restarted, %d sandboxes reaped",
                len(failed_jobs),
                len(failed_sessions),
                len(reaped),
            )
        self.sessions.start()
        self.jobs.start()
        self.started = True

    def reap_orphans(self) -> list[str]:
        reaped: list[str] = []
        for name in self.providers.available_names():
            try:
                reaped += self.engine.provider(name).reap_orphans(live_ids=set())
            except Exception:  # noqa: BLE001 - one provider's failure must not stop the service
                log.exception("reaping %s orphans failed", name)
        return reaped

    def stop(self) -> None:
        self.started = False
        self.jobs.stop(self.settings.api.shutdown_grace_s)
        self.sessions.stop()
        self.store.close()
