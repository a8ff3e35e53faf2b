"""`braincam explain`: heatmaps of a trained run for every slice of a split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from braincam.cli._app import app, parse_layer


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory (braincam train)")],
    methods: Annotated[
        str, typer.Option(help="comma-separated CAM methods (cam, gradcam, gradcampp, ...)")
    ] = "cam,gradcam,gradcampp",
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    target: Annotated[
        str, typer.Option(help="class explained per slice: predicted | true | CLASS_NAME")
    ] = "predicted",
    layer: Annotated[
        str | None,
        typer.Option(help="layer name, or several comma-separated (fused); default: the model's"),
    ] = None,
    fusion: Annotated[str, typer.Option(help="fusion of several layers: layercam | mean")] = (
        "layercam"
    ),
    batch_size: Annotated[int, typer.Option(min=1, help="slices per batch")] = 16,
    overlays: Annotated[int, typer.Option(min=0, help="slices per overlay montage")] = 12,
    nifti: Annotated[bool, typer.Option(help="write back-projected 3D NIfTI maps")] = True,
    store: Annotated[
        Path | None, typer.Option(help="slice store (default: the one the run was trained on)")
    ] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """Write heatmaps (aligned with the slice store), overlay PNGs and NIfTI maps per subject.

    Outputs go to RUN_DIR/heatmaps/SPLIT/: slices.tsv, METHOD.npy, overlays/, nifti/, meta.json.
    """
    from braincam.pipeline.explain import ExplainConfig, explain_run

    config = ExplainConfig(
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        split=split,
        target=target,
        layer=parse_layer(layer),
        fusion=fusion,
        batch_size=batch_size,
        overlays=overlays,
        nifti=nifti,
    )
    result = explain_run(run_dir, config, store_path=store, device=device)
    done = ", ".join(result.computed) or "nothing (all up to date)"
    typer.echo(f"computed {done}; heatmaps in {result.out_dir}")
