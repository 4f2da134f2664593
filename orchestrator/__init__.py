"""Run untrusted, AI-generated code in disposable sandboxes.

The public surface: build ``Settings``, give them to an ``Engine``, and run a
``JobSpec``; every error is an ``OrchestratorError`` with a stable ``code``.
"""

from orchestrator.engine import Engine, RunOptions, result_exit_code
from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.result import Artifact, ErrorInfo, JobResult, JobStatus
from orchestrator.settings import Settings
from orchestrator.spec import InlineFile, JobSpec, Limits, Mount, SessionSpec, parse_job_spec, parse_session_spec

__all__ = [
    "Artifact",
    "Engine",
    "ErrorInfo",
    "InlineFile",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "Limits",
    "Mount",
    "OrchestratorError",
    "RunOptions",
    "SessionSpec",
    "Settings",
    "SpecError",
    "parse_job_spec",
    "parse_session_spec",
    "result_exit_code",
]
