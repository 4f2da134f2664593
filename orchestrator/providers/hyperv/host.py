"""Run one ``Step`` on the Hyper-V host and read its one JSON reply.

Every lifecycle script ends by writing a single compressed JSON object. This
module is the only place that talks to the transport for the provider: it logs
one line per step, turns PowerShell error records into ``ScriptError`` and
refuses replies that are not the expected JSON object.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from orchestrator.errors import ScriptError
from orchestrator.providers.hyperv.steps import Step
from orchestrator.windows.transport import PowerShellTransport, PSResult

log = logging.getLogger(__name__)


class Host:
    def __init__(self, transport: PowerShellTransport):
        self.transport = transport

    def run(self, step: Step) -> dict[str, Any]:
        started = time.monotonic()
        log.info("hyperv step %s starting", step.name)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("hyperv step %s parameters %s", step.name, step.redacted_parameters())
        try:
            result = self.transport.run(step.script, step.parameters, timeout_s=step.timeout_s)
        finally:
            log.info("hyperv step %s finished in %.2fs", step.name, time.monotonic() - started)
        return parse_reply(step.name, result)


def parse_reply(step: str, result: PSResult) -> dict[str, Any]:
    if result.errors:
        first = result.errors[0]
        raise ScriptError(
            f"{step}: {first.message}",
            details={
                "step": step,
                "errors": [{"message": e.message, "id": e.fully_qualified_error_id} for e in result.errors[:5]],
            },
        )
    for item in reversed(result.output):
        if isinstance(item, dict):
            return item
        if isinstance(item, str) and item.lstrip().startswith("{"):
            try:
                value = json.loads(item)
            except ValueError:
                break
            if isinstance(value, dict):
                return value
            break
    raise ScriptError(f"{step}: the script returned no JSON reply", details={"step": step})
