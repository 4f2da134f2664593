"""The embedded default provider: bubblewrap sandboxes on Linux."""

from orchestrator.providers.linux.provider import LinuxProvider, LinuxSandbox

__all__ = ["LinuxProvider", "LinuxSandbox"]
