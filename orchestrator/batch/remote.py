"""``--server URL``: run each sample as a job on a control plane.

``POST {server}/v1/jobs?wait=true`` with the job spec returns ``201`` and the
job with its result. ``503`` means the queue is full: wait ``Retry-After`` and
try again, a bounded number of times, then report ``remote.queue_full`` (an
infra error). Bad credentials stop the whole batch (``FatalBatchError``).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from orchestrator.batch.runner import FatalBatchError
from orchestrator.cancel import CancelToken
from orchestrator.errors import OrchestratorError
from orchestrator.result import JobResult
from orchestrator.spec import JobSpec

log = logging.getLogger(__name__)


class RemoteError(OrchestratorError):
    code = "remote.error"
    http_status = 502


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
        error = body.get("error") or {}
        return str(error.get("code") or f"remote.http_{response.status_code}"), str(error.get("message") or "")
    except (ValueError, AttributeError):
        return f"remote.http_{response.status_code}", response.text[:200]


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class RemoteExecutor:
    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        queue_retries: int = 30,
        max_retry_after_s: float = 30.0,
        poll_interval_s: float = 1.0,
    ):
        self.base = server.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = client or httpx.Client(timeout=httpx.Timeout(30.0, read=None))
        self.headers = headers
        self.queue_retries = queue_retries
        self.max_retry_after_s = max_retry_after_s
        self.poll_interval_s = poll_interval_s

    def close(self) -> None:
        self.client.close()

    def run(self, spec: JobSpec, cancel: CancelToken) -> JobResult:
        body = spec.model_dump(mode="json", exclude_none=True)
        read_timeout = spec.limits.timeout_s + 60.0
        for attempt in range(self.queue_retries + 1):
            response = self._send("POST", "/v1/jobs", params={"wait": "true"}, json=body, read_timeout=read_timeout)
            if response.status_code == 503 and attempt < self.queue_retries:
                delay = min(_retry_after(response, 1.0), self.max_retry_after_s)
                log.info("control plane queue full; retrying in %.1fs", delay)
                if cancel.wait(delay):
                    raise OrchestratorError("interrupted while waiting for the queue", code="job.cancelled")
                continue
            if response.status_code == 503:
                code, message = _error_of(response)
                raise RemoteError(f"queue still full after {attempt + 1} tries: {message}", code="remote.queue_full")
            return self._job_result(response, cancel, read_timeout)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, *, read_timeout: float, **kw: Any) -> httpx.Response:
        try:
            timeout = httpx.Timeout(30.0, read=read_timeout)
            return self.client.request(method, self.base + path, headers=self.headers, timeout=timeout, **kw)
        except httpx.TimeoutException as exc:
            raise RemoteError(f"control plane timed out: {exc}", code="remote.timeout") from exc
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the control plane: {exc}", code="remote.unreachable") from exc

    def _job_result(self, response: httpx.Response, cancel: CancelToken, read_timeout: float) -> JobResult:
        if response.status_code in (401, 403):
            code, message = _error_of(response)
            raise FatalBatchError(f"the control plane refused the credentials [{code}]: {message}")
        if response.status_code not in (200, 201):
            code, message = _error_of(response)
            code = code if code.startswith("remote.") else f"remote.{code}"  # never the code's fault
            raise RemoteError(f"control plane answered {response.status_code}: {message}", code=code)
        job = self._json(response)
        while job.get("result") is None:  # the server's wait ended before the job did
            job_id = job.get("id")
            if not job_id or cancel.wait(self.poll_interval_s):
                raise RemoteError("the control plane returned no result", code="remote.no_result")
            poll = self._send("GET", f"/v1/jobs/{job_id}", params={"wait": "true"}, read_timeout=read_timeout)
            if poll.status_code != 200:
                code, message = _error_of(poll)
                raise RemoteError(f"polling job {job_id}: {poll.status_code} {message}", code="remote.poll_failed")
            job = self._json(poll)
        try:
            return JobResult.model_validate(job["result"])
        except ValueError as exc:
            raise RemoteError(f"malformed job result: {exc}", code="remote.bad_response") from None

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise RemoteError("the control plane did not answer JSON", code="remote.bad_response") from None
        if not isinstance(data, dict):
            raise RemoteError("the control plane did not answer an object", code="remote.bad_response")
        return data
