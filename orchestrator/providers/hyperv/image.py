"""Golden image helpers: render ``images/windows/unattend.xml.j2`` and read image manifests.

The operator's secrets (local administrator, job account) are template values
here and only here, at image-build time; per-job scripts never see the
administrator password. ``python -m orchestrator.providers.hyperv.image`` renders
both unattend files for ``images/windows/build-image.ps1``.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, SecretStr

IMAGES_DIR = Path(__file__).resolve().parents[3] / "images" / "windows"

Phase = Literal["build", "seal"]
SETUP_COMMAND = r"powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\Orchestrator\setup\setup-guest.ps1"


class ImageSecrets(BaseModel):
    """Read from the operator's secrets file (JSON); never from the job."""

    model_config = ConfigDict(extra="forbid")
    admin_password: SecretStr
    job_username: str = Field("orchjob", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,19}$")
    job_password: SecretStr


class ImageManifest(BaseModel):
    """``<version>\\manifest.json`` beside the sealed ``base.vhdx``."""

    model_config = ConfigDict(extra="ignore")
    version: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    created: str
    source: str
    components: dict[str, str] = Field(default_factory=dict)


def encode_password(password: str, kind: Literal["AdministratorPassword", "Password"]) -> str:
    """Windows Setup's encoding for ``<PlainText>false</PlainText>``: base64 of UTF-16LE(password + kind)."""
    return base64.b64encode((password + kind).encode("utf-16-le")).decode("ascii")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(IMAGES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_unattend(
    secrets: ImageSecrets,
    *,
    phase: Phase,
    locale: str = "en-US",
    timezone: str = "UTC",
    setup_command: str = SETUP_COMMAND,
) -> str:
    return (
        _environment()
        .get_template("unattend.xml.j2")
        .render(
            phase=phase,
            locale=locale,
            timezone=timezone,
            admin_password=encode_password(secrets.admin_password.get_secret_value(), "AdministratorPassword"),
            job_username=secrets.job_username,
            job_password=encode_password(secrets.job_password.get_secret_value(), "Password"),
            setup_command=setup_command,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the unattend files for images/windows/build-image.ps1")
    parser.add_argument("--secrets", type=Path, required=True, help="JSON: admin_password, job_username, job_password")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    secrets = ImageSecrets.model_validate(json.loads(args.secrets.read_text(encoding="utf-8")))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for phase in ("build", "seal"):
        (args.output_dir / f"unattend-{phase}.xml").write_text(render_unattend(secrets, phase=phase), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
