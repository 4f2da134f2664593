"""One error tree for the whole product.

Every error carries a stable, machine-readable ``code`` (``spec.invalid_mount``,
``limit.memory``, ...). The CLI maps errors to exit code 125, the API to an HTTP
status; both print the same code. Third-party errors are translated into these
classes at the boundary where they are caught, never passed through.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OrchestratorError(Exception):
    """Root of every error this package raises on purpose."""

    code: ClassVar[str] = "orchestrator.error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]  # instance override of the class default
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class SpecError(OrchestratorError):
    """The job spec (or a request) is malformed or asks for something not allowed."""

    code = "spec.invalid"
    http_status = 422


class InvalidMountError(SpecError):
    code = "spec.invalid_mount"


class InvalidPathError(SpecError):
    """A path that escapes the workspace or a mount."""

    code = "spec.invalid_path"


class LimitTooHighError(SpecError):
    code = "spec.limit_exceeds_maximum"


class PayloadTooLargeError(SpecError):
    code = "spec.too_large"
    http_status = 413


class UnknownProviderError(SpecError):
    code = "provider.unknown"


class ProviderUnavailableError(OrchestratorError):
    """The provider exists but cannot run on this host (missing binary, no namespaces...)."""

    code = "provider.unavailable"
    http_status = 503


class SandboxError(OrchestratorError):
    """Creating, driving or destroying a sandbox failed for a reason outside the job."""

    code = "sandbox.error"


class SandboxCreateError(SandboxError):
    code = "sandbox.create_failed"


class TeardownError(SandboxError):
    code = "sandbox.teardown_failed"


class CommandNotFoundError(SandboxError):
    code = "job.command_not_found"
    http_status = 422


class CancelledError(OrchestratorError):
    code = "job.cancelled"
    http_status = 409


class NotFoundError(OrchestratorError):
    code = "not_found"
    http_status = 404


class CapacityError(OrchestratorError):
    code = "capacity.exhausted"
    http_status = 503


class AuthError(OrchestratorError):
    code = "auth.invalid_token"
    http_status = 401


class ConflictError(OrchestratorError):
    code = "conflict"
    http_status = 409


# --- Windows host transport -------------------------------------------------


class TransportError(OrchestratorError):
    """Talking to a Windows host failed."""

    code = "transport.error"
    http_status = 502


class HostUnreachableError(TransportError):
    code = "transport.unreachable"


class TransportAuthError(TransportError):
    code = "transport.auth_failed"


class TransportTimeoutError(TransportError):
    code = "transport.timeout"


class ScriptError(TransportError):
    """A PowerShell script ran and reported an error record."""

    code = "transport.script_error"
