"""All settings in one typed object.

Read from environment variables with the ``ORCH_`` prefix (nested fields with
``__``, e.g. ``ORCH_MAX_LIMITS__MEMORY_MB=4096``) and from an optional JSON or
TOML file named by ``ORCH_CONFIG``. Nothing reads settings at import time:
build a ``Settings`` and pass it down.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orchestrator.errors import LimitTooHighError
from orchestrator.spec import Limits


def _default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/orchestrator")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orchestrator"


def _default_runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/orchestrator")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "orchestrator"
    return Path("/tmp") / f"orchestrator-{os.geteuid()}"


class MaxLimits(BaseModel):
    """The operator's ceilings; a spec asking for more is refused (``spec.limit_exceeds_maximum``)."""

    timeout_s: float = 3600.0
    cpu_s: float = 3600.0
    cpus: float = 8.0
    memory_mb: int = 8192
    pids: int = 4096
    output_bytes: int = 64 * 1024 * 1024
    disk_mb: int = 8192

    def check(self, limits: Limits) -> None:
        for name, ceiling in self.model_dump().items():
            value = getattr(limits, name)
            if value > ceiling:
                raise LimitTooHighError(
                    f"limits.{name}={value} exceeds this operator's maximum of {ceiling}",
                    details={"limit": name, "requested": value, "maximum": ceiling},
                )


class LinuxSettings(BaseModel):
    bwrap_path: Path | None = Field(None, description="bwrap binary; default: system bwrap, else the bundled one.")
    sandbox_uid_base: int = Field(
        1_900_000_000, description="As root, each sandbox runs as a host uid from this range, never as root."
    )
    sandbox_uid_count: int = 4096
    cgroup_parent: str = "orchestrator"
    use_cgroups: bool = True
    extra_ro_paths: list[str] = Field(default_factory=list, description="More host paths visible read-only.")
    rootfs: Path | None = Field(
        None, description="A root file system (images/linux/) whose /usr replaces the host's in sandboxes."
    )


class WindowsHostSettings(BaseModel):
    """How to reach the Windows host that runs Hyper-V VMs or Windows Sandbox."""

    transport: Literal["local", "winrm"] = "local"
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: SecretStr | None = None
    secrets_file: Path | None = Field(None, description="JSON file with username/password, read at use.")
    auth: Literal["negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate"] = "negotiate"
    ssl: bool = True
    cert_validation: bool | str = True
    connection_timeout: float = 30.0
    operation_timeout: float = 20.0
    read_timeout: float = 30.0
    powershell: str = "powershell.exe"
    staging_dir: str = r"C:\ProgramData\Orchestrator"
    wsb_protected_client: bool = Field(True, description="Run Windows Sandbox in an AppContainer.")
    wsb_boot_timeout_s: float = Field(180.0, gt=0, description="How long a Windows Sandbox may take to boot.")


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite under data_dir.")
    workers_per_provider: int = Field(2, ge=1, description="Concurrent job sandboxes per provider.")
    queue_limit: int = Field(100, ge=0, description="Jobs waiting per provider; beyond it, 503 + Retry-After.")
    max_sessions_per_provider: int = Field(16, ge=0, description="Live session sandboxes per provider.")
    max_request_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 64 * 1024 * 1024
    allow_unauthenticated_loopback: bool = Field(
        True,
        description="With no token at all, accept unauthenticated calls from loopback peers (as tenant 'local').",
    )
    session_sweep_interval_s: float = 1.0
    shutdown_grace_s: float = Field(10.0, ge=0, description="On shutdown, how long running jobs may finish.")
    max_wait_s: float = Field(3600.0, gt=0, description="Longest a POST /v1/jobs?wait=... call blocks.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCH_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    runtime_dir: Path = Field(default_factory=_default_runtime_dir)
    default_provider: str = "linux"
    max_limits: MaxLimits = Field(default_factory=MaxLimits)
    linux: LinuxSettings = Field(default_factory=LinuxSettings)
    windows: WindowsHostSettings = Field(default_factory=WindowsHostSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    audit_log: Path | None = Field(None, description="JSON-lines audit log; default data_dir/audit.jsonl.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls), file_secret_settings)

    @property
    def audit_path(self) -> Path:
        return self.audit_log or self.data_dir / "audit.jsonl"


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by ``ORCH_CONFIG`` (JSON, or TOML by extension)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("ORCH_CONFIG")
        if not path:
            return {}
        text = Path(path).read_text(encoding="utf-8")
        if path.endswith(".toml"):
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data: dict[str, Any] = tomllib.loads(text)
            return data
        loaded: dict[str, Any] = json.loads(text)
        return loaded
