"""The warm pool and host capacity: refill, take, evict, never starve jobs, stoppable."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecRequest
from orchestrator.providers.hyperv import HyperVProvider, HyperVSettings
from orchestrator.providers.hyperv.plan import Shape, make_plan
from orchestrator.providers.hyperv.pool import Capacity, PooledVm, WarmPool
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec
from tests.hyperv.fakehost import FakeHyperVHost

SHAPE = Shape("win2022-v1", 2048, 1)


class Booter:
    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.booted: list[str] = []
        self.destroyed: list[str] = []
        self.n = 0

    def boot(self, shape: Shape) -> PooledVm:
        self.n += 1
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("boot failed")
        plan = make_plan(HyperVSettings.model_validate({}), f"pool-{self.n}", JobSpec(command=["x"]), shape)
        self.booted.append(plan.vm_name)
        return PooledVm(plan, boot_s=40.0)

    def destroy(self, vm: PooledVm) -> None:
        self.destroyed.append(vm.plan.vm_name)


def pool(target: int, capacity: Capacity, booter: Booter) -> WarmPool:
    return WarmPool(SHAPE, target, capacity, booter.boot, booter.destroy, retry_delay_s=0.01)


def test_refills_to_target_and_take_hands_over_the_reservation() -> None:
    cap, b = Capacity(max_vms=10, memory_mb=100_000), Booter()
    p = pool(2, cap, b)
    while p.refill_once():
        pass
    assert p.idle == 2 and cap.used == (2, 4096)
    vm = p.take(SHAPE)
    assert vm is not None and p.idle == 1 and cap.used == (2, 4096)  # the job now owns that reservation
    assert p.take(Shape("win2022-v1", 4096, 1)) is None  # other shapes boot cold
    assert p.deficit() == 1


def test_never_takes_the_last_slot_so_jobs_are_not_starved() -> None:
    cap, b = Capacity(max_vms=3, memory_mb=100_000), Booter()
    p = pool(5, cap, b)
    while p.refill_once():
        pass
    assert p.idle == 2  # one slot stays free for a cold-booted job
    assert cap.try_reserve(2048)  # a job gets it
    cap2, b2 = Capacity(max_vms=10, memory_mb=5000), Booter()
    p2 = pool(5, cap2, b2)
    while p2.refill_once():
        pass
    assert p2.idle == 1 and cap2.used == (1, 2048)  # memory budget: room kept for one more 2 GB VM


def test_evict_frees_capacity_and_close_destroys_everything() -> None:
    cap, b = Capacity(max_vms=10, memory_mb=100_000), Booter()
    p = pool(3, cap, b)
    while p.refill_once():
        pass
    assert p.evict_one() and p.idle == 2 and cap.used == (2, 4096)
    p.close()
    assert sorted(b.destroyed) == sorted(b.booted) and cap.used == (0, 0)
    assert not p.refill_once()  # closed pools do not refill
    assert not p.evict_one()


def test_failed_boot_releases_capacity_and_is_retried() -> None:
    cap, b = Capacity(max_vms=10, memory_mb=100_000), Booter(fail=2)
    p = pool(1, cap, b)
    assert not p.refill_once() and cap.used == (0, 0)
    assert not p.refill_once()
    assert p.refill_once() and p.idle == 1


def test_background_thread_refills_after_take_and_stops_on_close() -> None:
    cap, b = Capacity(max_vms=10, memory_mb=100_000), Booter(fail=1)
    p = pool(2, cap, b)
    p.start()
    _wait(lambda: p.idle == 2)
    assert p.take(SHAPE) is not None
    _wait(lambda: p.idle == 2)
    p.close()
    assert p._thread is not None and not p._thread.is_alive()
    assert p.idle == 0 and cap.used == (1, 2048)  # only the taken VM is still reserved (its job owns it)


def _wait(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def _provider(host: FakeHyperVHost, **kw: Any) -> HyperVProvider:
    hv = HyperVSettings.model_validate(
        {
            "guest_password": "s3cret!",
            "pool_size": 1,
            "ready_initial_backoff_s": 0.001,
            "exec_grace_s": 0,
            "gc_interval_s": 3600,
            **kw,
        }
    )
    return HyperVProvider(Settings(), host, hyperv=hv, sleep=lambda s: None, poll_interval_s=0.01)


def test_provider_uses_a_warm_vm_then_refills_and_close_leaves_nothing() -> None:
    host = FakeHyperVHost()
    provider = _provider(host)
    provider.start()
    pool_ = provider._pools["win2022-v1"]
    _wait(lambda: pool_.idle == 1)
    calls_before = len(host.calls)
    box = provider.create("job-1", JobSpec.model_validate({"command": ["py"], "limits": {"cpus": 0.5}}))
    mine = [s for s, p in host.calls[calls_before:] if p.get("VMName") == box.plan.vm_name]
    assert box.warm and "create-vm" not in mine and "start-vm" not in mine  # no boot on the job's path
    attach = [p for s, p in host.calls if s == "attach-inputs"][-1]
    assert attach["ProcessorMaximum"] == 50  # the job's CPU cap, applied to the running VM
    outcome = provider.exec(box, ExecRequest(["py"], {}, "/workspace", 10), OutputCapture(10), CancelToken())
    assert outcome.usage["warm_pool"] is True and outcome.usage["boot_s"] >= 0
    _wait(lambda: pool_.idle == 1)  # refilled in the background
    assert provider.destroy(box).clean
    provider.close()
    assert host.leftovers() == [] and provider.capacity.used == (0, 0)


def test_job_evicts_idle_pool_vm_when_host_is_full() -> None:
    host = FakeHyperVHost()
    provider = _provider(host, max_vms=3, pool_size=2, memory_budget_mb=17000)
    pool_ = WarmPool(SHAPE, 2, provider.capacity, provider._boot_pooled, provider._destroy_pooled)
    provider._pools[SHAPE.image] = pool_
    provider._started = True
    pool_.refill_once()
    assert pool_.idle == 1 and provider.capacity.used == (1, 2048)
    big = JobSpec.model_validate({"command": ["py"], "limits": {"memory_mb": 8192}})
    a = provider.create("a", big)
    b = provider.create("b", big)  # memory budget full: the idle pool VM is evicted for it
    assert pool_.idle == 0 and provider.capacity.used == (2, 16384)
    for box in (a, b):
        provider.destroy(box)
    provider.close()
    assert host.leftovers() == []


def test_gc_spares_pool_vms(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHyperVHost()
    provider = _provider(host)
    provider.start()
    _wait(lambda: provider._pools["win2022-v1"].idle == 1)
    assert provider.reap_orphans(set()) == []
    assert len(host.vms) == 1
    provider.close()
    assert host.leftovers() == []


def test_threads_are_stoppable() -> None:
    host = FakeHyperVHost()
    provider = _provider(host, gc_interval_s=0.01)
    provider.start()
    time.sleep(0.05)
    provider.close()
    names = {t.name for t in threading.enumerate()}
    assert not any(n.startswith("hyperv-") for n in names)
