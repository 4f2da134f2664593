"""Baselines the benchmarks measure beside the product, in the same process and run.

- ``RawSandbox``: the bubblewrap sandbox a job gets (the exact argv the provider
  builds, same namespaces, seccomp filter, mounts and unprivileged uid), spawned
  and waited for directly, with its output captured: no engine, no cgroup.
- ``InSandboxSpawner``: what starting ``/bin/true`` costs *inside* a sandbox,
  timed there, one call at a time on request, so it can take turns with other arms.

``scratch_dirs`` places the runtime state (per-sandbox directories, records)
on a tmpfs, where the default ``/run/orchestrator`` is on a standard host; this
project's VM keeps /run on disk, so /dev/shm stands in (``--runtime-on-disk``
measures the other case).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.providers.linux import LinuxProvider, bwrap, workspace
from orchestrator.providers.linux.spawn import seccomp_pipe
from orchestrator.spec import JobSpec, parse_job_spec


class RawSandbox:
    def __init__(self, provider: LinuxProvider, spec: JobSpec):
        self.provider = provider
        self.box = provider.create(f"raw-baseline-{os.getpid()}-{time.monotonic_ns()}", spec)

    def argv(self, command: list[str]) -> tuple[list[str], int, int, int]:
        seccomp_fd = seccomp_pipe()
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        layout = self.provider.layout(self.box, {}, "/workspace")
        argv = bwrap.build_argv(self.provider.prepare(), layout, command, seccomp_fd=seccomp_fd, status_fd=status_write)
        return argv, seccomp_fd, status_read, status_write

    def spawn(self, command: list[str] | None = None, join: list[str] | None = None) -> float:
        """Seconds to run ``command`` (``/bin/true``) in the sandbox, as the sandbox's own uid.

        With ``join`` (a group's ``join_files()``), the child first joins that cgroup the way the
        engine's sandboxes do, writing 0 to each file before exec.
        """
        argv, seccomp_fd, status_read, status_write = self.argv(command or ["/bin/true"])
        uid = self.box.uid if self.provider.is_root else None
        join_fds = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in join or []]

        def setup() -> None:
            for fd in join_fds:
                os.write(fd, b"0")
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)

        identity: dict[str, Any] = {}
        if join_fds:
            identity["preexec_fn"] = setup
        elif uid is not None:
            identity = {"user": uid, "group": uid, "extra_groups": []}
        started = time.perf_counter()
        proc = subprocess.run(argv, pass_fds=(seccomp_fd, status_write), capture_output=True, check=False, **identity)
        elapsed = time.perf_counter() - started
        for fd in (seccomp_fd, status_read, status_write, *join_fds):
            os.close(fd)
        assert proc.returncode == 0, proc.stderr
        return elapsed

    def close(self) -> None:
        self.provider.destroy(self.box)


_SPAWN_ON_REQUEST = """
import os, subprocess, sys, time
while os.read(0, 1):
    started = time.perf_counter()
    subprocess.run(["/bin/true"], check=True)
    sys.stdout.write(f"{time.perf_counter() - started!r}\\n")
    sys.stdout.flush()
"""


class InSandboxSpawner:
    """A process in a sandbox of its own that spawns ``/bin/true`` when asked and says how long that took."""

    def __init__(self, provider: LinuxProvider):
        from orchestrator.providers.linux.spawn import start

        self.provider = provider
        self.box = provider.create(
            f"spawn-baseline-{os.getpid()}-{time.monotonic_ns()}", parse_job_spec({"command": ["python3"]})
        )
        started = start(
            provider, self.box, ["python3", "-c", _SPAWN_ON_REQUEST], {}, "/workspace",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.proc = started.proc
        os.close(started.status_fd)

    def spawn(self) -> float:
        """Seconds, as timed inside the sandbox."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"x")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.provider.destroy(self.box)


def on_tmpfs(path: str) -> bool:
    return workspace.filesystem_type(Path(path)) == "tmpfs"


def orchestrator_env(data_dir: Path, runtime_dir: Path) -> dict[str, str]:
    """The environment for an ``orchestrator`` child process using these directories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_DATA_DIR=str(data_dir), ORCH_RUNTIME_DIR=str(runtime_dir))
    return env


def scratch_dirs(on_disk: bool) -> tuple[Path, Path, str]:
    """(data dir, runtime dir, a note on where the runtime dir is); data stays on disk."""
    root = Path(tempfile.mkdtemp(prefix="orch-bench-", dir="/tmp"))
    os.chmod(root, 0o711)  # the sandbox uid must traverse it
    if on_disk or not on_tmpfs("/dev/shm"):
        return root / "data", root / "run", "runtime dir on disk (/tmp)"
    runtime = Path(tempfile.mkdtemp(prefix="orch-bench-run-", dir="/dev/shm"))
    os.chmod(runtime, 0o711)
    return root / "data", runtime, "runtime dir on tmpfs (/dev/shm), as /run on a standard host"
