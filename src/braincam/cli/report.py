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
        bool,
        typer.Option(
            help="check every shown verdict against summary.json, then render it in chromium"
        ),
    ] = False,
    max_viewers: Annotated[
        int,
        typer.Option(min=0, help="volume runs: interactive 3-D viewers of single-subject maps"),
    ] = 6,  # report.max_viewers (braincam.config.experiment.ReportConfig)
) -> None:
    """Write OUT_DIR/report.html from what the pipeline produced (missing parts are noted)."""
    from braincam.errors import BraincamError
    from braincam.report.build import build_report

    path = build_report(out_dir, max_viewers=max_viewers)
    size = path.stat().st_size / 2**20
    typer.echo(f"report: {path} ({size:.1f} MiB)")
    if check:
        import json

        from braincam.layout import WorkLayout
        from braincam.report.audit import audit_report

        summary_path = WorkLayout(out_dir).summary
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        from braincam.report.audit import remote_resources

        page = path.read_text()
        remote = remote_resources(page)
        if remote:
            raise BraincamError(f"the report fetches remote resources: {', '.join(remote[:5])}")
        problems = audit_report(page, summary)
        if problems:
            raise BraincamError("the report disagrees with summary.json: " + "; ".join(problems))
        typer.echo("every verdict and figure shown agrees with summary.json")
        from braincam.report.browser import check_report

        result = check_report(path, out_dir / "report.png")
        if not result.ok:
            raise BraincamError(f"the report does not render cleanly: {result}")
        typer.echo(f"rendered cleanly: {result.n_images} images, {result.n_viewers} 3D view(s)")
