"""PowerShell scripts as data: render ``templates/**/*.ps1[.j2]`` by name.

Jinja selects static structure only (``{% if classic %}`` ...): ``render_script``
accepts nothing but booleans, so no job value can ever reach script text. Job
values travel as parameters bound to the script's ``param()`` block (or as JSON
files the script reads).
"""

from __future__ import annotations

from orchestrator.errors import TransportError
from orchestrator.settings import WindowsHostSettings
from orchestrator.templates import environment, read_text, templates_dir
from orchestrator.windows.transport import PowerShellTransport


class PSScript(str):
    """Script text that remembers which template it came from (for logs and replay)."""

    name: str

    def __new__(cls, text: str, name: str) -> PSScript:
        obj = super().__new__(cls, text)
        obj.name = name
        return obj


def script_name(script: str) -> str:
    """The template name of a rendered script, or ``"<inline>"`` for plain strings."""
    return getattr(script, "name", "<inline>")


def render_script(name: str, **structure: bool) -> PSScript:
    """Render ``templates/<name>``; ``.j2`` files go through Jinja, plain ``.ps1`` files are read as-is."""
    for key, value in structure.items():
        if not isinstance(value, bool):
            raise TypeError(f"script structure flag {key!r} must be a bool; pass job values as parameters")
    if name.endswith(".j2"):
        text = environment().get_template(name).render(**structure)
    else:
        if structure:
            raise TypeError(f"{name} is not a template; it takes no structure flags")
        text = read_text(name)
    return PSScript(text, name.removesuffix(".j2"))


def list_scripts() -> list[str]:
    """Every PowerShell template name under ``templates/`` (for linting all emitted scripts)."""
    root = templates_dir()
    found = [*root.rglob("*.ps1"), *root.rglob("*.ps1.j2")]
    return sorted(p.relative_to(root).as_posix() for p in found)


def transport_from_settings(settings: WindowsHostSettings) -> PowerShellTransport:
    """The transport ``settings.transport`` names. Imports lazily: pypsrp only when WinRM is used."""
    if settings.transport == "local":
        from orchestrator.windows.local import LocalTransport

        return LocalTransport(settings)
    if settings.transport == "winrm":
        from orchestrator.windows.winrm import WinRMTransport

        return WinRMTransport(settings)
    raise TransportError(f"unknown Windows transport {settings.transport!r}", code="transport.config")
