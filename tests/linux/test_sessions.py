"""Sessions on the linux provider: one sandbox, many commands, all through the agent."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecRequest
from orchestrator.providers.linux import LinuxProvider
from orchestrator.settings import Settings
from orchestrator.spec import parse_session_spec
from tests.conftest import assert_nothing_left


def run(provider: LinuxProvider, box: object, argv: list[str], timeout: float = 10, stdin: bytes | None = None):
    out = OutputCapture(1 << 20)
    outcome = provider.exec(box, ExecRequest(argv, {}, "/workspace", timeout, stdin), out, CancelToken())
    return outcome, out


@pytest.fixture
def session(settings: Settings):
    provider = LinuxProvider(settings)
    spec = parse_session_spec({"limits": {"memory_mb": 256}}).as_job(["true"])
    box = provider.create("sess-" + str(time.time_ns()), spec, session=True)
    yield provider, box
    provider.destroy(box)
    assert_nothing_left(settings)


def test_state_persists_between_commands(session) -> None:
    provider, box = session
    outcome, _ = run(provider, box, ["sh", "-c", "echo 41 > counter"])
    assert outcome.exit_code == 0
    outcome, out = run(provider, box, ["sh", "-c", "echo $(( $(cat counter) + 1 ))"])
    assert (outcome.exit_code, out.stdout.text()) == (0, "42\n")


def test_exit_codes_stdin_and_streams(session) -> None:
    provider, box = session
    outcome, out = run(provider, box, ["sh", "-c", "cat; echo oops >&2; exit 3"], stdin=b"hello")
    assert outcome.exit_code == 3
    assert out.stdout.text() == "hello" and out.stderr.text() == "oops\n"


def test_timeout_kills_the_command_but_not_the_session(session) -> None:
    provider, box = session
    outcome, _ = run(provider, box, ["sleep", "30"], timeout=0.5)
    assert outcome.timed_out
    outcome, out = run(provider, box, ["echo", "alive"])
    assert out.stdout.text() == "alive\n"


def test_unknown_command(session) -> None:
    provider, box = session
    outcome, _ = run(provider, box, ["/no/such/thing"])
    assert outcome.error_code == "job.command_not_found"


def test_agent_pipes_are_unreachable_from_commands(session) -> None:
    provider, box = session
    pid = box.agent.pid
    assert isinstance(pid, int)
    forged = '{"id": 99, "event": "exit", "code": 0}'
    outcome, out = run(
        provider,
        box,
        ["sh", "-c", f"ls /proc/{pid}/fd && echo LISTED; echo '{forged}' > /proc/{pid}/fd/1 && echo FORGED; true"],
    )
    assert outcome.exit_code == 0
    assert "LISTED" not in out.stdout.text() and "FORGED" not in out.stdout.text()
    assert run(provider, box, ["echo", "still fine"])[1].stdout.text() == "still fine\n"


def test_a_command_that_leaves_a_daemon_holding_its_output_still_returns(session) -> None:
    provider, box = session
    started = time.monotonic()
    outcome, out = run(provider, box, ["sh", "-c", "setsid sleep 30 & echo started"], timeout=20)
    assert outcome.exit_code == 0 and out.stdout.text() == "started\n"
    assert time.monotonic() - started < 5
    # Orphans are reaped by the agent (pid 1): no zombies pile up in the session.
    outcome, out = run(
        provider, box, ["sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.01 &); done; sleep 0.3; ps -eo stat"]
    )
    assert "Z" not in out.stdout.text().split()


def test_each_command_gets_its_own_directory_path_and_descriptors(session) -> None:
    """Commands are started by posix_spawn: cwd, PATH lookup and fds are per command, as with exec."""
    provider, box = session
    setup, _ = run(provider, box, ["sh", "-c", "mkdir -p bin && printf '#!/bin/sh\\necho mine\\n' > bin/mine"])
    assert setup.exit_code == 0
    run(provider, box, ["chmod", "+x", "bin/mine"])

    def execute(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[int | None, str, str]:
        out = OutputCapture(1 << 20)
        outcome = provider.exec(box, ExecRequest(argv, env, cwd, 10), out, CancelToken())
        return outcome.exit_code, out.stdout.text(), out.stderr.text()

    assert execute(["pwd"], "/tmp", {}) == (0, "/tmp\n", "")
    assert execute(["pwd"], "/workspace", {}) == (0, "/workspace\n", "")  # the previous cwd did not stick
    assert execute(["mine"], "/workspace", {"PATH": "/workspace/bin:/usr/bin"}) == (0, "mine\n", "")
    code, _, err = execute(["mine"], "/workspace", {})
    assert code == 127 and err.startswith("agent: cannot run mine")
    code, _, err = execute(["pwd"], "/no/such/dir", {})
    assert code == 127 and err.startswith("agent: cannot run pwd")
    code, listing, _ = execute(["sh", "-c", "ls /proc/self/fd"], "/workspace", {})
    assert code == 0 and listing.split() == ["0", "1", "2", "3"]  # 3: ls's own directory handle


def test_async_exec_matches_the_threaded_path(session) -> None:
    """The API awaits commands on its event loop; results, stdin, timeouts and errors are the same."""
    import asyncio

    from orchestrator.providers.linux.session import ASYNC_STDIN_LIMIT

    provider, box = session

    async def execute(argv: list[str], timeout: float = 10, stdin: bytes | None = None, cancel=None):
        out = OutputCapture(1 << 22)
        request = ExecRequest(argv, {}, "/workspace", timeout, stdin)
        outcome = await provider.exec_async(box, request, out, cancel or CancelToken())
        return outcome, out

    async def scenario() -> None:
        outcome, out = await execute(["sh", "-c", "cat; echo oops >&2; exit 3"], stdin=b"hello")
        assert (outcome.exit_code, out.stdout.text(), out.stderr.text()) == (3, "hello", "oops\n")
        big = b"x" * (ASYNC_STDIN_LIMIT * 4)  # written by a thread instead
        outcome, out = await execute(["wc", "-c"], stdin=big)
        assert (outcome.exit_code, out.stdout.text().strip()) == (0, str(len(big)))
        outcome, _ = await execute(["sleep", "30"], timeout=0.5)
        assert outcome.timed_out
        outcome, _ = await execute(["/no/such/thing"])
        assert outcome.error_code == "job.command_not_found"
        # A caller that gives up takes its command with it.
        task = asyncio.ensure_future(execute(["sh", "-c", "sleep 2; touch /workspace/late"]))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(2.5)
        outcome, out = await execute(["sh", "-c", "ls /workspace; ps -e -o comm= | grep -c sleep || true"])
        assert "late" not in out.stdout.text() and out.stdout.text().split()[-1] == "0", out.stdout.text()
        # So does a token cancelled from another thread (a session deleted mid-command).
        token = CancelToken()
        asyncio.get_running_loop().call_later(0.3, lambda: threading.Thread(target=token.cancel).start())
        started = time.monotonic()
        outcome, _ = await execute(["sleep", "30"], cancel=token)
        assert time.monotonic() - started < 5 and outcome.exit_code != 0

    asyncio.run(scenario())
