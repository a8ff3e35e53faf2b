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
    methods: Annotated[str, typer.Option(help="comma-separated CAM methods")] = (
        "cam,gradcam,gradcampp"
    ),
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """synth → prepare → train → explain → evaluate → OUT/report.html and OUT/summary.json."""
    from braincam.pipeline.demo import run_demo

    report = run_demo(
        out,
        config=config,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        progress=progress,
    )
    typer.echo(f"report: {report.resolve()}")
