"""What the job and session services share: their dependencies."""

from __future__ import annotations

import threading

from orchestrator.engine import Engine
from orchestrator.services.observer import NullObserver, ServiceObserver
from orchestrator.services.providers import ProviderDirectory
from orchestrator.services.store import Store
from orchestrator.settings import Settings


class SandboxService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: Store,
        providers: ProviderDirectory,
        *,
        observer: ServiceObserver | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.store = store
        self.providers = providers
        self.observer: ServiceObserver = observer or NullObserver()
        self._lock = threading.Lock()
        self._accepting = False
        self._init_state()

    def _init_state(self) -> None:
        """The subclass's own bookkeeping, set up once its dependencies are in place."""
