"""Which providers this host can run, probed once and cached."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.engine import Engine
from orchestrator.errors import OrchestratorError, ProviderUnavailableError
from orchestrator.providers import provider_names
from orchestrator.providers.base import Capabilities, Provider

_TTL_S = 60.0


@dataclass(frozen=True)
class ProviderStatus:
    name: str
    available: bool
    reason: str = ""
    fix: str = ""
    details: dict[str, Any] | None = None
    capabilities: Capabilities | None = None


class ProviderDirectory:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._cache: dict[str, tuple[float, ProviderStatus]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return provider_names()

    def status(self, name: str) -> ProviderStatus:
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached[0] < _TTL_S:
            return cached[1]
        status = self._probe(name)
        with self._lock:
            self._cache[name] = (time.monotonic(), status)
        return status

    def _probe(self, name: str) -> ProviderStatus:
        try:
            provider = self.engine.provider(name)
            found = provider.availability()
            if not found.available:
                return ProviderStatus(name, False, found.reason, found.fix, dict(found.details))
            return ProviderStatus(name, True, details=dict(found.details), capabilities=provider.capabilities())
        except OrchestratorError as exc:
            return ProviderStatus(name, False, exc.message, details=dict(exc.details))
        except Exception as exc:  # noqa: BLE001 - a broken provider module is reported, not fatal
            return ProviderStatus(name, False, f"{type(exc).__name__}: {exc}")

    def usable(self, name: str) -> Provider:
        """The provider, or ProviderUnavailableError (UnknownProviderError for a name nobody knows)."""
        provider = self.engine.provider(name)
        status = self.status(name)
        if not status.available:
            raise ProviderUnavailableError(
                f"provider {name!r} cannot run on this host: {status.reason}",
                details={"provider": name, "fix": status.fix},
            )
        return provider

    def available_names(self) -> list[str]:
        return [name for name in self.names() if self.status(name).available]
