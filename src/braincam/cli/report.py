"""`braincam report`: the experiment's self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from braincam.cli._app import app


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="experiment directory (braincam run / demo)")],
    check: Annotated[
        bool, typer.Option(help="open it in headless chromium and check that it renders")
    ] = False,
) -> None:
    """Write OUT_DIR/report.html from what the pipeline produced (missing parts are noted)."""
    from braincam.errors import BraincamError
    from braincam.report.build import build_report

    path = build_report(out_dir)
    typer.echo(f"report: {path}")
    if check:
        from braincam.report.browser import check_report

        result = check_report(path, out_dir / "report.png")
        if not result.ok:
            raise BraincamError(f"the report does not render cleanly: {result}")
        typer.echo(f"rendered cleanly: {result.n_images} images, {result.n_viewers} 3D view(s)")
