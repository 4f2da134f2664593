"""``orchestrator up`` on the linux provider, driven through a real pseudo-terminal."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pexpect
import pytest

from orchestrator.settings import Settings
from tests.conftest import assert_nothing_left, make_root_dir, sandbox_uid_processes
from tests.up.conftest import PROMPT, cli, finish, local_sessions, spawn_up, wait_for


def test_shell_isolation_resize_ctrl_c_and_exit_code(settings: Settings, up_children: list[pexpect.spawn]) -> None:
    source = make_root_dir("orch-up-in-")
    (source / "input.txt").write_text("secret input\n")
    os.chmod(source / "input.txt", 0o644)
    child = spawn_up(settings, "--map", f"{source}:/data", "--memory", "256", "--timeout", "60", rows=30, cols=100)
    up_children.append(child)
    # The banner: what the session is and how to leave.
    child.expect("orchestrator up: session (up-[0-9a-f]+) on provider linux")
    session_id = child.match.group(1)
    child.expect(f"mount: +{source} -> /data \\(read-only\\)")
    child.expect("network: +off")
    child.expect("leave: +exit or Ctrl-D")
    child.expect(PROMPT)
    assert [s["id"] for s in local_sessions(settings)] == [session_id]

    # Commands and their output; line editing by the shell (a real tty).
    child.sendline("echo $((6 * 7)) $TERM; cat /data/input.txt")
    child.expect("42 xterm")
    child.expect("secret input")
    child.expect(PROMPT)
    child.send("echo typo\x7f\x7f\x7fpo-fixed\r")  # three backspaces: the shell's line editing
    child.expect("\rtpo-fixed\r\n")
    child.expect(PROMPT)

    # Isolation, checked from inside: inputs read-only, network off, not root on the host.
    child.sendline("touch /data/new 2>&1; echo rc=$?")
    child.expect("Read-only file system")
    child.expect("rc=1")
    child.expect(PROMPT)
    child.sendline(
        "python3 -c \"import socket; s=socket.socket(); s.settimeout(2); s.connect(('1.1.1.1', 53))\" 2>&1 | tail -1"
    )
    child.expect("(Network is unreachable|OSError)")
    child.expect(PROMPT)
    child.sendline("cat /proc/net/dev | grep -c : ; hostname; id -u")
    child.expect("\r1\r\nsandbox\r\n1000\r\n")
    child.expect(PROMPT)

    # The window size follows the terminal (SIGWINCH -> TIOCSWINSZ on the pty).
    child.sendline("stty size")
    child.expect("30 100")
    child.expect(PROMPT)
    child.setwinsize(50, 132)
    time.sleep(0.3)
    child.sendline("stty size; echo cols=$COLUMNS")
    child.expect("50 132")
    child.expect("cols=132")
    child.expect(PROMPT)

    # Ctrl-C reaches the job, not `up`.
    child.sendline("sleep 30; echo not-interrupted")
    time.sleep(0.5)
    child.sendintr()
    child.expect(PROMPT)
    assert "^C" in child.before and "\nnot-interrupted" not in child.before
    child.sendline("echo still-here")
    child.expect("still-here")
    child.expect(PROMPT)

    child.sendline("exit 3")
    child.expect("destroyed .*nothing left")
    assert finish(child) == (3, None)
    assert_nothing_left(settings)
    assert local_sessions(settings) == []
    assert (source / "input.txt").read_text() == "secret input\n" and not (source / "new").exists()


def test_ctrl_d_copies_the_workspace_out_as_hostile_data(
    settings: Settings, tmp_path: Path, up_children: list[pexpect.spawn]
) -> None:
    out = tmp_path / "out"
    child = spawn_up(settings, "--output", str(out), "--timeout", "60")
    up_children.append(child)
    child.expect(f"/workspace is copied to {out}")
    child.expect(PROMPT)
    child.sendline(
        "mkdir -p sub && echo hello > sub/a.txt && printf data > b.bin && "
        "ln -s /etc/passwd link && mkfifo fifo && echo ok-made"
    )
    child.expect("ok-made")
    child.expect(PROMPT)
    child.sendcontrol("d")
    child.expect("copied [0-9]+ file\\(s\\)")
    child.expect("nothing left")
    assert finish(child) == (0, None)
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert "sub/a.txt" in found and "b.bin" in found
    assert (out / "sub" / "a.txt").read_text() == "hello\n"
    assert not (out / "link").exists() and not (out / "link").is_symlink()  # never followed, never copied
    assert not (out / "fifo").exists()
    assert_nothing_left(settings)


def test_command_mode_runs_the_program_interactively(settings: Settings, up_children: list[pexpect.spawn]) -> None:
    child = spawn_up(
        settings, "--", "python3", "-c", "import sys; name = input('name? '); print(name.upper()); sys.exit(5)"
    )
    up_children.append(child)
    child.expect("program: +python3 -c")
    child.expect("name\\? ")
    child.sendline("sandboxed")
    child.expect("SANDBOXED")
    assert finish(child) == (5, None)
    assert_nothing_left(settings)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signals_tear_down_and_exit_non_zero(settings: Settings, sig: int, up_children: list[pexpect.spawn]) -> None:
    child = spawn_up(settings)
    up_children.append(child)
    child.expect(PROMPT)
    child.sendline("sleep 300 & sleep 300")
    time.sleep(0.5)
    os.kill(child.pid, sig)
    child.expect(f"{signal.Signals(sig).name} received; tearing the session down")
    child.expect("nothing left")
    assert finish(child) == (128 + sig, None)
    assert_nothing_left(settings)
    assert local_sessions(settings) == []


def test_closing_the_terminal_tears_down(settings: Settings, up_children: list[pexpect.spawn]) -> None:
    child = spawn_up(settings)
    up_children.append(child)
    child.expect(PROMPT)
    child.sendline("sleep 300")
    time.sleep(0.5)
    child.ptyproc.fileobj.close()  # the terminal emulator goes away: the kernel sends SIGHUP
    wait_for(lambda: not child.ptyproc.isalive(), timeout=20)
    assert child.ptyproc.exitstatus == 128 + signal.SIGHUP
    assert_nothing_left(settings)
    assert local_sessions(settings) == []


def test_timeout_tears_down_with_a_warning(settings: Settings, up_children: list[pexpect.spawn]) -> None:
    child = spawn_up(settings, "--timeout", "3")
    up_children.append(child)
    child.expect(PROMPT)
    child.sendline("sleep 60")
    child.expect("WARNING: the session reached its --timeout of 3s", timeout=15)
    child.expect("nothing left")
    assert finish(child) == (124, None)
    assert_nothing_left(settings)


def test_sessions_list_and_rm_through_the_owner(settings: Settings, up_children: list[pexpect.spawn]) -> None:
    child = spawn_up(settings)
    up_children.append(child)
    child.expect("session (up-[0-9a-f]+) on provider")
    session_id = child.match.group(1)
    child.expect(PROMPT)
    listing = cli(settings, "sessions", "list")
    assert session_id in listing.stdout and "running" in listing.stdout
    [record] = local_sessions(settings)
    assert record["owner_pid"] == child.pid and record["state"] == "running"
    removed = cli(settings, "sessions", "rm", session_id)
    assert removed.returncode == 0, removed.stderr
    assert f"its owner (pid {child.pid}) tore it down" in removed.stdout
    child.expect("SIGTERM received")
    child.expect("nothing left")
    assert finish(child) == (128 + signal.SIGTERM, None)
    assert_nothing_left(settings)
    assert cli(settings, "sessions", "rm", session_id).returncode == 125  # gone


def test_sessions_rm_destroys_an_orphan(settings: Settings, up_children: list[pexpect.spawn]) -> None:
    child = spawn_up(settings)
    up_children.append(child)
    child.expect("session (up-[0-9a-f]+) on provider")
    session_id = child.match.group(1)
    child.expect(PROMPT)
    child.sendline("sleep 300 &")
    child.expect(PROMPT)
    os.kill(child.pid, signal.SIGKILL)
    finish(child)
    wait_for(lambda: not sandbox_uid_processes(), timeout=20)
    [record] = local_sessions(settings)
    assert record["id"] == session_id and record["state"] == "orphaned"
    removed = cli(settings, "sessions", "rm", session_id)
    assert removed.returncode == 0, removed.stderr
    assert "destroyed" in removed.stdout
    assert local_sessions(settings) == []
    assert_nothing_left(settings)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--map", "/does/not/exist:/in"], "spec.invalid_mount"),
        (["--timeout", "90000"], "spec.limit_exceeds_maximum"),
        (["--provider", "nope"], "provider.unknown"),
        (["--shell", "bash"], "spec.invalid_command"),
    ],
)
def test_bad_options_fail_before_anything_exists(settings: Settings, args: list[str], code: str) -> None:
    proc = cli(settings, "up", *args)
    assert proc.returncode == 125, proc.stderr
    assert f"[{code}]" in proc.stderr
    assert_nothing_left(settings)
