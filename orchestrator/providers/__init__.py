"""Provider registry: a name maps to the module that implements it.

Modules are imported on first use, so a host that never asks for a Windows
provider never imports its dependencies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.errors import UnknownProviderError

if TYPE_CHECKING:
    from orchestrator.providers.base import Provider
    from orchestrator.settings import Settings

ProviderFactory = Callable[["Settings"], "Provider"]

_BUILTIN = {
    "linux": "orchestrator.providers.linux:LinuxProvider",
    "wsb": "orchestrator.providers.wsb:WsbProvider",
    "hyperv": "orchestrator.providers.hyperv:HyperVProvider",
}
_CUSTOM: dict[str, ProviderFactory] = {}


def register(name: str, factory: ProviderFactory) -> None:
    _CUSTOM[name] = factory


def provider_names() -> list[str]:
    return sorted({*_BUILTIN, *_CUSTOM})


def create_provider(name: str, settings: Settings) -> Provider:
    if name in _CUSTOM:
        return _CUSTOM[name](settings)
    target = _BUILTIN.get(name)
    if target is None:
        raise UnknownProviderError(
            f"unknown provider {name!r}; known providers: {', '.join(provider_names())}",
            details={"provider": name, "known": provider_names()},
        )
    module_name, _, attr = target.partition(":")
    factory: ProviderFactory = getattr(importlib.import_module(module_name), attr)
    return factory(settings)
