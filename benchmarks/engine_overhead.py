"""Engine overhead per job: `orchestrator` running /bin/true vs. the same bubblewrap sandbox spawned directly.

Both run in this process, interleaved, so machine noise hits both alike. The
raw baseline runs the exact bwrap argv the provider builds (same namespaces,
seccomp filter, mounts, same unprivileged uid) against a prepared workspace,
with its output captured; the engine run adds everything a job really gets:
spec handling, the state machine and audit events, a fresh size-limited
workspace, a cgroup and rlimits (as root), output capture, collection and
verified teardown.

Target (issue #2): engine time / raw spawn time <= 1.5. ``--no-cgroups`` shows
how much of the overhead is the per-job cgroup (large on cgroup v1 hosts).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

from baselines import RawSandbox, scratch_dirs

from orchestrator.engine import Engine
from orchestrator.providers.linux import LinuxProvider
from orchestrator.providers.linux.cgroups import JobCgroup
from orchestrator.result import JobStatus
from orchestrator.settings import LinuxSettings, Settings
from orchestrator.spec import parse_job_spec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--no-cgroups", action="store_true", help="measure the engine without per-job cgroups")
    parser.add_argument("--runtime-on-disk", action="store_true", help="keep the runtime dir on disk, not tmpfs")
    args = parser.parse_args()
    data_dir, runtime_dir, where = scratch_dirs(args.runtime_on_disk)
    settings = Settings(
        data_dir=data_dir, runtime_dir=runtime_dir, linux=LinuxSettings(use_cgroups=not args.no_cgroups)
    )
    engine = Engine(settings)
    provider = engine.provider("linux")
    assert isinstance(provider, LinuxProvider)
    spec = parse_job_spec({"command": ["/bin/true"]})
    baseline = RawSandbox(provider, spec)
    raw_once = baseline.spawn

    def raw_confined_once() -> float:
        """The same, joined by hand to a fresh cgroup with the job's limits the way the engine joins
        (the child writes 0 to the group's files before exec): the sandbox a job gets, without the engine."""
        group = JobCgroup.create(
            settings.linux.cgroup_parent, f"raw-{os.getpid()}-{time.monotonic_ns()}",
            memory_bytes=spec.limits.memory_mb << 20, pids=spec.limits.pids, cpus=spec.limits.cpus,
        )  # fmt: skip
        try:
            return baseline.spawn(join=group.join_files())
        finally:
            group.remove()

    def engine_once() -> float:
        t0 = time.perf_counter()
        result = engine.run(spec)
        elapsed = time.perf_counter() - t0
        assert result.status is JobStatus.COMPLETED, result
        return elapsed

    confined = provider.cgroup_version is not None
    raw, raw_cg, eng = [], [], []
    try:
        for _ in range(10):
            raw_once()
            engine_once()
        for _ in range(args.n):
            raw.append(raw_once())
            if confined:
                raw_cg.append(raw_confined_once())
            eng.append(engine_once())
    finally:
        baseline.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    raw_med, eng_med = statistics.median(raw), statistics.median(eng)
    cgroup = f"cgroup v{provider.cgroup_version}" if provider.cgroup_version else "no cgroups"
    print(f"jobs: {args.n} each, interleaved; {cgroup}; {where}; bwrap: {provider.prepare()}")
    print(f"raw bwrap spawn  p50 {raw_med * 1000:7.2f} ms   p90 {sorted(raw)[int(len(raw) * 0.9)] * 1000:7.2f} ms")
    print(f"engine /bin/true p50 {eng_med * 1000:7.2f} ms   p90 {sorted(eng)[int(len(eng) * 0.9)] * 1000:7.2f} ms")
    print(f"engine overhead  p50 {(eng_med - raw_med) * 1000:7.2f} ms")
    print(f"ratio engine/raw (p50): {eng_med / raw_med:.2f}  (target <= 1.5)")
    if raw_cg:
        cg_med = statistics.median(raw_cg)
        print(f"raw bwrap + cgroup p50 {cg_med * 1000:7.2f} ms   (the same sandbox, joined to its cgroup by hand)")
        print(f"ratio engine/(raw + cgroup) (p50): {eng_med / cg_med:.2f}")


if __name__ == "__main__":
    main()
