"""Command-line interface: a thin layer over the Python API (one module per command group).

Each module in ``COMMAND_MODULES`` registers its commands on ``app`` when imported; add new
command modules to that tuple.
"""

from importlib import import_module

from braincam.cli._app import app, main

COMMAND_MODULES = (
    "synth",
    "prepare",
    "train",
    "explain",
    "evaluate_cams",
    "report",
    "compare",
    "demo",
    "version",
)

for _name in COMMAND_MODULES:
    import_module(f"braincam.cli.{_name}")

__all__ = ["app", "main"]
