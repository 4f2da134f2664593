"""``ReplayTransport``: returns recorded PowerShell results, for tests on hosts with no Windows.

It replays, in order, what a real host answered (or is documented to answer)
for each script, keyed by the script's template name, and records every call
with its parameters so tests can assert ordering and exactly what was sent.

A recording (Python or JSON, see ``tests/data/recordings/README.md``)::

    {"calls": [
        {"script": "windows-sandbox/probe.ps1", "result": {"output": ["{...}"]}},
        {"script": "windows-sandbox/launch-wsb.ps1",
         "raise": {"error": "HostUnreachableError", "message": "..."}}
     ],
     "files": {"C:\\\\...\\\\result.json": {"text": "..."}, "C:\\\\...\\\\x.bin": {"base64": "..."}}}

In Python a step's ``result`` may also be a callable ``(parameters) -> PSResult``.
``strict_order=True`` requires the calls in exactly the recorded sequence;
otherwise each script name has its own queue. Unknown scripts, an exhausted
queue or an out-of-order call raise ``ReplayMismatch`` (an ``AssertionError``,
so a test fails loudly instead of the provider treating it as a host error).
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import errors
from orchestrator.windows.scripts import script_name
from orchestrator.windows.transport import PSErrorRecord, PSResult

ResultFactory = Callable[[Mapping[str, Any]], PSResult]


class ReplayMismatch(AssertionError):
    """The code under test made a call the recording does not contain."""


@dataclass
class ReplayStep:
    script: str
    result: PSResult | ResultFactory | None = None
    error: errors.OrchestratorError | None = None


@dataclass(frozen=True)
class RecordedCall:
    script: str
    parameters: dict[str, Any]
    timeout_s: float | None = None
    text: str = ""


@dataclass
class ReplayTransport:
    steps: list[ReplayStep] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    strict_order: bool = False
    calls: list[RecordedCall] = field(default_factory=list)
    uploaded: dict[str, bytes] = field(default_factory=dict)
    closed: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[ReplayStep]] = {}
        self._sequence: deque[ReplayStep] = deque(self.steps)
        for step in self.steps:
            self._queues.setdefault(step.script, deque()).append(step)

    # --- building ---------------------------------------------------------

    def add(
        self,
        script: str,
        result: PSResult | ResultFactory | None = None,
        *,
        error: errors.OrchestratorError | None = None,
    ) -> ReplayTransport:
        step = ReplayStep(script, result if result is not None or error is not None else PSResult(), error)
        with self._lock:
            self.steps.append(step)
            self._sequence.append(step)
            self._queues.setdefault(script, deque()).append(step)
        return self

    @classmethod
    def from_file(cls, path: Path, *, strict_order: bool = False) -> ReplayTransport:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), strict_order=strict_order)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict_order: bool = False) -> ReplayTransport:
        steps = [_step_from_json(entry) for entry in data.get("calls", [])]
        files: dict[str, bytes] = {}
        for remote, spec in (data.get("files") or {}).items():
            if "base64" in spec:
                files[remote] = base64.b64decode(spec["base64"])
            else:
                files[remote] = str(spec["text"]).encode("utf-8")
        return cls(steps=steps, files=files, strict_order=strict_order)

    # --- inspecting -------------------------------------------------------

    def script_names(self) -> list[str]:
        return [call.script for call in self.calls]

    def calls_to(self, script: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.script == script]

    def pending(self) -> list[str]:
        """Recorded steps that were never used (a test may assert this is empty)."""
        with self._lock:
            return (
                [s.script for s in self._sequence]
                if self.strict_order
                else [s.script for q in self._queues.values() for s in q]
            )

    # --- PowerShellTransport ----------------------------------------------

    def run(
        self, script: str, parameters: Mapping[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> PSResult:
        name = script_name(script)
        params = dict(parameters or {})
        with self._lock:
            self.calls.append(RecordedCall(name, params, timeout_s, str(script)))
            step = self._next(name)
        if step.error is not None:
            raise step.error
        if callable(step.result):
            return step.result(params)
        return step.result if step.result is not None else PSResult()

    def _next(self, name: str) -> ReplayStep:
        if self.strict_order:
            if not self._sequence:
                raise ReplayMismatch(f"unexpected call to {name}: the recording is exhausted")
            step = self._sequence[0]
            if step.script != name:
                raise ReplayMismatch(f"expected a call to {step.script}, got {name}")
            self._sequence.popleft()
            self._queues[name].popleft()
            return step
        queue = self._queues.get(name)
        if not queue:
            raise ReplayMismatch(f"no recorded result left for {name}")
        step = queue.popleft()
        self._sequence.remove(step)
        return step

    def copy_to(self, local: Path, remote: str) -> None:
        data = local.read_bytes()
        with self._lock:
            self.calls.append(RecordedCall("copy_to", {"local": str(local), "remote": remote}))
            self.uploaded[remote] = data

    def copy_from(self, remote: str, local: Path, *, max_bytes: int) -> None:
        with self._lock:
            self.calls.append(RecordedCall("copy_from", {"remote": remote, "max_bytes": max_bytes}))
            data = self.files.get(remote)
        if data is None:
            raise errors.ScriptError(f"cannot find path {remote!r}", details={"remote": remote})
        if len(data) > max_bytes:
            raise errors.PayloadTooLargeError(
                f"{remote} is {len(data)} bytes, more than the {max_bytes} allowed",
                details={"remote": remote, "size": len(data), "max_bytes": max_bytes},
            )
        local.write_bytes(data)

    def close(self) -> None:
        self.closed = True


def _step_from_json(entry: Mapping[str, Any]) -> ReplayStep:
    script = str(entry["script"])
    if "raise" in entry:
        spec = entry["raise"]
        cls = getattr(errors, str(spec["error"]), None)
        if not (isinstance(cls, type) and issubclass(cls, errors.OrchestratorError)):
            raise ValueError(f"recording names unknown error class {spec['error']!r}")
        return ReplayStep(script, error=cls(str(spec.get("message", "")), details=dict(spec.get("details", {}))))
    raw = entry.get("result", {})
    result = PSResult(
        output=list(raw.get("output", [])),
        errors=[PSErrorRecord(**rec) for rec in raw.get("errors", [])],
        warnings=list(raw.get("warnings", [])),
        verbose=list(raw.get("verbose", [])),
        information=list(raw.get("information", [])),
        duration_s=float(raw.get("duration_s", 0.0)),
    )
    return ReplayStep(script, result=result)
