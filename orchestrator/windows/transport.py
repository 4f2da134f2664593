"""The one interface for "run this PowerShell on a Windows host".

Implementations (one module each): ``local`` (a ``powershell.exe``/``pwsh``
subprocess, for a control plane on the Windows host itself), ``winrm``
(PowerShell Remoting with pypsrp) and ``replay`` (recorded results, for tests
on machines without Windows). Scripts are rendered from ``templates/``; every
value that comes from a job reaches PowerShell as a parameter, never as text
spliced into the script.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class PSErrorRecord:
    message: str
    category: str = ""
    fully_qualified_error_id: str = ""
    target: str = ""
    script_stack_trace: str = ""


@dataclass
class PSResult:
    output: list[Any] = field(default_factory=list)
    errors: list[PSErrorRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)
    information: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def had_errors(self) -> bool:
        return bool(self.errors)


class PowerShellTransport(Protocol):
    def run(
        self, script: str, parameters: Mapping[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> PSResult:
        """Run ``script`` with ``parameters`` bound to its ``param()`` block; raise TransportError subclasses."""
        ...

    def copy_to(self, local: Path, remote: str) -> None: ...

    def copy_from(self, remote: str, local: Path, *, max_bytes: int) -> None: ...

    def close(self) -> None: ...
