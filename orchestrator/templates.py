"""Jinja templates shipped with the package (``templates/`` in the source tree).

Every template is rendered with ``StrictUndefined``: a missing value is an
error, never an empty string. XML templates are autoescaped by the engine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2


def templates_dir() -> Path:
    packaged = Path(__file__).parent / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("wsb", "xml", "wsb.j2", "xml.j2"), default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **values: object) -> str:
    return environment().get_template(name).render(**values)


def read_text(name: str) -> str:
    """A template file as-is (for scripts that take no template values)."""
    return (templates_dir() / name).read_text(encoding="utf-8")
