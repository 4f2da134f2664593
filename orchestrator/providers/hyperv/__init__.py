"""Hyper-V provider: disposable VMs from a golden image, a warm pool, PowerShell Direct execution.

Importable on any OS: nothing Windows-specific is imported until a transport is
built, and ``availability()`` explains what is missing on a host without Hyper-V.
"""

from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.providers.hyperv.provider import HyperVProvider, HyperVSandbox

__all__ = ["HyperVProvider", "HyperVSandbox", "HyperVSettings"]
