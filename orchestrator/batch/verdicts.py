"""From a job result to a verdict about the code.

``infra_error`` means the orchestrator, sandbox, provider or control plane
failed; it is retried and never counted against the code. A missing
*interpreter* (the one batch chose to run the check program) is infra; a
missing command in a ``jobs`` line is the line's own fault and is ``failed``.
"""

from __future__ import annotations

import enum

from orchestrator.result import JobResult, JobStatus

INFRA_PREFIXES = ("sandbox.", "orchestrator.", "provider.", "transport.", "session.", "capacity.", "remote.", "auth.")


class Verdict(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LIMIT_EXCEEDED = "limit_exceeded"
    INFRA_ERROR = "infra_error"


def is_infra_code(code: str, *, interpreter_is_ours: bool) -> bool:
    if code == "job.command_not_found":
        return interpreter_is_ours
    return code.startswith(INFRA_PREFIXES) or code in ("orchestrator.error", "job.cancelled")


def judge(result: JobResult, *, interpreter_is_ours: bool) -> Verdict:
    status = result.status
    if status is JobStatus.COMPLETED:
        return Verdict.PASSED if result.exit_code == 0 else Verdict.FAILED
    if status is JobStatus.TIMED_OUT:
        return Verdict.TIMED_OUT
    if status is JobStatus.LIMIT_EXCEEDED:
        return Verdict.LIMIT_EXCEEDED
    if status is JobStatus.ERROR and result.error is not None:
        if not is_infra_code(result.error.code, interpreter_is_ours=interpreter_is_ours):
            return Verdict.FAILED
    return Verdict.INFRA_ERROR
