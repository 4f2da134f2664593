"""Attacks from inside the sandbox, checked from the host side."""

from __future__ import annotations

import hashlib
import os
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from orchestrator.engine import Engine
from orchestrator.result import JobResult, JobStatus
from orchestrator.spec import parse_job_spec
from tests.conftest import make_root_dir

pytestmark = pytest.mark.usefixtures("no_leaks")


def py(engine: Engine, code: str, **spec: object) -> JobResult:
    return engine.run(parse_job_spec({"command": ["python3", "-c", textwrap.dedent(code)], **spec}))


def test_network_is_off_and_host_listener_sees_nothing(engine: Engine) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        result = py(
            engine,
            f"""
            import socket
            for host in ("127.0.0.1", "10.0.2.2", "1.1.1.1"):
                try:
                    socket.create_connection((host, {port}), timeout=1)
                    print("CONNECTED", host)
                except OSError as exc:
                    print("refused", host, exc.errno)
            print(open("/proc/net/dev").read())
            """,
        )
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert result.status is JobStatus.COMPLETED, result
    assert "CONNECTED" not in result.stdout
    assert accepted == []
    interfaces = [line.split(":")[0].strip() for line in result.stdout.splitlines() if ":" in line]
    assert [i for i in interfaces if i and not i.startswith(("refused", "Inter", "face"))] == ["lo"]


def test_read_only_input_cannot_be_changed(engine: Engine) -> None:
    source = make_root_dir("orch-input-")
    target = source / "data.txt"
    target.write_text("original\n")
    os.chmod(target, 0o644)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    result = py(
        engine,
        """
        import os
        for attempt in (lambda: open("/input/data.txt", "w").write("pwned"),
                        lambda: os.remove("/input/data.txt"),
                        lambda: os.rename("/input/data.txt", "/input/x"),
                        lambda: os.chmod("/input/data.txt", 0o777),
                        lambda: open("/input/new.txt", "w")):
            try:
                attempt()
                print("WROTE")
            except OSError as exc:
                print("denied", exc.errno)
        print(open("/input/data.txt").read())
        """,
        mounts=[{"source": str(source), "target": "/input"}],
    )
    assert result.status is JobStatus.COMPLETED, result
    assert "WROTE" not in result.stdout
    assert "original" in result.stdout
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(source)) == ["data.txt"]


def test_host_filesystem_and_processes_are_invisible(engine: Engine) -> None:
    marker = f"host-secret-{os.urandom(4).hex()}"
    os.environ["ORCH_TEST_SECRET"] = marker
    try:
        result = py(
            engine,
            """
            import os
            for path in ("/root", "/home", "/work", "/var", "/etc/shadow", "/run", "/sys", "/opt"):
                print(path, os.path.exists(path))
            print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
            print("env", sorted(os.environ))
            print(open("/etc/passwd").read())
            """,
        )
    finally:
        del os.environ["ORCH_TEST_SECRET"]
    assert result.status is JobStatus.COMPLETED, result
    out = result.stdout
    for path in ("/root", "/home", "/work", "/var", "/etc/shadow", "/run", "/sys", "/opt"):
        assert f"{path} False" in out
    pids = eval(out.split("pids ")[1].splitlines()[0])
    assert max(pids) < 10, pids
    assert marker not in out
    env = eval(out.split("env ")[1].splitlines()[0])
    assert set(env) <= {"PATH", "HOME", "LANG", "TMPDIR", "USER", "PWD", "LC_CTYPE"}
    assert "root:x:0:0:root:/root" not in out


@pytest.mark.parametrize(
    "call",
    [
        "libc.ptrace(16, 1, 0, 0)",  # PTRACE_ATTACH to pid 1
        "libc.unshare(0x10000000)",  # new user namespace
        "libc.unshare(0x20000)",  # new mount namespace
        "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
        "libc.syscall(321, 0, 0, 0)",  # bpf
        "libc.syscall(298, 0, 0, -1, -1, 0)",  # perf_event_open
        "libc.syscall(250, 0, 0)",  # keyctl
        "libc.syscall(425, 8, 0)",  # io_uring_setup
        "libc.syscall(323, 0)",  # userfaultfd
        "libc.syscall(246, 0, 0, 0, 0)",  # kexec_load
        "libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)",  # clone(CLONE_NEWUSER)
    ],
)
def test_dangerous_syscalls_are_refused(engine: Engine, call: str) -> None:
    if not os.uname().machine == "x86_64" and "syscall(" in call:
        pytest.skip("raw syscall numbers in this case are x86_64's")
    result = py(
        engine,
        f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        rc = {call}
        print("rc", rc, "errno", ctypes.get_errno())
        """,
    )
    assert result.status is JobStatus.COMPLETED, result
    assert "rc -1 errno 1" in result.stdout, result.stdout


def test_foreign_syscall_abi_kills_the_process(engine: Engine) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("x32 exists only on x86_64")
    # getpid through the x32 ABI (bit 30 set) must not slip past a filter written for native numbers.
    result = py(
        engine,
        """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print("alive", libc.syscall(0x40000000 | 39))
        """,
    )
    assert "alive" not in result.stdout
    assert result.exit_code == 128 + 31  # SIGSYS


def test_no_capabilities_no_new_privs_and_no_leaked_fds(engine: Engine) -> None:
    result = py(
        engine,
        """
        import os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print("caps", status["CapEff"].strip(), status["CapBnd"].strip(), status["CapPrm"].strip())
        print("nnp", status["NoNewPrivs"].strip(), "seccomp", status["Seccomp"].strip())
        print("uid", os.getuid(), os.geteuid())
        fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
        print("fds", [f for f in fds if os.path.exists(f"/proc/self/fd/{f}") and f > 2
                      and not os.readlink(f"/proc/self/fd/{f}").startswith("/proc")])
        """,
    )
    assert "caps 0000000000000000 0000000000000000 0000000000000000" in result.stdout
    assert "nnp 1 seccomp 2" in result.stdout
    assert "uid 1000 1000" in result.stdout
    assert "fds []" in result.stdout


def test_sandbox_runs_as_unprivileged_host_uid(engine: Engine) -> None:
    if os.geteuid() != 0:
        pytest.skip("the uid drop applies when the orchestrator runs as root")
    marker = f"1.{int.from_bytes(os.urandom(3), 'big'):08d}"
    seen: list[int] = []
    job = threading.Thread(target=lambda: engine.run(parse_job_spec({"command": ["sleep", marker]})))
    job.start()
    try:
        for _ in range(200):
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        cmdline = open(f"/proc/{entry.name}/cmdline", "rb").read()
                    except OSError:
                        continue
                    if cmdline == f"sleep\0{marker}\0".encode():
                        seen.append(os.stat(entry.path).st_uid)
            if seen:
                break
            threading.Event().wait(0.02)
    finally:
        job.join()
    assert seen, "the job process was not found on the host"
    base = engine.settings.linux.sandbox_uid_base
    assert all(base <= uid < base + engine.settings.linux.sandbox_uid_count for uid in seen), seen


def test_workspace_is_private_and_fresh(engine: Engine) -> None:
    first = engine.run(parse_job_spec({"command": ["sh", "-c", "echo leak > /workspace/x; echo leak > /tmp/y"]}))
    second = engine.run(parse_job_spec({"command": ["sh", "-c", "ls -A /workspace /tmp"]}))
    assert first.status is JobStatus.COMPLETED
    assert "x" not in second.stdout.split() and "y" not in second.stdout.split()


def test_symlink_in_workspace_does_not_leak_host_files_as_artifacts(engine: Engine, tmp_path: Path) -> None:
    secret = make_root_dir("orch-secret-") / "secret.txt"
    secret.write_text("TOPSECRET")
    result = engine.run(
        parse_job_spec(
            {
                "command": ["sh", "-c", f"ln -s {secret} /workspace/link.txt; ln -s / /workspace/rootdir; echo ok"],
                "artifacts": ["**"],
            }
        ),
    )
    assert result.status is JobStatus.COMPLETED
    assert result.artifacts == []
