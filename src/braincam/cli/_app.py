"""The Typer application and its error handling; commands live in sibling modules.

Heavy libraries (torch, dipy, nilearn) are imported inside the command functions so that
``braincam --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from braincam.errors import BraincamError

app = typer.Typer(
    name="braincam",
    help="Train CNNs on brain MRI, explain them with class activation maps, measure the maps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

err_console = Console(stderr=True)


def main() -> None:
    """Console-script entry point: domain errors print a message and exit 2, no traceback."""
    try:
        app()
    except BraincamError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)


@app.callback()
def _root() -> None:
    """braincam: brain MRI → CNN → class activation maps → are the maps right?"""
