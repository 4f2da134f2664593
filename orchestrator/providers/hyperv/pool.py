"""Host capacity accounting and the warm pool of booted, never-used VMs.

Booting Windows dominates a job's latency, so the pool keeps ``target`` fresh
VMs of one shape (image version, memory, CPUs) booted and idle. A job takes
one; it is destroyed after that job like any other VM, and a background thread
boots a replacement.

The pool never starves running jobs: it only boots into capacity that leaves
room for one more cold-booted job, and a job that finds the host full evicts
(destroys) an idle pool VM before giving up.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.providers.hyperv.plan import Shape, VmPlan

log = logging.getLogger(__name__)


class Capacity:
    """VM count and startup-memory budget shared by jobs and the pool."""

    def __init__(self, max_vms: int, memory_mb: int):
        self.max_vms = max_vms
        self.memory_mb = memory_mb
        self._vms = 0
        self._mb = 0
        self._lock = threading.Lock()

    def try_reserve(self, memory_mb: int, *, keep_free_mb: int = 0, keep_free_vms: int = 0) -> bool:
        with self._lock:
            if self._vms + 1 + keep_free_vms > self.max_vms:
                return False
            if self._mb + memory_mb + keep_free_mb > self.memory_mb:
                return False
            self._vms += 1
            self._mb += memory_mb
            return True

    def release(self, memory_mb: int) -> None:
        with self._lock:
            self._vms = max(0, self._vms - 1)
            self._mb = max(0, self._mb - memory_mb)

    @property
    def used(self) -> tuple[int, int]:
        with self._lock:
            return self._vms, self._mb


@dataclass
class PooledVm:
    plan: VmPlan
    boot_s: float


BootFn = Callable[[Shape], PooledVm]
DestroyFn = Callable[[PooledVm], None]


class WarmPool:
    """Keeps ``target`` booted VMs of ``shape``; ``boot``/``destroy`` do the host work.

    ``boot`` must clean up after itself when it fails (the provider's boot does).
    Capacity for a pooled VM is reserved before it boots and handed over to the
    job that takes it.
    """

    def __init__(
        self,
        shape: Shape,
        target: int,
        capacity: Capacity,
        boot: BootFn,
        destroy: DestroyFn,
        *,
        retry_delay_s: float = 10.0,
    ):
        self.shape = shape
        self.target = target
        self.capacity = capacity
        self._boot = boot
        self._destroy = destroy
        self.retry_delay_s = retry_delay_s
        self._ready: deque[PooledVm] = deque()
        self._booting = 0
        self._failures = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.boots: list[float] = []

    # --- for jobs ---------------------------------------------------------------

    def take(self, shape: Shape) -> PooledVm | None:
        """A booted VM of ``shape`` (its capacity reservation moves to the caller), or None."""
        if shape != self.shape:
            return None
        with self._cond:
            vm = self._ready.popleft() if self._ready else None
            self._cond.notify_all()
        if vm is not None:
            log.info("warm pool: %s taken (%d left)", vm.plan.vm_name, len(self._ready))
        return vm

    def evict_one(self) -> bool:
        """Destroy one idle VM to make room for a job; False when none is idle."""
        with self._cond:
            if not self._ready:
                return False
            vm = self._ready.pop()
        log.info("warm pool: evicting %s to make room for a job", vm.plan.vm_name)
        try:
            self._destroy(vm)
        finally:
            self.capacity.release(self.shape.memory_mb)
        return True

    @property
    def idle(self) -> int:
        with self._cond:
            return len(self._ready)

    def owned_names(self) -> set[str]:
        with self._cond:
            return {vm.plan.vm_name for vm in self._ready}

    # --- refilling --------------------------------------------------------------

    def deficit(self) -> int:
        with self._cond:
            return max(0, self.target - len(self._ready) - self._booting)

    def refill_once(self) -> bool:
        """Boot one VM if the pool is short and the host has room; True if one was added."""
        with self._cond:
            if self._closed or self.target - len(self._ready) - self._booting <= 0:
                return False
            # Leave room for one cold-booted job so the pool never takes the last slot.
            if not self.capacity.try_reserve(self.shape.memory_mb, keep_free_mb=self.shape.memory_mb, keep_free_vms=1):
                return False
            self._booting += 1
        vm: PooledVm | None = None
        try:
            vm = self._boot(self.shape)
        except Exception as exc:  # the boot function already tore the VM down
            log.warning("warm pool: boot failed: %s", exc)
        with self._cond:
            self._booting -= 1
            if vm is not None and not self._closed:
                self._ready.append(vm)
                self.boots.append(vm.boot_s)
                self._failures = 0
                self._cond.notify_all()
                return True
            if vm is None:
                self._failures += 1
        self.capacity.release(self.shape.memory_mb)
        if vm is not None:  # closed while booting
            self._destroy(vm)
        return False

    def start(self) -> None:
        if self.target <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"hyperv-pool-{self.shape.image}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
            added = self.refill_once()
            with self._cond:
                if self._closed:
                    return
                if added:
                    continue
                # Short of capacity, full, or failing: wait for a take/close or retry later.
                backoff = min(self.retry_delay_s * (2 ** min(self._failures, 5)), 600.0)
                self._cond.wait(backoff if self._failures or self.deficit_unlocked() else None)

    def wake(self) -> None:
        """Capacity was released: let the refill thread try again now."""
        with self._cond:
            self._cond.notify_all()

    def deficit_unlocked(self) -> int:
        return max(0, self.target - len(self._ready) - self._booting)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop refilling and destroy every idle VM."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        while True:
            with self._cond:
                if not self._ready:
                    break
                vm = self._ready.popleft()
            try:
                self._destroy(vm)
            finally:
                self.capacity.release(self.shape.memory_mb)
