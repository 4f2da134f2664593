"""``WinRMTransport``: PowerShell Remoting (PSRP over WSMan) to a Windows host, with pypsrp.

pypsrp carries everything here: runspace pools and pipelines with parameters
bound by name (``PowerShell.add_script(...).add_parameters(...)``), structured
output/error/warning/verbose/information streams, ``stop()`` for a wall
timeout, and file copy/fetch (``Client.copy``/``Client.fetch``). pywinrm only
speaks WinRS (a cmd shell returning text), which this transport has no use for.

Defaults are the safe ones: HTTPS (port 5986), certificate validation on,
``negotiate`` auth. Credentials come from ``WindowsHostSettings.username`` /
``password`` or from its ``secrets_file`` (a JSON object with ``username`` and
``password``, read at connect time). They are never logged or repr'd.

pypsrp has no wall-clock job timeout (``operation_timeout`` bounds one WSMan
receive): ``run`` polls with ``begin_invoke``/``poll_invoke`` and calls
``ps.stop()`` itself when ``timeout_s`` expires. Every pypsrp, requests and
spnego exception is translated into ``orchestrator.errors`` by
``map_psrp_errors``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import spnego.exceptions
from pydantic import SecretStr
from pypsrp import exceptions as psrp_exc
from pypsrp.client import Client
from pypsrp.complex_objects import GenericComplexObject, PSInvocationState
from pypsrp.powershell import PowerShell, RunspacePool

from orchestrator.errors import (
    HostUnreachableError,
    OrchestratorError,
    PayloadTooLargeError,
    TransportAuthError,
    TransportError,
    TransportTimeoutError,
)
from orchestrator.settings import WindowsHostSettings
from orchestrator.windows.local import script_failed
from orchestrator.windows.scripts import PSScript, render_script, script_name
from orchestrator.windows.transport import PSErrorRecord, PSResult

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
#: WSMan fault "the operation timed out" (pypsrp swallows it while polling; see poll_invoke).
WSMAN_OPERATION_TIMEOUT = 2150858793
#: Most common HTTP statuses worth a specific error.
_AUTH_STATUSES = (401, 403)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: SecretStr

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='**********')"


def load_credentials(settings: WindowsHostSettings) -> Credentials | None:
    """Username/password from the settings, else from ``secrets_file``; None for kerberos tickets."""
    if settings.username and settings.password is not None:
        return Credentials(settings.username, settings.password)
    if settings.secrets_file is None:
        return None
    try:
        data = json.loads(Path(settings.secrets_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TransportAuthError(
            f"cannot read the WinRM secrets file {settings.secrets_file}: {exc.strerror}",
            code="transport.secrets_unreadable",
        ) from None
    except json.JSONDecodeError:
        raise TransportAuthError(
            f"the WinRM secrets file {settings.secrets_file} is not valid JSON",
            code="transport.secrets_unreadable",
        ) from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("username"), str)
        or not isinstance(data.get("password"), str)
    ):
        raise TransportAuthError(
            f"the WinRM secrets file {settings.secrets_file} must hold a JSON object with "
            "string fields 'username' and 'password'",
            code="transport.secrets_unreadable",
        )
    return Credentials(data["username"], SecretStr(data["password"]))


def _mapping() -> list[tuple[type[BaseException], type[TransportError], str]]:
    """(vendor class, our class, code). Ordered most specific first; see ``map_psrp_errors``."""
    return [
        (psrp_exc.AuthenticationError, TransportAuthError, TransportAuthError.code),
        (spnego.exceptions.SpnegoError, TransportAuthError, TransportAuthError.code),
        (requests.exceptions.SSLError, HostUnreachableError, "transport.tls_failed"),
        (requests.exceptions.ConnectTimeout, HostUnreachableError, HostUnreachableError.code),
        (requests.exceptions.ReadTimeout, TransportTimeoutError, TransportTimeoutError.code),
        (requests.exceptions.ConnectionError, HostUnreachableError, HostUnreachableError.code),
        (requests.exceptions.RequestException, TransportError, TransportError.code),
        (psrp_exc.WSManFaultError, TransportError, "transport.wsman_fault"),
        (psrp_exc.WinRMTransportError, TransportError, "transport.http_error"),
        (psrp_exc.InvalidRunspacePoolStateError, TransportError, "transport.protocol_error"),
        (psrp_exc.InvalidPipelineStateError, TransportError, "transport.protocol_error"),
        (psrp_exc.InvalidPSRPOperation, TransportError, "transport.protocol_error"),
        (psrp_exc.FragmentError, TransportError, "transport.protocol_error"),
        (psrp_exc.SerializationError, TransportError, "transport.protocol_error"),
        (psrp_exc.WinRMError, TransportError, TransportError.code),
    ]


def translate(exc: BaseException, host: str | None = None) -> OrchestratorError | None:
    """The project error for a pypsrp/requests/spnego exception, or None if it is not one of theirs."""
    details: dict[str, Any] = {"host": host, "cause": type(exc).__name__}
    if isinstance(exc, psrp_exc.WSManFaultError):
        details.update(wsman_code=exc.code, reason=exc.reason)
        if exc.code == WSMAN_OPERATION_TIMEOUT:
            return TransportTimeoutError(f"WSMan operation timed out on {host}", details=details)
    if isinstance(exc, psrp_exc.WinRMTransportError):
        details["http_status"] = exc.code
        if exc.code in _AUTH_STATUSES:
            return TransportAuthError(f"{host} refused the credentials (HTTP {exc.code})", details=details)
    for vendor, ours, code in _mapping():
        if isinstance(exc, vendor):
            return ours(f"{_describe(ours)} {host}: {_safe_message(exc)}", code=code, details=details)
    return None


def _describe(cls: type[TransportError]) -> str:
    if cls is TransportAuthError:
        return "authentication failed for"
    if cls is HostUnreachableError:
        return "cannot reach"
    if cls is TransportTimeoutError:
        return "timed out talking to"
    return "WinRM error from"


def _safe_message(exc: BaseException) -> str:
    # pypsrp's AuthenticationError names the user; nothing it raises carries the password.
    try:
        return str(exc)[:500]
    except Exception:  # some pypsrp __str__ implementations fail on unexpected args
        return type(exc).__name__


@contextlib.contextmanager
def map_psrp_errors(host: str | None) -> Iterator[None]:
    """Translate vendor exceptions raised inside the block (the only place they are caught)."""
    try:
        yield
    except OrchestratorError:
        raise
    except Exception as exc:
        mapped = translate(exc, host)
        if mapped is None:
            raise
        raise mapped from exc


def to_python(value: Any) -> Any:
    """pypsrp's deserialised objects as plain JSON-like Python values."""
    if isinstance(value, GenericComplexObject):
        if value.adapted_properties or value.extended_properties:
            merged = {**value.adapted_properties, **value.extended_properties}
            return {str(k): to_python(v) for k, v in merged.items()}
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def error_record(record: Any) -> PSErrorRecord:
    exception = getattr(record, "exception", None)
    message = getattr(exception, "adapted_properties", {}).get("Message") if exception is not None else None
    return PSErrorRecord(
        message=str(message or record),
        category=str(getattr(record, "message", "") or ""),
        fully_qualified_error_id=str(getattr(record, "fq_error", "") or ""),
        target=str(getattr(record, "target_name", "") or ""),
        script_stack_trace=str(getattr(record, "script_stacktrace", "") or ""),
    )


class WinRMTransport:
    def __init__(self, settings: WindowsHostSettings, *, poll_interval_s: int = 5):
        if not settings.host:
            raise TransportError("windows.host must be set for the winrm transport", code="transport.config")
        self._settings = settings
        self._poll_interval_s = poll_interval_s
        self._client: Client | None = None

    def __repr__(self) -> str:
        s = self._settings
        return f"WinRMTransport(host={s.host!r}, auth={s.auth!r}, ssl={s.ssl!r})"

    @property
    def host(self) -> str:
        return self._settings.host or ""

    def client(self) -> Client:
        if self._client is None:
            s = self._settings
            creds = load_credentials(s)
            kwargs: dict[str, Any] = {
                "ssl": s.ssl,
                "auth": s.auth,
                "cert_validation": s.cert_validation,
                "connection_timeout": s.connection_timeout,
                "operation_timeout": int(s.operation_timeout),
                "read_timeout": s.read_timeout,
            }
            if s.port is not None:
                kwargs["port"] = s.port
            if creds is not None:
                kwargs["username"] = creds.username
                kwargs["password"] = creds.password.get_secret_value()
            log.info("connecting to %s over WinRM (auth=%s, ssl=%s)", s.host, s.auth, s.ssl)
            try:
                with map_psrp_errors(s.host):
                    self._client = Client(self.host, **kwargs)
            except ValueError as exc:  # pypsrp refuses unsafe or unknown combinations (basic over HTTP...)
                raise TransportError(f"invalid WinRM settings: {exc}", code="transport.config") from None
        return self._client

    def run(
        self, script: str, parameters: Mapping[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> PSResult:
        name = script_name(script)
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        client = self.client()
        started = time.monotonic()
        log.info("running %s on %s", name, self.host)
        with map_psrp_errors(self.host), RunspacePool(client.wsman) as pool:
            ps = PowerShell(pool)
            ps.add_script(str(script))
            if parameters:
                ps.add_parameters(dict(parameters))
            ps.begin_invoke()
            while ps.state == PSInvocationState.RUNNING:
                remaining = timeout - (time.monotonic() - started)
                if remaining <= 0:
                    with contextlib.suppress(Exception):
                        ps.stop()
                    raise TransportTimeoutError(
                        f"{name} did not finish within {timeout:g}s on {self.host}; the pipeline was stopped",
                        details={"script": name, "timeout_s": timeout, "host": self.host},
                    )
                ps.poll_invoke(timeout=max(1, min(self._poll_interval_s, int(remaining) or 1)))
            result = PSResult(
                output=[to_python(o) for o in ps.output],
                errors=[error_record(e) for e in ps.streams.error],
                warnings=[str(w) for w in ps.streams.warning],
                verbose=[str(v) for v in ps.streams.verbose],
                information=[str(i) for i in ps.streams.information],
                duration_s=time.monotonic() - started,
            )
            if ps.state == PSInvocationState.FAILED:
                raise script_failed(name, result)
            return result

    def copy_to(self, local: Path, remote: str) -> None:
        with map_psrp_errors(self.host):
            self.client().copy(str(local), remote)

    def copy_from(self, remote: str, local: Path, *, max_bytes: int) -> None:
        # fetch() reads the whole file into one buffer, so check its size on the host first.
        size_script: PSScript = render_script("transport/file-size.ps1")
        sizes = self.run(size_script, {"Path": remote}, timeout_s=self._settings.read_timeout)
        size = int(sizes.output[-1]) if sizes.output else -1
        if size < 0:
            raise TransportError(f"{remote} does not exist on {self.host}", code="transport.not_found")
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"{remote} is {size} bytes, more than the {max_bytes} allowed",
                details={"remote": remote, "size": size, "max_bytes": max_bytes},
            )
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=".fetch-")
        os.close(fd)
        try:
            with map_psrp_errors(self.host):
                self.client().fetch(remote, tmp)
            if os.path.getsize(tmp) > max_bytes:  # the file grew between the two calls
                raise PayloadTooLargeError(f"{remote} grew past {max_bytes} bytes while fetching")
            os.replace(tmp, local)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
