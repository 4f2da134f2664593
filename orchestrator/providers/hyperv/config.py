"""Hyper-V provider settings, read from ``ORCH_HYPERV_*`` environment variables.

The generic "how do I reach the Windows host" settings live in
``Settings.windows`` (shared with Windows Sandbox); everything specific to
disposable VMs lives here. Host paths are Windows paths on the Hyper-V host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.errors import ProviderUnavailableError

IMAGE_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class HyperVSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCH_HYPERV_", extra="ignore")

    # --- where things live on the Hyper-V host -----------------------------------
    images_dir: str = Field(
        r"C:\ProgramData\Orchestrator\images",
        description=r"Holds <version>\base.vhdx and <version>\manifest.json (sealed, read-only).",
    )
    vm_root: str = Field(
        r"C:\ProgramData\Orchestrator\vms", description="One folder per job VM: config, child disk, ISO."
    )
    default_image: str = Field("win2022-v1", pattern=IMAGE_VERSION_PATTERN)
    vm_prefix: str = Field("orch-", pattern=r"^[a-z][a-z0-9-]{1,15}$", description="Marks the VMs we own.")

    # --- guest ----------------------------------------------------------------------
    guest_username: str = Field("orchjob", description="Low-privilege account used over PowerShell Direct.")
    guest_password: SecretStr | None = None
    guest_secrets_file: Path | None = Field(None, description="JSON {username, password}, read at use.")
    guest_root: str = Field(r"C:\Orchestrator", description="Guest folder holding runner.ps1 (from the image).")
    guest_workspace: str = Field(r"C:\Jobs\workspace", description="The job's writable workspace in the guest.")

    # --- per-VM shape and caps ------------------------------------------------------
    min_memory_mb: int = Field(2048, ge=512, description="Windows will not boot in less.")
    max_iops: int = Field(0, ge=0, description="Set-VMHardDiskDrive -MaximumIOPS; 0 leaves it uncapped.")
    secure_boot_template: str = "MicrosoftWindows"
    iso_max_bytes: int = Field(2 * 1024**3, ge=1, description="Inputs above this need a data VHDX.")
    artifact_max_files: int = Field(1000, ge=1)

    # --- timings ---------------------------------------------------------------------
    ready_timeout_s: float = Field(300.0, gt=0, description="Boot until PowerShell Direct answers.")
    ready_initial_backoff_s: float = Field(1.0, gt=0)
    ready_max_backoff_s: float = Field(15.0, gt=0)
    step_timeout_s: float = Field(300.0, gt=0, description="Any single host-side step.")
    exec_grace_s: float = Field(30.0, ge=0, description="Host-side margin over the job timeout.")
    teardown_attempts: int = Field(3, ge=1, le=10)

    # --- warm pool and capacity --------------------------------------------------------
    pool_size: int = Field(0, ge=0, description="Booted, never-used VMs kept per image version.")
    pool_memory_mb: int = Field(2048, ge=512, description="Memory of pooled VMs (jobs asking more boot cold).")
    pool_cpus: int = Field(1, ge=1)
    clone_mode: Literal["boot", "saved_state"] = Field(
        "boot", description="boot: differencing child + cold boot; saved_state: import an exported saved VM."
    )
    saved_state_dir: str = Field(
        r"C:\ProgramData\Orchestrator\saved",
        description=r"<version>\ holds an Export-VM of a booted, saved VM (clone_mode=saved_state).",
    )
    max_vms: int = Field(8, ge=1, description="VMs this orchestrator may run at once (jobs + pool).")
    memory_budget_mb: int = Field(32768, ge=512, description="Total startup memory of those VMs.")
    gc_interval_s: float = Field(300.0, gt=0)

    @field_validator("default_image")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def guest_credentials(self) -> tuple[str, str]:
        """The job account's name and password; the secrets file wins over the environment."""
        if self.guest_secrets_file is not None:
            try:
                data = json.loads(self.guest_secrets_file.read_text(encoding="utf-8"))
                return str(data["username"]), str(data["password"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ProviderUnavailableError(
                    f"cannot read the guest secrets file {self.guest_secrets_file}: {exc}",
                    details={"fix": 'write JSON {"username": ..., "password": ...} readable by the service'},
                ) from None
        if self.guest_password is None:
            raise ProviderUnavailableError(
                "no password for the guest job account",
                details={"fix": "set ORCH_HYPERV_GUEST_PASSWORD or ORCH_HYPERV_GUEST_SECRETS_FILE"},
            )
        return self.guest_username, self.guest_password.get_secret_value()
