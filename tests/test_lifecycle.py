"""The lifecycle state machine, without any I/O."""

from __future__ import annotations

import pytest

from orchestrator.lifecycle import InvalidTransition, JobState, Lifecycle
from orchestrator.result import JobStatus


def states(lc: Lifecycle) -> list[str]:
    return [e.state.value for e in lc.events]


def test_happy_path() -> None:
    lc = Lifecycle("j", clock=lambda: 1.0)
    lc.provisioning()
    lc.provisioned()
    lc.exited(JobStatus.COMPLETED, exit_code=0)
    lc.collected()
    lc.torn_down()
    assert states(lc) == ["queued", "provisioning", "running", "collecting", "tearing_down", "completed"]
    assert lc.state.terminal


@pytest.mark.parametrize("where", ["provisioning", "running", "collecting"])
def test_every_failure_goes_through_teardown(where: str) -> None:
    lc = Lifecycle("j")
    lc.provisioning()
    if where in ("running", "collecting"):
        lc.provisioned()
    if where == "collecting":
        lc.exited(JobStatus.COMPLETED)
    lc.failed(JobStatus.ERROR, code="boom")
    assert lc.state is JobState.TEARING_DOWN
    lc.torn_down()
    assert lc.state is JobState.ERROR


def test_cancel_while_queued_needs_no_teardown() -> None:
    lc = Lifecycle("j")
    lc.failed(JobStatus.CANCELLED)
    assert lc.state is JobState.CANCELLED


def test_timeout_outcome_is_kept_through_teardown() -> None:
    lc = Lifecycle("j")
    lc.provisioning()
    lc.provisioned()
    lc.exited(JobStatus.TIMED_OUT)
    lc.collected()
    lc.torn_down()
    assert lc.state is JobState.TIMED_OUT


@pytest.mark.parametrize(
    "steps",
    [["provisioned"], ["provisioning", "collected"], ["provisioning", "torn_down"]],
)
def test_impossible_transitions_are_refused(steps: list[str]) -> None:
    lc = Lifecycle("j")
    with pytest.raises(InvalidTransition):
        for step in steps:
            getattr(lc, step)()


def test_events_are_serialisable() -> None:
    lc = Lifecycle("job-1", clock=lambda: 42.0)
    lc.provisioning()
    assert lc.events[-1].to_dict() == {
        "job_id": "job-1",
        "event": "provisioning",
        "previous": "queued",
        "at": 42.0,
        "details": {},
    }


def test_cancel_token_closes_its_descriptors_once() -> None:
    import os

    from orchestrator.cancel import CancelToken

    token = CancelToken()
    read_fd = token.fileno()
    token.close()
    reused = os.open("/dev/null", os.O_RDONLY)  # may get the number just freed
    try:
        token.close()
        del token
        os.fstat(reused)  # still open: the token did not close it a second time
    finally:
        os.close(reused)
    assert read_fd >= 0


def test_a_cancel_token_wakes_selectors_and_subscribers_once() -> None:
    import select

    from orchestrator.cancel import CancelToken

    token = CancelToken()
    calls: list[str] = []
    token.on_cancel(lambda: calls.append("a"))
    unsubscribe = token.on_cancel(lambda: calls.append("b"))
    unsubscribe()
    readable = token.fileno()
    assert select.select([readable], [], [], 0)[0] == []
    token.cancel("first")
    token.cancel("second")
    assert calls == ["a"] and token.reason == "first"
    assert select.select([readable], [], [], 0)[0] == [readable]
    token.on_cancel(lambda: calls.append("late"))  # already cancelled: called at once
    assert calls == ["a", "late"]
    late = CancelToken()
    late.cancel()
    assert select.select([late.fileno()], [], [], 0)[0] == [late.fileno()]  # made after the cancel
    token.close()
    late.close()
