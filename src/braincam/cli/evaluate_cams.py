"""`braincam evaluate-cams`: measure whether a run's heatmaps are right."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from braincam.cli._app import app, parse_layer


@app.command("evaluate-cams")
def evaluate_cams(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory (braincam train)")],
    methods: Annotated[str, typer.Option(help="comma-separated CAM methods")] = (
        "cam,gradcam,gradcampp"
    ),
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    threshold: Annotated[float, typer.Option(help="box threshold, fraction of max")] = 0.2,
    noise_std: Annotated[
        float, typer.Option(help="noise on imputed voxels, perturbation check (z-score units)")
    ] = 0.05,
    strengths: Annotated[
        str, typer.Option(help="perturbation dose-response strengths, increasing in (0, 1]")
    ] = "0.25,0.5,0.75,1",
    n_random: Annotated[
        int, typer.Option(help="random area-matched regions per image (≥ 20), the baseline")
    ] = 20,
    max_images: Annotated[
        int, typer.Option(help="slices for perturbation/faithfulness (0 = all)")
    ] = 256,
    sanity_images: Annotated[int, typer.Option(min=1, help="slices for the sanity check")] = 16,
    regions: Annotated[bool, typer.Option(help="brain-region attribution in MNI space")] = True,
    checks: Annotated[
        str | None,
        typer.Option(
            help="comma-separated check families to run (default: all): localization, "
            "lesion_hits, localization_effects, perturbation, faithfulness, sanity, shortcut, "
            "consistency, regions; the others are recorded as skipped"
        ),
    ] = None,
    sanity_cascade: Annotated[
        str,
        typer.Option(help="sanity check: randomize per parameter layer | block | all (full)"),
    ] = "layers",
    atlas: Annotated[str, typer.Option(help="atlas: AAL or AAL3")] = "AAL",
    seed: Annotated[int, typer.Option(help="random seed (baselines, subsampling)")] = 0,
    tolerance: Annotated[
        float | None, typer.Option(help="pointing-game tolerance, pixels (default: 15 at 224²)")
    ] = None,
    shift: Annotated[
        str | None, typer.Option(help="perturbation shift per axis, pixels, e.g. 6,6 (10 %)")
    ] = None,
    deletion_steps: Annotated[int, typer.Option(help="deletion/insertion curve steps")] = 20,
    faithfulness_baseline: Annotated[
        str, typer.Option(help="deletion/insertion baseline: blur | zero | mean")
    ] = "blur",
    batch_size: Annotated[int, typer.Option(help="images per model forward")] = 64,
    rim_mm: Annotated[
        float, typer.Option(help="shortcut alarm: width of the head's rim outside the brain, mm")
    ] = 10.0,
    shortcut_margin: Annotated[
        float, typer.Option(help="shortcut alarm: excess of mass share over area that fires it")
    ] = 0.02,
    layer: Annotated[
        str | None,
        typer.Option(help="CAM layer, or several comma-separated (fused); default: the model's"),
    ] = None,
    fusion: Annotated[str, typer.Option(help="fusion of several layers: layercam | mean")] = (
        "layercam"
    ),
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Localization, perturbation, faithfulness, sanity, the shortcut alarm, consistency and
    brain regions.

    Tables go to RUN_DIR/cam_eval/SPLIT/*.tsv; a compact summary to the work directory's
    summary.json (section cam_evaluation). Heatmaps are computed first if missing (explain).
    """
    from braincam.pipeline.evaluate_cams import CamEvalConfig, eval_dir
    from braincam.pipeline.evaluate_cams import evaluate_cams as run

    # --checks alone decides whether regions run; --no-regions alone drops them from all checks
    chosen = None if checks is None else tuple(c.strip() for c in checks.split(",") if c.strip())
    family: dict[str, object] = {"regions": regions} if chosen is None else {"checks": chosen}
    if chosen is not None and not regions:
        family["regions"] = False  # both given: the config reports a contradiction
    config = CamEvalConfig(
        split=split,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        threshold=threshold,
        noise_std=noise_std,
        strengths=tuple(v.strip() for v in strengths.split(",") if v.strip()),
        n_random=n_random,
        max_images=max_images or None,
        sanity_images=sanity_images,
        sanity_cascade=sanity_cascade,
        **family,
        atlas=atlas,
        seed=seed,
        tolerance=tolerance,
        shift=None if not shift else tuple(v.strip() for v in shift.split(",") if v.strip()),
        deletion_steps=deletion_steps,
        faithfulness_baseline=faithfulness_baseline,
        batch_size=batch_size,
        rim_mm=rim_mm,
        shortcut_margin=shortcut_margin,
        layer=parse_layer(layer),
        fusion=fusion,
    )
    summary = run(run_dir, config, progress=progress)
    typer.echo(
        f"tables in {eval_dir(run_dir, split)}; "
        + ", ".join(f"{k} {v:.1f}s" for k, v in summary["seconds"].items())
    )
