"""`braincam prepare`: BIDS dataset (or TSV manifest) → preprocessed volumes (FA maps, or
T1w/T2w/FLAIR) → splits → slice store."""

from __future__ import annotations

from pathlib import Path

import typer

from braincam.cli._app import app


def _floats(text: str, option: str) -> tuple[float, ...]:
    from braincam.errors import ConfigError

    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError as exc:
        raise ConfigError(f"{option} expects comma-separated numbers, got {text!r}") from exc


@app.command()
def prepare(
    bids_dir: Path = typer.Argument(
        ..., help="BIDS dataset (or, with --manifest, the folder relative paths resolve against)."
    ),
    work_dir: Path = typer.Argument(..., help="Work directory (created if missing)."),
    label: str = typer.Option(..., help="Column of participants.tsv / the manifest to classify."),
    manifest: Path | None = typer.Option(
        None, help="TSV with participant_id, <label>, dwi, bval, bvec[, mask] instead of BIDS."
    ),
    participant_label: list[str] | None = typer.Option(
        None, help="Only these subjects ('01' or 'sub-01'); repeat the option for several."
    ),
    session: str | None = typer.Option(None, help="Session to use (default: the first)."),
    run: str | None = typer.Option(None, help="Run to use (default: the first)."),
    workers: int = typer.Option(1, help="Subjects processed in parallel (joblib processes)."),
    dask_scheduler: str | None = typer.Option(
        None, help="Address of an existing Dask scheduler (e.g. tcp://127.0.0.1:8786)."
    ),
    fit_method: str = typer.Option("WLS", help="DTI fit: WLS, OLS, NLLS or RESTORE."),
    median_radius: int = typer.Option(2, help="median_otsu median filter radius (voxels)."),
    numpass: int = typer.Option(1, help="median_otsu median filter passes."),
    b0_threshold: float = typer.Option(50.0, help="Volumes with b ≤ this are b=0."),
    bvec_tolerance: float = typer.Option(0.01, help="Allowed | |g| − 1 | for b>0 volumes."),
    split_ratios: str = typer.Option("0.75,0.10,0.15", help="train,val,test fractions."),
    seed: int = typer.Option(0, help="Seed of the subject split."),
    axes: str = typer.Option("axial,coronal,sagittal", help="Slice axes, comma-separated."),
    slices_per_axis: int = typer.Option(16, help="Centre slices per axis."),
    size: int = typer.Option(224, help="Slice size in pixels (square)."),
    voxel_size: float | None = typer.Option(
        None, help="Isotropic voxel size (mm) before slicing (default: the finest input)."
    ),
    mask_desc: str = typer.Option(
        "effect", help="desc- entity of ground-truth masks to look for ('none' to disable)."
    ),
    masks: Path | None = typer.Option(
        None, help="BIDS-derivatives folder of subject-space masks (default: BIDS/derivatives/*)."
    ),
    force: bool = typer.Option(False, help="Recompute FA even when the cache is valid."),
    modality: str = typer.Option(
        "dwi", help="dwi (DTI → FA) or anat (T1w/T2w/FLAIR → N4, co-registration, equalization)."
    ),
    equalize: str = typer.Option(
        "adaptive", help="anat: histogram equalization, global|adaptive|none."
    ),
    trim_threshold: float = typer.Option(
        0.10, help="anat: keep slices whose brain area is ≥ this × the largest slice's."
    ),
    missing_contrast: str = typer.Option(
        "error", help="anat: a subject without T1w/T2w/FLAIR stops (error) or is listed (skip)."
    ),
    allow_missing_description: bool = typer.Option(
        False, help="Read a BIDS folder without dataset_description.json (a warning, not an error)."
    ),
    brain_mask: str = typer.Option(
        "extract",
        help="anat: extract (MNI152 registration: skull and scalp out) or foreground (Otsu: "
        "only for skull-stripped images).",
    ),
    outside_brain: str = typer.Option(
        "zero", help="anat: outside the brain mask the network sees zero, or keep (the head)."
    ),
    representation: str = typer.Option(
        "slices", help="slices (2.5D store, WORK/slices/) or volume (3-D store, WORK/volumes/)."
    ),
    volume_shape: str = typer.Option(
        "64,80,64", help="volume: the grid in voxels X,Y,Z (centred on the brain's box)."
    ),
    volume_spacing: float = typer.Option(2.5, help="volume: isotropic voxel size of the grid, mm."),
    volume_space: str = typer.Option(
        "native",
        help="volume: native (each subject's space, grid on its brain box) or mni (one MNI152 "
        "grid for every subject).",
    ),
    volume_transform: str = typer.Option(
        "auto",
        help="volume in mni: known (the cohort's coordinate maps), registration (affine to the "
        "MNI152 template) or auto (known when there, else registration).",
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Validate inputs, preprocess each subject (dwi: DTI FA/MD; anat: N4, co-registration,
    equalization), split subjects and build the 2.5D slice store (or, with --representation
    volume, the whole-brain volume store)."""
    from rich.console import Console
    from rich.table import Table

    from braincam.modalities import get_modality
    from braincam.pipeline.prepare import PrepareConfig, prepare

    modality = get_modality(modality, warn=lambda message: typer.echo(message, err=True)).name

    config = PrepareConfig(
        label=label,
        manifest=manifest,
        participant_labels=tuple(participant_label) if participant_label else None,
        session=session,
        run=run,
        fit_method=fit_method,
        median_radius=median_radius,
        numpass=numpass,
        b0_threshold=b0_threshold,
        bvec_tolerance=bvec_tolerance,
        workers=workers,
        dask_scheduler=dask_scheduler,
        split_ratios=_floats(split_ratios, "--split-ratios"),  # type: ignore[arg-type]
        seed=seed,
        axes=tuple(a.strip() for a in axes.split(",") if a.strip()),
        slices_per_axis=slices_per_axis,
        size=size,
        voxel_size=voxel_size,
        mask_desc=None if mask_desc.lower() in ("", "none") else mask_desc,
        masks_dir=masks,
        force=force,
        progress=progress,
        modality=modality,
        equalize=equalize,
        trim_threshold=trim_threshold,
        missing_contrast=missing_contrast,
        allow_missing_description=allow_missing_description,
        brain_mask=brain_mask,  # type: ignore[arg-type]  # checked by the config
        outside_brain=outside_brain,  # type: ignore[arg-type]
        representation=representation,  # type: ignore[arg-type]
        volume_shape=_floats(volume_shape, "--volume-shape"),  # type: ignore[arg-type]
        volume_spacing=volume_spacing,
        volume_space=volume_space,  # type: ignore[arg-type]
        volume_transform=volume_transform,  # type: ignore[arg-type]
    )
    result = prepare(bids_dir, work_dir, config)
    console = Console()
    s = result.summary["n_subjects"]
    what = config.get_modality().outputs
    console.print(
        f"{what}: {s['computed']} computed, {s['skipped']} skipped (cached), "
        f"{s['failed']} failed; splits: "
        + (
            f"{result.slices_per_split or '-'} slices"
            if config.representation == "slices"
            else f"{(result.summary.get('volume_store') or {}).get('subjects_per_split', '-')} "
            "volumes"
        )
    )
    if result.mask_slices:
        table = Table(title="Slices intersecting the ground-truth mask")
        table.add_column("subject")
        table.add_column("slices", justify="right")
        for pid, n in result.mask_slices.items():
            table.add_row(pid, str(n))
        console.print(table)
    if result.failures:
        err = Console(stderr=True)
        table = Table(title=f"Failures ({len(result.failures)}) — also in failures.tsv")
        for col in ("subject", "step", "file", "error"):
            table.add_column(col, overflow="fold")
        for f in result.failures:
            table.add_row(f.participant_id, f.step, f.file, f.error)
        err.print(table)
        raise typer.Exit(code=1)
    console.print(f"done: {work_dir}")
