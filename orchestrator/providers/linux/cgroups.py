"""Per-job control groups, v1 or v2, when the host lets us create them (root).

The process that becomes bubblewrap joins the group before it execs (see
``spawn.py``), so the whole sandbox and every descendant, daemonized or not,
is counted, limited and killed with it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


@dataclass
class CgroupUsage:
    cpu_s: float = 0.0
    memory_peak_bytes: int = 0
    oom_killed: bool = False
    pids_limit_hit: bool = False


def _write(path: Path | str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


@functools.cache
def detect_version(root: Path = CGROUP_ROOT) -> int | None:
    """2 for a unified hierarchy, 1 for per-controller mounts, None if unusable (fixed per host and boot)."""
    if os.geteuid() != 0:
        return None
    if (root / "cgroup.controllers").exists():
        return 2
    if all((root / c).is_dir() for c in ("memory", "pids")):
        return 1
    return None


@functools.cache
def _v1_controllers(root: Path) -> tuple[str, ...]:
    """One name per hierarchy: where controllers are co-mounted (``cpu,cpuacct``) the first stands for all."""
    by_hierarchy: dict[str, str] = {}
    for ctrl in _V1_CONTROLLERS:
        if (root / ctrl).is_dir():
            by_hierarchy.setdefault(os.path.realpath(root / ctrl), ctrl)
    return tuple(by_hierarchy.values())


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except FileNotFoundError:  # the first job under this parent
        os.makedirs(path)


_SWAP_ACCOUNTING = [True]  # memsw files exist only with swap accounting; learnt on the first job


@dataclass
class JobCgroup:
    version: int
    paths: dict[str, Path]

    @classmethod
    def create(
        cls, parent: str, name: str, *, memory_bytes: int, pids: int, cpus: float, root: Path = CGROUP_ROOT
    ) -> JobCgroup:
        version = detect_version(root)
        if version is None:
            raise OSError("cgroups are not available")
        if version == 2:
            base = root / parent
            base.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                _write(root / "cgroup.subtree_control", "+memory +pids +cpu")
            with contextlib.suppress(OSError):
                _write(base / "cgroup.subtree_control", "+memory +pids +cpu")
            path = base / name
            path.mkdir()
            group = cls(2, {"unified": path})
            _write(path / "memory.max", str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(path / "memory.swap.max", "0")
            _write(path / "pids.max", str(pids))
            _write(path / "cpu.max", f"{max(1000, int(cpus * 100_000))} 100000")
            return group
        paths: dict[str, Path] = {}
        group = cls(1, paths)
        try:
            for ctrl in _v1_controllers(root):
                directory = f"{root}/{ctrl}/{parent}/{name}"
                _mkdir(directory)
                paths[ctrl] = Path(directory)
            memory, limit = f"{paths['memory']}/memory", str(memory_bytes)
            _write(f"{memory}.limit_in_bytes", limit)
            if _SWAP_ACCOUNTING[0]:
                try:
                    _write(f"{memory}.memsw.limit_in_bytes", limit)
                except OSError:
                    _SWAP_ACCOUNTING[0] = False
            _write(f"{paths['pids']}/pids.max", str(pids))
            if "cpu" in paths:
                _write(f"{paths['cpu']}/cpu.cfs_period_us", "100000")
                _write(f"{paths['cpu']}/cpu.cfs_quota_us", str(max(1000, int(cpus * 100_000))))
        except OSError:
            group.remove()
            raise
        return group

    def join_files(self) -> list[str]:
        """What a single-threaded process writes ``0`` to, to move itself into every hierarchy.

        On v1 that is ``tasks``: moving only the calling thread skips the global
        lock that moving a whole process takes, and with it an RCU grace period.
        """
        name = "cgroup.procs" if self.version == 2 else "tasks"
        return [f"{path}/{name}" for path in self.paths.values()]

    def pids(self) -> list[int]:
        """Members of the group; every process joins all hierarchies, so one suffices."""
        path = self.paths.get("unified") or self.paths.get("pids") or next(iter(self.paths.values()))
        return sorted(int(line) for line in _read(path / "cgroup.procs").split())

    def usage(self) -> CgroupUsage:
        if self.version == 2:
            path = self.paths["unified"]
            cpu = _keyed(_read(path / "cpu.stat")).get("usage_usec", 0) / 1e6
            peak = _read(path / "memory.peak").strip()
            events = _keyed(_read(path / "memory.events"))
            pids_events = _keyed(_read(path / "pids.events"))
            return CgroupUsage(
                cpu_s=cpu,
                memory_peak_bytes=int(peak) if peak.isdigit() else 0,
                oom_killed=events.get("oom_kill", 0) > 0 or events.get("max", 0) > 0 and events.get("oom", 0) > 0,
                pids_limit_hit=pids_events.get("max", 0) > 0,
            )
        usage = CgroupUsage()
        cpuacct = self.paths.get("cpuacct") or self.paths.get("cpu")  # co-mounted: one directory has both
        if cpuacct is not None:
            raw = _read(cpuacct / "cpuacct.usage").strip()
            usage.cpu_s = int(raw) / 1e9 if raw.isdigit() else 0.0
        mem = self.paths.get("memory")
        if mem is not None:
            raw = _read(mem / "memory.max_usage_in_bytes").strip()
            usage.memory_peak_bytes = int(raw) if raw.isdigit() else 0
            oom = _keyed(_read(mem / "memory.oom_control"))
            usage.oom_killed = oom.get("oom_kill", 0) > 0
        pids_path = self.paths.get("pids")
        if pids_path is not None:
            usage.pids_limit_hit = _keyed(_read(pids_path / "pids.events")).get("max", 0) > 0
        return usage

    def limit_events(self) -> tuple[int, int]:
        """How often, so far, the memory limit killed a process and the pids limit refused a fork."""
        if self.version == 2:
            mem = pids = self.paths["unified"]
            oom_file = mem / "memory.events"
        else:
            mem, pids = self.paths["memory"], self.paths["pids"]
            oom_file = mem / "memory.oom_control"
        return _keyed(_read(oom_file)).get("oom_kill", 0), _keyed(_read(pids / "pids.events")).get("max", 0)

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the group; True once the group is empty."""
        deadline = time.monotonic() + timeout
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.paths["unified"] / "cgroup.kill", "1")
        while True:
            pids = self.pids()
            if not pids:
                return True
            # Forks racing this loop are bounded by pids.max, so repeating converges.
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def remove(self) -> bool:
        """Kill what is left and remove the groups; True when nothing remains."""
        empty = self.kill_all() if self.paths else True
        ok = empty
        for path in self.paths.values():
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
            else:
                ok = False
        return ok


def remove_named(parent: str, name: str, root: Path = CGROUP_ROOT) -> bool:
    """Kill and remove a job's groups by name in every hierarchy (crash recovery needs no record)."""
    version = detect_version(root)
    if version is None:
        return True
    if version == 2:
        paths = {"unified": root / parent / name}
    else:
        paths = {c: root / c / parent / name for c in (*_v1_controllers(root), "freezer")}
    existing = {k: p for k, p in paths.items() if p.is_dir()}
    return JobCgroup(version, existing).remove() if existing else True


def leftover_groups(parent: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Job groups under ``parent`` in every hierarchy (for tests and crash recovery)."""
    found: list[Path] = []
    for base in [root / parent, *(root / c / parent for c in (*_V1_CONTROLLERS, "freezer"))]:
        if base.is_dir():
            found.extend(p for p in base.iterdir() if p.is_dir())
    return found
