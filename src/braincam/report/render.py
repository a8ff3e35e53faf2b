"""Render report sections into one self-contained HTML file (template is a package asset)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from braincam.io import write_text_atomic
from braincam.report.blocks import Section


def _environment() -> Environment:
    # Autoescaping is on for the template: subject IDs and labels come from user files.
    return Environment(
        loader=PackageLoader("braincam", "report/templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )


def render_html(sections: Sequence[Section], *, title: str, subtitle: str = "") -> str:
    """Render sections to an HTML string."""
    template = _environment().get_template("report.html.j2")
    return template.render(title=title, subtitle=subtitle, sections=list(sections))


def write_report(
    path: str | Path, sections: Sequence[Section], *, title: str, subtitle: str = ""
) -> Path:
    """Render and write the report atomically; returns its path."""
    return write_text_atomic(path, render_html(sections, title=title, subtitle=subtitle))
