"""Warm starts (``providers/linux/warm.py``): programs forked from a warm interpreter, attacked.

Each program runs as an adversary would write it: it looks for the interpreter
it was forked from, for earlier programs, for the network and for privileges,
and tries to break the outer sandbox for the next program.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.batch.runner import LocalExecutor
from orchestrator.cancel import CancelToken
from orchestrator.engine import Engine
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecOutcome
from orchestrator.providers.linux import LinuxProvider, warm
from orchestrator.providers.linux.warm import WarmPool, WarmSlotLost, WarmUnavailable, eligible
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec, parse_job_spec
from tests.conftest import IS_ROOT, assert_nothing_left


def program(source: str, **limits: Any) -> JobSpec:
    return parse_job_spec(
        {"script": source, "interpreter": ["python3"], "limits": {"timeout_s": 10, "cpu_s": 5, **limits}}
    )


@pytest.fixture
def pool(engine: Engine, settings: Settings) -> Iterator[WarmPool]:
    provider = engine.provider("linux")
    assert isinstance(provider, LinuxProvider)
    warm = WarmPool(provider)
    yield warm
    warm.close()
    assert_nothing_left(settings)


def run(pool: WarmPool, spec: JobSpec, cancel: CancelToken | None = None) -> tuple[ExecOutcome, str, str]:
    capture = OutputCapture(1 << 20)
    outcome = pool.run(spec, capture, cancel or CancelToken())
    return outcome, capture.stdout.text(), capture.stderr.text()


def idle_slots(pool: WarmPool) -> list[Any]:
    return [slot for slots in pool._idle.values() for slot in slots]


PROBE = r"""
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("caps", status["CapEff"].strip(), status["CapPrm"].strip(), status["CapAmb"].strip())
print("nnp", status["NoNewPrivs"].strip(), "seccomp", status["Seccomp"].strip(), "filters",
      status["Seccomp_filters"].strip())
print("pid", os.getpid(), "procs", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("internal", sorted(os.listdir("/.orchestrator")))
print("argv", sys.argv, "main", __name__, "file", __file__)
print("unshare", libc.unshare(0x00020000), ctypes.get_errno())
print("mount", libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None), ctypes.get_errno())
print("ptrace", libc.ptrace(16, 1, None, None), ctypes.get_errno())
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    print("net open")
except OSError as exc:
    print("net", exc.errno)
try:
    open("/usr/lib/orch-warm-probe", "w")
    print("usr writable")
except OSError as exc:
    print("usr", exc.errno)
"""


def test_a_warm_program_is_as_confined_as_a_cold_one(pool: WarmPool) -> None:
    outcome, out, err = run(pool, program(PROBE))
    assert outcome.exit_code == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["caps"] == "0000000000000000 0000000000000000 0000000000000000"
    assert lines["nnp"].startswith("1 seccomp 2 filters ") and int(lines["nnp"].split()[-1]) >= 2
    assert lines["pid"] == "1 procs [1]"  # alone in its pid namespace: no warm interpreter to be seen
    assert lines["internal"] == "['script']"  # the interpreter's own files are hidden
    assert lines["argv"] == "['/.orchestrator/script'] main __main__ file /.orchestrator/script"
    assert lines["unshare"] == lines["mount"] == lines["ptrace"] == "-1 1"  # EPERM, from the seccomp filter
    assert lines["net"] == "101"  # ENETUNREACH: a network namespace with nothing in it
    assert lines["usr"] == "30"  # EROFS


WRITABLE = r"""
import os
def writable():
    found = []
    for root, dirs, _ in os.walk("/"):
        if root.startswith(("/proc", "/sys", "/usr", "/etc")):
            dirs[:] = []
        elif os.access(root, os.W_OK):
            found.append(root)
    return found
"""

SCORCH = (
    WRITABLE
    + r"""
import signal, subprocess, sys
for directory in writable():
    open(os.path.join(directory, "left.txt"), "w").write("x")
os.openpty()
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
for sig in (signal.SIGKILL, signal.SIGTERM):
    try:
        os.kill(-1, sig)  # everything this program may signal
    except OSError:
        pass
os.kill(1, signal.SIGKILL)  # its own namespace's pid 1 is itself: refused by the kernel
print("survived")
"""
)

CHECK = (
    WRITABLE
    + r"""
assert not [d for d in writable() if os.path.exists(os.path.join(d, "left.txt"))]
assert [p for p in os.listdir("/proc") if p.isdigit()] == ["1"]
assert os.listdir("/dev/pts") == ["ptmx"]
print(sorted(writable()))
"""
)


def test_a_program_cannot_harm_the_interpreter_or_the_next_program(pool: WarmPool) -> None:
    outcome, out, err = run(pool, program(SCORCH))
    assert outcome.exit_code == 0 and out == "survived\n", err
    (slot,) = idle_slots(pool)
    outcome, out, err = run(pool, program(CHECK))
    assert outcome.exit_code == 0, err
    assert out == "['/dev/shm', '/tmp', '/workspace']\n"  # each a fresh instance for every program
    assert idle_slots(pool) == [slot]  # the same warm interpreter served both


def test_programs_do_not_share_random_state(pool: WarmPool) -> None:
    draws = {run(pool, program("import random\nprint(random.random())"))[1] for _ in range(3)}
    assert len(draws) == 3


def test_exit_codes_exceptions_and_output_are_those_of_python(pool: WarmPool) -> None:
    outcome, _, err = run(pool, program("def f():\n    raise KeyError('boom')\nf()\n"))
    assert outcome.exit_code == 1 and outcome.limit is None
    assert err.startswith('Traceback (most recent call last):\n  File "/.orchestrator/script", line 3')
    assert err.endswith("KeyError: 'boom'\n") and "zygote" not in err
    assert run(pool, program("import sys\nsys.exit(3)"))[0].exit_code == 3
    outcome, _, err = run(pool, program("raise SystemExit('bye')"))
    assert (outcome.exit_code, err) == (1, "bye\n")
    outcome, out, _ = run(
        pool, program("import atexit, sys\natexit.register(lambda: print('atexit'))\nprint('a', end='')")
    )
    assert (outcome.exit_code, out) == (0, "aatexit\n")
    outcome, _, err = run(pool, program("def broken(:\n"))
    assert outcome.exit_code == 1 and "SyntaxError" in err


def test_limits_end_a_program_and_are_reported(pool: WarmPool) -> None:
    cpu, _, _ = run(pool, program("while True:\n    pass\n", cpu_s=1))
    assert cpu.limit == "cpu" and cpu.signal == signal.SIGKILL
    burn = "import time\nend = time.process_time() + 0.8\nwhile time.process_time() < end:\n    pass\n"
    assert run(pool, program(burn, cpu_s=0.5))[0].limit == "cpu"  # a fraction over a whole-second rlimit
    assert run(pool, program(burn, cpu_s=2))[0].limit is None
    bomb, out, _ = run(
        pool,
        program(
            "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
            "            os._exit(0)\n        n += 1\nexcept OSError:\n    print(n)\n",
            pids=20,
        ),
    )
    assert bomb.exit_code == 0 and int(out) < 25
    if IS_ROOT:  # the memory limit is the outer sandbox's cgroup
        memory, _, _ = run(
            pool, program("x = bytearray(400 * 1024 * 1024)\nx[::4096] = b'x' * len(x[::4096])", memory_mb=128)
        )
        assert memory.limit == "memory"
    assert run(pool, program("print('after')"))[1] == "after\n"
    # The warm interpreter's own CPU time adds up over every program: it is not held to theirs.
    for slot in idle_slots(pool):
        limits = open(f"/proc/{slot.sandbox.child_pids[0]}/limits").read()
        cpu_line = next(line for line in limits.splitlines() if line.startswith("Max cpu time"))
        assert int(cpu_line.split()[3]) >= 24 * 3600, cpu_line


def test_a_timeout_or_a_cancel_replaces_the_outer_sandbox(pool: WarmPool, settings: Settings) -> None:
    outcome, _, _ = run(pool, program("import time\ntime.sleep(30)", timeout_s=0.5))
    assert outcome.timed_out and idle_slots(pool) == []
    token = CancelToken()
    token.cancel("stop")
    assert run(pool, program("print(1)"), token)[0].exit_code is None
    assert idle_slots(pool) == []
    assert run(pool, program("print('new')"))[1] == "new\n"
    assert len(idle_slots(pool)) == 1
    run(pool, program("pass", timeout_s=3, output_bytes=10))  # per-program limits: the same outer sandbox
    assert len(idle_slots(pool)) == 1


def test_a_dead_interpreter_is_an_infra_error_and_is_replaced(pool: WarmPool) -> None:
    run(pool, program("pass"))
    (slot,) = idle_slots(pool)
    os.kill(slot.sandbox.child_pids[0], signal.SIGKILL)  # the warm interpreter itself
    with pytest.raises(WarmSlotLost):
        run(pool, program("print(1)"))
    assert idle_slots(pool) == []
    assert run(pool, program("print(2)"))[1] == "2\n"


def test_only_plain_python_scripts_start_warm() -> None:
    assert eligible(program("pass"))
    assert not eligible(parse_job_spec({"script": "pass", "interpreter": ["python3", "-O"]}))
    assert not eligible(parse_job_spec({"command": ["python3", "-c", "pass"]}))
    assert not eligible(parse_job_spec({"script": "pass", "interpreter": ["python3"], "workdir": "/workspace/a"}))
    assert not eligible(
        parse_job_spec({"script": "pass", "interpreter": ["python3"], "files": [{"path": "a", "content": "b"}]})
    )


def test_a_host_that_refuses_warm_starts_runs_samples_cold(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = engine.provider("linux")
    assert isinstance(provider, LinuxProvider)
    monkeypatch.setattr(warm, "ZYGOTE_SYSCALLS", frozenset())  # the outer filter now refuses unshare too
    with pytest.raises(WarmUnavailable, match="unshare"):
        WarmPool(provider).run(program("pass"), OutputCapture(100), CancelToken())
    executor = LocalExecutor(engine, warm=True)
    result = executor.run(program("import sys\nprint('heapq' in sys.modules)"), CancelToken())
    assert (result.exit_code, result.stdout) == (0, "False\n")  # a cold interpreter
    assert executor.warm is None
    executor.close()
    assert_nothing_left(settings)


@pytest.mark.skipif(not IS_ROOT, reason="memory limits are cgroup limits only as root")
def test_a_warm_program_has_the_memory_room_of_a_cold_one(pool: WarmPool, engine: Engine) -> None:
    """The idle interpreter's share of the outer cgroup (about 8 MB) stands in for the interpreter
    start-up memory a cold program is charged: what fits one fits the other."""
    fill = "x = bytearray({} * 2**20)\nx[::4096] = b'x' * len(x[::4096])\n"
    cold = engine.run(parse_job_spec({"command": ["python3", "-c", fill.format(112)], "limits": {"memory_mb": 128}}))
    assert cold.exit_code == 0, cold.stderr
    assert run(pool, program(fill.format(112), memory_mb=128))[0].exit_code == 0
    assert run(pool, program(fill.format(160), memory_mb=128))[0].limit == "memory"
