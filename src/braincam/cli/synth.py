"""`braincam synth`: write a synthetic BIDS cohort (diffusion or structural) with ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from braincam.cli._app import app


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Directory to write the BIDS dataset into."),
    subjects: int = typer.Option(20, "--subjects", "-n", help="Number of subjects (balanced)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical files."),
    voxel_size: float = typer.Option(2.5, "--voxel-size", help="Isotropic voxel size in mm."),
    snr: float = typer.Option(30.0, "--snr", help="b=0 white-matter signal / noise sigma."),
    directions: int = typer.Option(32, "--directions", help="Gradient directions at b=bvalue."),
    b0_volumes: int = typer.Option(5, "--b0", help="Number of b=0 volumes."),
    bvalue: float = typer.Option(1000.0, "--bvalue", help="Diffusion weighting in s/mm²."),
    effect_size: float = typer.Option(
        0.5, "--effect-size", help="Fraction of FA removed in the region for the `old` group."
    ),
    effect_region: str = typer.Option(
        "frontal-wm",
        "--effect-region",
        help="Region name (frontal-wm, corpus-callosum, internal-capsule, occipital-wm), "
        "sphere:X,Y,Z,R in MNI mm, random / random:deep / random:cortical (a 10–16 mm "
        "white-matter sphere placed by --seed, never in a named region), or a NIfTI mask in "
        "MNI152 space.",
    ),
    global_fa_change: float = typer.Option(
        0.0, "--global-fa-change", help="`old` group: FA × (1 + change) everywhere."
    ),
    global_md_change: float = typer.Option(
        0.0, "--global-md-change", help="`old` group: MD × (1 + change) everywhere."
    ),
    atrophy: float = typer.Option(
        0.0, "--atrophy", help="`old` group: fraction of GM and WM turned into CSF."
    ),
    warp_mm: float = typer.Option(4.0, "--warp-mm", help="Largest smooth-warp displacement."),
    orientation: str = typer.Option("LAS", "--orientation", help="Voxel axes: LAS or RAS."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier braincam synth dataset in OUT_DIR."
    ),
    workers: int = typer.Option(1, "--workers", help="Subjects simulated in parallel."),
    kind: str = typer.Option(
        "dwi",
        "--kind",
        help="dwi (young/old diffusion) or anat (T1w/T2w/FLAIR, MS groups); "
        "'structural' is the deprecated name of anat.",
    ),
    groups: str = typer.Option(
        "control,rrms,spms", "--groups", help="anat: the three group names (comma-separated)."
    ),
    bias_strength: float = typer.Option(
        0.25, "--bias-strength", help="anat: bias field spans ×(1 ± this)."
    ),
    misregistration_deg: float = typer.Option(
        3.0, "--misregistration-deg", help="anat: T2w/FLAIR rotation vs T1w, ± per axis."
    ),
    misregistration_mm: float = typer.Option(
        3.0, "--misregistration-mm", help="anat: T2w/FLAIR shift vs T1w, ± per axis."
    ),
    head: bool = typer.Option(
        False, "--head/--no-head", help="anat: a skull and scalp around the brain, as real heads."
    ),
    scalp_shortcut_mm: float = typer.Option(
        0.0,
        "--scalp-shortcut-mm",
        help="anat (with --head): group k's scalp is k × this thicker — an opt-in shortcut.",
    ),
    lesion_only: bool = typer.Option(
        False,
        "--lesion-only",
        help="anat: groups differ only in lesions (no atrophy, no ventricle enlargement).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Simulate a cohort with ground truth: young/old diffusion MRI (dwi) or T1w/T2w/FLAIR
    with MS-like lesions (anat)."""
    from braincam.synth import get_generator

    generator = get_generator(
        kind, what="--kind", warn=lambda message: typer.echo(message, err=True)
    )
    options = {
        "subjects": subjects,
        "seed": seed,
        "voxel_size": voxel_size,
        "snr": snr,
        "directions": directions,
        "b0_volumes": b0_volumes,
        "bvalue": bvalue,
        "effect_size": effect_size,
        "effect_region": effect_region,
        "global_fa_change": global_fa_change,
        "global_md_change": global_md_change,
        "atrophy": atrophy,
        "warp_mm": warp_mm,
        "orientation": orientation.upper(),
        "groups": tuple(g.strip() for g in groups.split(",")),  # validate() checks there are 3
        "bias_strength": bias_strength,
        "misregistration_deg": misregistration_deg,
        "misregistration_mm": misregistration_mm,
        "head": {"enabled": head, "shortcut_mm": scalp_shortcut_mm},
    }
    config = generator.config_from_options(options)
    if lesion_only:
        if not hasattr(config, "lesions_only"):
            raise typer.BadParameter("only with --kind anat", param_hint="--lesion-only")
        config = config.lesions_only()
    out = generator.synthesize(
        out_dir, config, overwrite=overwrite, progress=not quiet, workers=workers
    )
    contents = f" ({generator.contents})" if generator.contents else ""
    typer.echo(f"wrote {subjects} subjects{contents} to {out}")
