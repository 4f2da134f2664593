"""Verdicts, retries and delivery, with a scripted executor (no sandbox)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from orchestrator.batch.formats import Sample
from orchestrator.batch.runner import BatchOptions, FatalBatchError, run_batch
from orchestrator.batch.summary import summarize
from orchestrator.batch.verdicts import Verdict, judge
from orchestrator.cancel import CancelToken
from orchestrator.errors import SandboxCreateError
from orchestrator.result import ErrorInfo, JobResult, JobStatus
from orchestrator.spec import JobSpec


def result(status: JobStatus, exit_code: int | None = None, code: str | None = None) -> JobResult:
    error = ErrorInfo(code=code, message="x") if code else None
    return JobResult(id="j", status=status, exit_code=exit_code, provider="fake", error=error)


@pytest.mark.parametrize(
    ("res", "ours", "verdict"),
    [
        (result(JobStatus.COMPLETED, 0), True, Verdict.PASSED),
        (result(JobStatus.COMPLETED, 1), True, Verdict.FAILED),
        (result(JobStatus.TIMED_OUT, None, "limit.timeout"), True, Verdict.TIMED_OUT),
        (result(JobStatus.LIMIT_EXCEEDED, -9, "limit.cpu"), True, Verdict.LIMIT_EXCEEDED),
        (result(JobStatus.ERROR, None, "sandbox.create_failed"), True, Verdict.INFRA_ERROR),
        (result(JobStatus.ERROR, None, "orchestrator.internal"), False, Verdict.INFRA_ERROR),
        (result(JobStatus.ERROR, None, "provider.unavailable"), False, Verdict.INFRA_ERROR),
        (result(JobStatus.ERROR, None, "transport.timeout"), False, Verdict.INFRA_ERROR),
        (result(JobStatus.ERROR, None, "session.lost"), False, Verdict.INFRA_ERROR),
        (result(JobStatus.ERROR, None, "remote.queue_full"), False, Verdict.INFRA_ERROR),
        (result(JobStatus.ERROR, None, "job.command_not_found"), True, Verdict.INFRA_ERROR),  # our interpreter
        (result(JobStatus.ERROR, None, "job.command_not_found"), False, Verdict.FAILED),  # the line's command
        (result(JobStatus.CANCELLED, None, "job.cancelled"), True, Verdict.INFRA_ERROR),
    ],
)
def test_verdict_table(res: JobResult, ours: bool, verdict: Verdict) -> None:
    assert judge(res, interpreter_is_ours=ours) is verdict


class Scripted:
    """Answers per spec label from a queue of results; counts calls."""

    def __init__(self, plan: dict[str, list[Any]]):
        self.plan = plan
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def run(self, spec: JobSpec, cancel: CancelToken) -> JobResult:
        name = spec.labels["batch.task"]
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            answers = self.plan[name]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, JobResult)
        return answer


def sample(task: str, i: int = 0) -> Sample:
    return Sample(id=f"{task}#{i}", task=task, program="pass")


def test_infra_errors_are_retried_bounded_and_never_counted_as_failures() -> None:
    ok, bad = result(JobStatus.COMPLETED, 0), result(JobStatus.COMPLETED, 1)
    flaky = [SandboxCreateError("flaky"), result(JobStatus.ERROR, None, "sandbox.create_failed"), ok]
    broken = [result(JobStatus.ERROR, None, "sandbox.teardown_failed")]
    executor = Scripted({"ok": [ok], "bad": [bad], "flaky": flaky, "broken": broken})
    records: list[dict[str, Any]] = []
    opts = BatchOptions(parallel=3, retries=2, retry_backoff_s=0.0)
    run_batch([sample(t) for t in ("ok", "bad", "flaky", "broken")], executor, opts, on_record=records.append)
    by_task = {r["task"]: r for r in records}
    assert {t: r["verdict"] for t, r in by_task.items()} == {
        "ok": "passed", "bad": "failed", "flaky": "passed", "broken": "infra_error"
    }  # fmt: skip
    assert by_task["flaky"]["attempts"] == 3 and executor.calls["broken"] == 3  # 1 + 2 retries, no more
    summary = summarize(records, ks=(1,), elapsed_s=1.0, ran=4)
    assert summary["infra_errors"] == 1 and summary["tasks"] == 3  # "broken" has no judged sample
    assert summary["pass_rate"] == pytest.approx(2 / 3)
    assert summary["pass_at_k"] == {"pass@1": pytest.approx(2 / 3)}


def test_fatal_error_stops_the_batch() -> None:
    executor = Scripted({"a": [FatalBatchError("bad token")]})
    with pytest.raises(FatalBatchError):
        run_batch([sample("a", i) for i in range(20)], executor, BatchOptions(parallel=2), on_record=lambda r: None)
    assert executor.calls["a"] <= 4  # the window, not the whole input
