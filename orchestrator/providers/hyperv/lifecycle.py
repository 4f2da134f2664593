"""The steps of one disposable VM's life, in order, over a ``Host``.

``boot`` creates (or imports) the VM, removes every network adapter, attaches
the read-only inputs, starts it and waits until PowerShell Direct answers.
``teardown`` powers it off, removes it and its files and verifies that nothing
is left, retrying a failed attempt. Callers own the rule "teardown on every
path": every method here either succeeds or raises, and never cleans up behind
the caller's back, so one ``finally`` in the provider covers all failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.errors import (
    HostUnreachableError,
    OrchestratorError,
    SandboxCreateError,
    TransportError,
    TransportTimeoutError,
)
from orchestrator.providers.base import TeardownReport
from orchestrator.providers.hyperv import steps
from orchestrator.providers.hyperv.config import HyperVSettings
from orchestrator.providers.hyperv.host import Host
from orchestrator.providers.hyperv.plan import VmPlan

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

_FATAL = (
    "credential is invalid",
    "user name or password is incorrect",
    "does not resolve to any virtual machine",
)


@dataclass
class BootReport:
    seconds: float
    probes: int


class VmLifecycle:
    def __init__(
        self,
        settings: HyperVSettings,
        host: Host,
        credentials: Callable[[], tuple[str, str]],
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ):
        self.settings = settings
        self.host = host
        self.credentials = credentials
        self.clock = clock
        self.sleep = sleep

    # --- bring-up ---------------------------------------------------------------

    def create(self, plan: VmPlan, *, from_saved_state: bool = False) -> None:
        """New VM from the base image (or an import of a saved-state export), with no network adapter."""
        step = steps.import_vm(self.settings, plan) if from_saved_state else steps.create_vm(self.settings, plan)
        self._expect(step, "created", True)
        reply = self.host.run(steps.remove_nic(self.settings, plan))
        if reply.get("adapters") != 0:
            raise SandboxCreateError(
                f"{plan.vm_name} still has a network adapter",
                code="sandbox.network_not_removed",
                details=reply,
            )

    def attach(self, plan: VmPlan, *, with_iso: bool, set_cpu_cap: bool = False) -> None:
        if with_iso or plan.data_disks or set_cpu_cap:
            self.host.run(steps.attach_inputs(self.settings, plan, with_iso=with_iso, set_cpu_cap=set_cpu_cap))

    def start(self, plan: VmPlan) -> BootReport:
        started = self.clock()
        self.host.run(steps.start_vm(self.settings, plan))
        probes = self.wait_ready(plan)
        return BootReport(self.clock() - started, probes)

    def wait_ready(self, plan: VmPlan) -> int:
        """Probe PowerShell Direct with exponential backoff until it answers or ``ready_timeout_s`` passes."""
        deadline = self.clock() + self.settings.ready_timeout_s
        delay = self.settings.ready_initial_backoff_s
        probes = 0
        last = ""
        while True:
            probes += 1
            remaining = deadline - self.clock()
            try:
                reply = self.host.run(steps.probe_guest(plan, self.credentials(), max(5.0, min(60.0, remaining))))
            except TransportTimeoutError as exc:
                reply = {"ready": False, "reason": exc.message}
            if reply.get("ready") is True:
                log.info("%s ready after %d probe(s)", plan.vm_name, probes)
                return probes
            last = str(reply.get("reason", ""))[:500]
            state = str(reply.get("state", ""))
            if any(text in last.lower() for text in _FATAL):
                raise SandboxCreateError(
                    f"{plan.vm_name}: PowerShell Direct refused the guest credentials: {last}",
                    code="sandbox.guest_auth_failed",
                    details={
                        "vm": plan.vm_name,
                        "fix": "check ORCH_HYPERV_GUEST_USERNAME/PASSWORD against the image",
                    },
                )
            if state and state not in ("Running", "Starting"):
                raise SandboxCreateError(
                    f"{plan.vm_name} is {state} while waiting for it to boot",
                    code="sandbox.guest_not_ready",
                    details={"vm": plan.vm_name, "state": state},
                )
            if self.clock() + delay > deadline:
                raise SandboxCreateError(
                    f"{plan.vm_name} did not accept a PowerShell Direct session within "
                    f"{self.settings.ready_timeout_s:g}s (last answer: {last or 'none'})",
                    code="sandbox.guest_not_ready",
                    details={
                        "vm": plan.vm_name,
                        "probes": probes,
                        "fix": "raise ORCH_HYPERV_READY_TIMEOUT_S",
                    },
                )
            self.sleep(delay)
            delay = min(delay * 2, self.settings.ready_max_backoff_s)

    def prepare(self, plan: VmPlan, *, with_iso: bool) -> None:
        if with_iso or plan.data_disks:
            self.host.run(steps.prepare_guest(self.settings, plan, self.credentials(), with_iso=with_iso))

    # --- running ----------------------------------------------------------------

    def turn_off(self, vm_name: str) -> bool:
        """Pull the power; best effort (teardown does it again)."""
        try:
            self.host.run(steps.turn_off(self.settings, vm_name))
            return True
        except OrchestratorError as exc:
            log.warning("turning off %s failed: %s", vm_name, exc.message)
            return False

    def metering(self, plan: VmPlan) -> dict[str, float]:
        try:
            reply = self.host.run(steps.metering(self.settings, plan))
        except OrchestratorError as exc:
            log.warning("metering %s failed: %s", plan.vm_name, exc.message)
            return {}
        usage: dict[str, float] = {}
        for key, value in reply.items():
            if key != "vm" and isinstance(value, (int, float)) and not isinstance(value, bool):
                usage[key] = float(value)
        return usage

    # --- teardown ---------------------------------------------------------------

    def teardown(self, vm_name: str, paths: list[str]) -> TeardownReport:
        """Stop, remove, delete, verify; retried up to ``teardown_attempts`` times."""
        leftovers: list[str] = [f"vm:{vm_name}", *paths]
        delay = 1.0
        for attempt in range(1, self.settings.teardown_attempts + 1):
            try:
                reply = self.host.run(steps.teardown(self.settings, vm_name, paths))
            except TransportError as exc:
                log.warning("teardown of %s, attempt %d: %s", vm_name, attempt, exc.message)
                if isinstance(exc, HostUnreachableError) and attempt == self.settings.teardown_attempts:
                    break
            else:
                raw = reply.get("leftovers") or []
                leftovers = [str(x) for x in raw] if isinstance(raw, list) else [str(raw)]
                if not leftovers:
                    log.info("teardown of %s clean after %d attempt(s)", vm_name, attempt)
                    return TeardownReport(clean=True)
                log.warning("teardown of %s, attempt %d left %s", vm_name, attempt, leftovers)
            if attempt < self.settings.teardown_attempts:
                self.sleep(delay)
                delay *= 2
        return TeardownReport(clean=False, leftovers=leftovers)

    def _expect(self, step: steps.Step, key: str, value: object) -> None:
        reply = self.host.run(step)
        if reply.get(key) != value:
            raise SandboxCreateError(f"{step.name}: unexpected reply", details={"step": step.name, "reply": reply})
