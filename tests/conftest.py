from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.engine import Engine
from orchestrator.providers.linux import cgroups, workspace
from orchestrator.settings import LinuxSettings, Settings

IS_ROOT = os.geteuid() == 0
UID_BASE = 1_900_000_000 + (os.getpid() % 10_000) * 64
UID_COUNT = 64
CGROUP_PARENT = f"orchestrator-test-{os.getpid()}"


def make_root_dir(prefix: str, mode: int = 0o755) -> Path:
    """A temp dir an unprivileged sandbox uid can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="session")
def base_dir() -> Iterator[Path]:
    path = make_root_dir("orch-tests-", 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(base_dir: Path, request: pytest.FixtureRequest) -> Settings:
    name = request.node.name.replace("/", "_")[:60]
    root = base_dir / f"{name}-{os.urandom(3).hex()}"
    root.mkdir()
    os.chmod(root, 0o711)
    return Settings(
        data_dir=root / "data",
        runtime_dir=root / "run",
        linux=LinuxSettings(sandbox_uid_base=UID_BASE, sandbox_uid_count=UID_COUNT, cgroup_parent=CGROUP_PARENT),
    )


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return Engine(settings)


def orchestrator_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for an ``orchestrator`` process that uses this test's dirs and uid range."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        ORCH_RUNTIME_DIR=str(settings.runtime_dir),
        ORCH_DATA_DIR=str(settings.data_dir),
        ORCH_LINUX__SANDBOX_UID_BASE=str(UID_BASE),
        ORCH_LINUX__SANDBOX_UID_COUNT=str(UID_COUNT),
        ORCH_LINUX__CGROUP_PARENT=CGROUP_PARENT,
    )
    env.update(extra)
    return env


def sandbox_uid_processes() -> list[int]:
    """Processes running as one of this test session's sandbox uids.

    Exited processes waiting for the host's pid 1 to reap them are ignored:
    after an orchestrator is SIGKILLed that is all the
    kernel leaves, and only the host's init can collect them (this machine's
    init never does). The orchestrator adopts its sandboxes' processes as a
    child subreaper, so a zombie it failed to reap has it as parent and counts.
    """
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
                fields = open(f"{entry.path}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if UID_BASE <= uid < UID_BASE + UID_COUNT:
                if fields[0] == "Z" and fields[1] == "1":
                    continue
                found.append(int(entry.name))
    return found


def leftovers(settings: Settings) -> dict[str, list[str]]:
    """Everything a finished job could have left on the host."""
    sandboxes = settings.runtime_dir / "sandboxes"
    return {
        "sandboxes": sorted(p.name for p in sandboxes.iterdir()) if sandboxes.is_dir() else [],
        "mounts": workspace.mounted_under(settings.runtime_dir),
        "cgroups": [str(p) for p in cgroups.leftover_groups(CGROUP_PARENT)],
        "processes": [str(p) for p in sandbox_uid_processes()] if IS_ROOT else [],
    }


def assert_nothing_left(settings: Settings) -> None:
    left = leftovers(settings)
    assert left == {"sandboxes": [], "mounts": [], "cgroups": [], "processes": []}, left


@pytest.fixture
def no_leaks(settings: Settings) -> Iterator[None]:
    yield
    assert_nothing_left(settings)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for base in [Path("/sys/fs/cgroup") / CGROUP_PARENT, *Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}")]:
        if base.is_dir():
            for child in base.iterdir():
                if child.is_dir():
                    child.rmdir()
            base.rmdir()
