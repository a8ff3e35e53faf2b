"""Command-line interface: a thin layer over the Python API (one module per command group).

Each module below registers its commands on ``app`` when imported; add new ones to this list.
"""

from braincam.cli import prepare  # noqa: F401
from braincam.cli import train  # noqa: F401
from braincam.cli import version  # noqa: F401
from braincam.cli._app import app, main

__all__ = ["app", "main"]
