"""`braincam compare`: two experiments on the same cohort side by side (e.g. 2.5D vs 3D)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from braincam.cli._app import app


@app.command()
def compare(
    out_a: Annotated[Path, typer.Argument(help="experiment directory A (braincam run)")],
    out_b: Annotated[Path, typer.Argument(help="experiment directory B, same cohort")],
    html: Annotated[
        Path, typer.Option(help="the HTML page; the table also goes to .tsv and .json beside it")
    ] = Path("compare.html"),
    split: Annotated[str, typer.Option(help="the evaluated split to compare")] = "test",
    force: Annotated[
        bool, typer.Option(help="compare even when the cohorts differ (differences are noted)")
    ] = False,
) -> None:
    """Accuracy, localization (with baselines), time and memory of two experiments, with units.

    Refuses when A and B are not on the same cohort (subjects, labels, test split, synthesis
    settings) unless --force.
    """
    from braincam.pipeline.compare import compare_experiments

    result = compare_experiments(out_a, out_b, output=html, force=force, split=split)
    for kind, path in result.paths.items():
        typer.echo(f"{kind}: {path}")
    if result.cohort["differences"]:
        typer.echo("warning: not the same cohort: " + "; ".join(result.cohort["differences"]))
