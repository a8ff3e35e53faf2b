"""`braincam demo`: the whole pipeline on the embedded synthetic cohort, ending in a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from braincam.cli._app import app


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="output directory")] = Path("demo-out"),
    config: Annotated[
        Path | None, typer.Option(help="experiment YAML (default: the bundled fast CPU config)")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="comma-separated CAM methods (default: the config's)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """synth → prepare → train → explain → evaluate → OUT/report.html and OUT/summary.json."""
    from braincam.pipeline.demo import run_demo

    report = run_demo(
        out,
        config=config,
        methods=None if methods is None else [m.strip() for m in methods.split(",") if m.strip()],
        progress=progress,
    )
    typer.echo(f"report: {report.resolve()}")
