"""``LocalTransport``: PowerShell as a subprocess, for a control plane on the Windows host itself.

Each ``run`` writes the script (UTF-8 with BOM, which Windows PowerShell 5.1
needs to read non-ASCII text correctly) and a JSON file of parameters to a
private temporary directory, then starts ``powershell.exe``/``pwsh`` on the
fixed ``templates/transport/bootstrap.ps1``. The bootstrap binds the JSON
properties to the script's ``param()`` block and writes every stream back as
JSON. The wall timeout kills the whole process tree.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import (
    PayloadTooLargeError,
    ScriptError,
    TransportError,
    TransportTimeoutError,
)
from orchestrator.settings import WindowsHostSettings
from orchestrator.templates import read_text
from orchestrator.windows.scripts import script_name
from orchestrator.windows.transport import PSErrorRecord, PSResult

log = logging.getLogger(__name__)

BOOTSTRAP = "transport/bootstrap.ps1"
DEFAULT_TIMEOUT_S = 600.0
MAX_RESULT_BYTES = 64 * 1024 * 1024
_STDERR_KEEP = 4096


class LocalTransport:
    def __init__(self, settings: WindowsHostSettings | None = None, *, executable: str | None = None):
        self._settings = settings or WindowsHostSettings.model_validate({})
        self.executable = executable or self._settings.powershell

    def __repr__(self) -> str:
        return f"LocalTransport(executable={self.executable!r})"

    def command_line(self, bootstrap: Path, script: Path, params: Path, result: Path) -> list[str]:
        return [
            self.executable,
            "-NoLogo",
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-File",
            str(bootstrap),
            "-ScriptPath",
            str(script),
            "-ParameterPath",
            str(params),
            "-ResultPath",
            str(result),
        ]

    def run(
        self, script: str, parameters: Mapping[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> PSResult:
        name = script_name(script)
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        try:
            params_text = json.dumps(dict(parameters or {}), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TransportError(f"parameters for {name} are not JSON-serialisable: {exc}") from exc
        with tempfile.TemporaryDirectory(prefix="orch-ps-") as tmp:
            root = Path(tmp)
            paths = {k: root / f for k, f in (("b", "bootstrap.ps1"), ("s", "script.ps1"), ("p", "params.json"))}
            paths["b"].write_text(read_text(BOOTSTRAP), encoding="utf-8-sig")
            paths["s"].write_text(str(script), encoding="utf-8-sig")
            paths["p"].write_text(params_text, encoding="utf-8")
            result_path = root / "result.json"
            argv = self.command_line(paths["b"], paths["s"], paths["p"], result_path)
            log.info("running %s locally with %s", name, self.executable)
            started = time.monotonic()
            stderr = self._spawn(argv, timeout, name)
            duration = time.monotonic() - started
            return _parse_result(result_path, stderr, name, duration)

    def _spawn(self, argv: list[str], timeout: float, name: str) -> bytes:
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs
            )
        except FileNotFoundError as exc:
            raise TransportError(
                f"PowerShell executable {self.executable!r} was not found",
                code="transport.powershell_not_found",
                details={"executable": self.executable},
            ) from exc
        except OSError as exc:
            raise TransportError(f"cannot start {self.executable!r}: {exc.strerror}") from exc
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise TransportTimeoutError(
                f"{name} did not finish within {timeout:g}s; its process tree was killed",
                details={"script": name, "timeout_s": timeout},
            ) from None
        except BaseException:
            kill_tree(proc)
            raise
        if proc.returncode != 0:
            raise TransportError(
                f"{self.executable} exited with code {proc.returncode} running {name}",
                details={"script": name, "exit_code": proc.returncode, "stderr": _tail(stderr)},
            )
        return stderr or b""

    def copy_to(self, local: Path, remote: str) -> None:
        try:
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, remote)
        except OSError as exc:
            raise TransportError(f"cannot copy {local} to {remote}: {exc.strerror}") from exc

    def copy_from(self, remote: str, local: Path, *, max_bytes: int) -> None:
        try:
            with open(remote, "rb") as src:
                data = src.read(max_bytes + 1)
        except FileNotFoundError as exc:
            raise ScriptError(f"cannot find path {remote!r}", details={"remote": remote}) from exc
        except OSError as exc:
            raise TransportError(f"cannot read {remote}: {exc.strerror}") from exc
        if len(data) > max_bytes:
            raise PayloadTooLargeError(
                f"{remote} is larger than the {max_bytes} bytes allowed",
                details={"remote": remote, "max_bytes": max_bytes},
            )
        local.write_bytes(data)

    def close(self) -> None:
        return None


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` and everything it started, then reap it."""
    if sys.platform == "win32":
        subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(proc.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(data: bytes | None) -> str:
    return (data or b"")[-_STDERR_KEEP:].decode("utf-8", errors="replace")


def _error_record(raw: Any) -> PSErrorRecord:
    if not isinstance(raw, dict):
        return PSErrorRecord(message=str(raw))
    return PSErrorRecord(
        message=str(raw.get("message") or ""),
        category=str(raw.get("category") or ""),
        fully_qualified_error_id=str(raw.get("fully_qualified_error_id") or ""),
        target=str(raw.get("target") or ""),
        script_stack_trace=str(raw.get("script_stack_trace") or ""),
    )


def _strings(raw: Any) -> list[str]:
    return [str(x) for x in raw] if isinstance(raw, list) else []


def _parse_result(path: Path, stderr: bytes, name: str, duration: float) -> PSResult:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise TransportError(
            f"PowerShell wrote no result for {name}", details={"script": name, "stderr": _tail(stderr)}
        ) from None
    if size > MAX_RESULT_BYTES:
        raise TransportError(f"the result of {name} is {size} bytes, over {MAX_RESULT_BYTES}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransportError(f"the result of {name} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise TransportError(f"the result of {name} is not a JSON object")
    output = doc.get("output")
    errors_raw = doc.get("errors")
    result = PSResult(
        output=output if isinstance(output, list) else ([] if output is None else [output]),
        errors=[_error_record(e) for e in (errors_raw if isinstance(errors_raw, list) else [])],
        warnings=_strings(doc.get("warnings")),
        verbose=_strings(doc.get("verbose")),
        information=_strings(doc.get("information")),
        duration_s=duration,
    )
    if doc.get("failed") is True:
        raise script_failed(name, result)
    return result


def script_failed(name: str, result: PSResult) -> ScriptError:
    """The ScriptError for a script that ended with a terminating error (the last record)."""
    record = result.errors[-1] if result.errors else PSErrorRecord(message="the script failed")
    return ScriptError(
        f"{name} failed: {record.message}",
        details={
            "script": name,
            "error_record": {
                "message": record.message,
                "category": record.category,
                "fully_qualified_error_id": record.fully_qualified_error_id,
                "target": record.target,
                "script_stack_trace": record.script_stack_trace,
            },
            "output": result.output[:20],
        },
    )
