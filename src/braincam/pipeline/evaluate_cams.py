"""`braincam evaluate-cams`: are a run's heatmaps right? Every metric family on one split.

For each CAM method (and the uniform / random baselines where a metric has a chance level):
localization against ground-truth masks (slices and 3D), the dMRI study's perturbation check,
deletion/insertion faithfulness, the cascading-randomization sanity check, consistency across
slices / subjects / methods, and heatmap mass per brain region and lobe in MNI space.

Outputs go to ``RUN/cam_eval/<split>/`` as TSV files (plus ``curves.npz`` and ``frequency.npz``
for the report) and a compact ``cam_evaluation`` section in the work directory's summary.json.
Model forwards dominate the time; everything else is batched torch on the maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from braincam.io import read_json, update_summary, write_atomic, write_json
from braincam.pipeline.explain import DEFAULT_METHODS, ExplainConfig, ExplainResult, explain_run

COORDS_SUFFIX = "_from-MNI152NLin2009cAsym_to-native_coords.nii.gz"


@dataclass(frozen=True)
class CamEvalConfig:
    """Settings of the heatmap evaluation (defaults follow the dMRI study where it has one)."""

    split: str = "test"
    methods: tuple[str, ...] = DEFAULT_METHODS
    #: box / thresholded-region rule: fraction of each map's maximum (the paper: 20 %)
    threshold: float = 0.2
    #: pointing-game tolerance in pixels; None = Zhang et al.'s 15 px at 224², scaled
    tolerance: float | None = None
    #: Gaussian noise std in normalized (z-scored) input units, for the perturbation check
    noise_std: float = 1.0
    #: translation in pixels per axis; None = 10 % of the slice size
    shift: tuple[int, ...] | None = None
    deletion_steps: int = 20
    faithfulness_baseline: str = "blur"
    #: images used by the model-forward-heavy checks (perturbation, faithfulness); None = all
    max_images: int | None = 256
    sanity_images: int = 16
    regions: bool = True
    atlas: str = "AAL"
    batch_size: int = 64
    seed: int = 0


def eval_dir(run_dir: str | Path, split: str) -> Path:
    """Where ``evaluate-cams`` writes its tables for a run and split."""
    return Path(run_dir) / "cam_eval" / split


def _write_tsv(frame: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, sep="\t", index=False))


@dataclass
class _Context:
    """What every metric family needs, loaded once."""

    model: nn.Module
    record: dict[str, Any]
    store: Any
    explained: ExplainResult
    table: pd.DataFrame  # slices.tsv of the split
    images: Tensor  # normalized model inputs (n, C, S, S)
    targets: Tensor  # explained class per slice
    maps: dict[str, Tensor]  # method → (n, S, S)
    model_name: str
    generator: torch.Generator


def _load(run_dir: Path, cfg: CamEvalConfig, progress: bool) -> _Context:
    from braincam.data.normalization import zscore
    from braincam.data.slices import SliceStore
    from braincam.training.loading import load_trained

    explained = explain_run(
        run_dir, ExplainConfig(methods=cfg.methods, split=cfg.split), progress=progress
    )
    model, record = load_trained(run_dir)
    store = SliceStore.open(record["store"])
    table = explained.slices()
    rows = table["store_row"].to_numpy()
    images = zscore(torch.from_numpy(np.asarray(store.images[rows])), record)
    maps = {m: torch.from_numpy(np.array(explained.maps(m))) for m in cfg.methods}
    return _Context(
        model=model,
        record=record,
        store=store,
        explained=explained,
        table=table,
        images=images,
        targets=torch.as_tensor(table["explained"].to_numpy().copy()),
        maps=maps,
        model_name=str(record["model"]),
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def _subsample(n: int, limit: int | None, generator: torch.Generator) -> Tensor:
    if limit is None or n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:limit].sort().values


# ------------------------------------------------------------------------ localization


def _score_candidates(
    candidates: dict[str, Tensor], masks: Tensor, cfg: CamEvalConfig, tolerance: float | None
) -> dict[str, dict[str, Tensor]]:
    """Localization tables of several map sets against the same masks.

    The mask-only work (the tolerant pointing game's distance transform) is done once for all
    of them. (Each map set is scored on its own: one batch of all would multiply the memory.)
    """
    from braincam.metrics.localization import default_tolerance, localization_table, tolerance_zone

    if tolerance is None:
        tolerance = default_tolerance(tuple(masks.shape[1:]))
    zone = tolerance_zone(masks, tolerance)
    return {
        name: localization_table(
            maps, masks, threshold=cfg.threshold, tolerance=tolerance, zone=zone
        )
        for name, maps in candidates.items()
    }


def localization(ctx: _Context, cfg: CamEvalConfig) -> pd.DataFrame:
    """Localization metrics on slices with ground-truth mask pixels, per method and baseline."""
    from braincam.metrics.localization import baseline_maps, summarize_table

    if ctx.store.masks is None:
        return pd.DataFrame()
    rows = ctx.table["store_row"].to_numpy()
    masks = torch.from_numpy(np.asarray(ctx.store.masks[rows]) > 0)
    has = masks.flatten(1).any(1)
    if not has.any():
        return pd.DataFrame()
    masks = masks[has]
    candidates = {m: maps[has] for m, maps in ctx.maps.items()}
    like = next(iter(candidates.values()))
    candidates["baseline:uniform"] = baseline_maps(like, "uniform")
    candidates["baseline:random"] = baseline_maps(like, "random", ctx.generator)
    tables = _score_candidates(candidates, masks, cfg, cfg.tolerance)
    return pd.DataFrame(
        [
            {"model": ctx.model_name, "method": name, "level": "slice", **summarize_table(t)}
            for name, t in tables.items()
        ]
    )


def localization_3d(ctx: _Context, cfg: CamEvalConfig) -> pd.DataFrame:
    """Localization of the back-projected 3D maps against each subject's native mask.

    Per subject the mask is read once and every method and baseline is scored against it
    (sharing its distance transform); the per-subject rows are then averaged per method.
    """
    import nibabel as nib

    from braincam.metrics.localization import baseline_maps, summarize_table

    nifti = ctx.explained.out_dir / "nifti"
    per_method: dict[str, list[dict[str, Tensor]]] = {}
    for pid in sorted(ctx.table["participant_id"].unique()):
        mask_path = ctx.store.meta["subjects"][pid].get("mask")
        if not mask_path:
            continue
        mask = _mask_on_source_grid(ctx.store, pid, mask_path)
        if not mask.any():
            continue
        candidates = {}
        for method in ctx.maps:
            img = nib.load(nifti / f"{pid}_desc-{method}_heatmap.nii.gz")
            candidates[method] = torch.from_numpy(np.asarray(img.dataobj, dtype=np.float32))[None]
        candidates["baseline:uniform"] = baseline_maps(mask.float(), "uniform")
        candidates["baseline:random"] = baseline_maps(mask.float(), "random", ctx.generator)
        for name, table in _score_candidates(candidates, mask, cfg, None).items():
            per_method.setdefault(name, []).append(table)
    records = []
    for method, per_subject in per_method.items():
        merged = {k: torch.cat([t[k] for t in per_subject]) for k in per_subject[0]}
        records.append(
            {
                "model": ctx.model_name,
                "method": method,
                "level": "volume",
                **summarize_table(merged),
            }
        )
    return pd.DataFrame(records)


def _mask_on_source_grid(store: Any, pid: str, mask_path: str) -> Tensor:
    """The subject's ground-truth mask on the grid its heatmaps were back-projected to.

    The grids differ when preprocessing cropped the image (structural slice trimming), so the
    mask is resampled (nearest neighbour) in world space.
    """
    import nibabel as nib
    from nibabel.processing import resample_from_to

    mask_img = nib.load(mask_path)
    affine, shape = store.grid(pid, "source")
    same = tuple(mask_img.shape[:3]) == tuple(shape) and np.allclose(mask_img.affine, affine)
    if not same:
        mask_img = resample_from_to(mask_img, (tuple(shape), affine), order=0)
    return torch.from_numpy(np.asarray(mask_img.dataobj) > 0)[None]


# ------------------------------------------------------------------ perturbation, faithfulness


def perturbation(ctx: _Context, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The dMRI study's check: noise in the CAM region vs translation vs a random region."""
    from braincam.metrics.perturbation import perturbation_check

    pick = _subsample(len(ctx.images), cfg.max_images, ctx.generator)
    shift = cfg.shift or (max(1, ctx.images.shape[-1] // 10),) * (ctx.images.ndim - 2)
    rows, details = [], {}
    for method, maps in ctx.maps.items():
        res = perturbation_check(
            ctx.model,
            ctx.images[pick],
            ctx.targets[pick],
            maps[pick],
            noise_std=cfg.noise_std,
            threshold=cfg.threshold,
            shift=shift,
            brain_masks=_brain(ctx, pick),
            generator=ctx.generator,
            batch_size=cfg.batch_size,
        )
        for condition, values in res["conditions"].items():
            rows.append(
                {"model": ctx.model_name, "method": method, "condition": condition, **values}
            )
        details[method] = {
            "cam_hurts_more_than_translation": res["cam_hurts_more_than_translation"],
            "cam_hurts_more_than_random": res["cam_hurts_more_than_random"],
            "comparisons": res["comparisons"],
            "settings": res["settings"],
        }
    return pd.DataFrame(rows), details


def _brain(ctx: _Context, pick: Tensor) -> Tensor:
    """Brain pixels of the picked slices: raw intensity above zero (FA/T1 background is 0)."""
    rows = ctx.table["store_row"].to_numpy()[pick.numpy()]
    raw = torch.from_numpy(np.asarray(ctx.store.images[rows]))
    return (raw > 0).any(1)


def faithfulness(ctx: _Context, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Deletion / insertion AUCs per method, with the random-order curve as baseline."""
    from braincam.metrics.faithfulness import deletion_insertion

    pick = _subsample(len(ctx.images), cfg.max_images, ctx.generator)
    rows, curves = [], {}
    for i, (method, maps) in enumerate(ctx.maps.items()):
        res = deletion_insertion(
            ctx.model,
            ctx.images[pick],
            ctx.targets[pick],
            maps[pick],
            steps=cfg.deletion_steps,
            baseline=cfg.faithfulness_baseline,  # type: ignore[arg-type]
            batch_size=cfg.batch_size,
            generator=ctx.generator,
            random_order=i == 0,  # the random-order baseline does not depend on the method
        )
        for key, value in res.items():
            if key.endswith("_auc"):
                order = "random" if key.startswith("random") else method
                kind = key.removeprefix("random_").removesuffix("_auc")
                rows.append(
                    {
                        "model": ctx.model_name,
                        "method": "baseline:random-order" if order == "random" else method,
                        "curve": kind,
                        "auc": float(value.double().mean()),
                        "n": int(value.numel()),
                    }
                )
            elif value.ndim == 2:  # (N, steps + 1) curves: keep the mean for the report
                curves[f"{method}:{key}"] = value.double().mean(0).cpu().numpy()
    return pd.DataFrame(rows), curves


# -------------------------------------------------------------------------------- sanity


def sanity(ctx: _Context, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cascading model-parameter randomization (Adebayo et al.) per method."""
    from braincam.cam import compute_cams
    from braincam.metrics.sanity import cascading_randomization

    pick = _subsample(len(ctx.images), cfg.sanity_images, ctx.generator)
    x, t = ctx.images[pick], ctx.targets[pick]
    frames, flags = [], {}
    for method in ctx.maps:
        explain: Callable[..., Tensor] = lambda model, inputs, targets, m=method: compute_cams(  # noqa: E731
            model, inputs, m, targets=targets
        )
        res = cascading_randomization(
            ctx.model, x, t, explain, generator=torch.Generator().manual_seed(cfg.seed)
        )
        summary = res.summary.copy()
        summary.insert(0, "method", method)
        summary.insert(0, "model", ctx.model_name)
        frames.append(summary)
        flags[method] = {"flagged": res.flagged, "rule": res.rule}
    return pd.concat(frames, ignore_index=True), flags


# --------------------------------------------------------------------------- consistency


def consistency(ctx: _Context, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Mean pairwise correlation within subjects, classes and across methods; frequency maps."""
    from braincam.metrics.consistency import consistency_levels, frequency_maps

    names = list(ctx.maps)
    maps = torch.cat([ctx.maps[m] for m in names])
    table = pd.concat(
        [ctx.table.assign(model=ctx.model_name, method=m) for m in names], ignore_index=True
    )
    levels = consistency_levels(maps, table)
    freq = {}
    for m in names:
        classes, fmap, _ = frequency_maps(ctx.maps[m], ctx.table["label"].to_numpy())
        for c, f in zip(classes, fmap, strict=True):
            freq[f"{m}:{c}"] = f.cpu().numpy()
    return levels, freq


# ------------------------------------------------------------------------------- regions


def regions(ctx: _Context, cfg: CamEvalConfig, out: Path) -> dict[str, pd.DataFrame]:
    """Heatmap mass per atlas region and lobe in MNI space, ranked per class; class differences.

    Synthetic cohorts carry the exact native→MNI mapping next to their ground-truth masks; for
    other data each subject's image is registered affinely to the bundled MNI152 template. The
    mean map per method and class is written to ``out/mni_mean_<method>_<class>.nii.gz``.
    """
    import nibabel as nib

    from braincam.metrics.atlas import load_atlas, resample_atlas
    from braincam.metrics.regions import (
        apply_to_mni,
        lobe_mass,
        mni_template,
        rank_regions,
        region_differences,
        region_mass,
        register_to_mni,
        warp_to_mni,
    )

    atlas = load_atlas(cfg.atlas)
    nifti = ctx.explained.out_dir / "nifti"
    reference = None  # the MNI template is only needed to register real data: loaded on demand
    sums: dict[tuple[str, str], tuple[Any, int, np.ndarray]] = {}
    grid_atlases: dict[tuple[Any, bytes], Any] = {}
    tables = []
    for pid, group in ctx.table.groupby("participant_id"):
        meta = ctx.store.meta["subjects"][pid]
        imgs = [nib.load(nifti / f"{pid}_desc-{m}_heatmap.nii.gz") for m in ctx.maps]
        stack = nib.Nifti1Image(
            np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in imgs], -1), imgs[0].affine
        )
        coords = Path(meta["mask"]).parent / f"{pid}{COORDS_SUFFIX}" if meta.get("mask") else None
        if coords is not None and coords.is_file():
            warped = warp_to_mni(stack, nib.load(coords))
        else:
            if reference is None:
                reference = mni_template(2.0)
            transform = register_to_mni(nib.load(meta["images"][0]))
            warped = apply_to_mni(stack, transform, reference=reference)
        data = np.moveaxis(np.asarray(warped.dataobj), -1, 0)
        key = (warped.shape[:3], warped.affine.tobytes())  # subjects usually share the MNI grid
        if key not in grid_atlases:
            grid_atlases[key] = resample_atlas(atlas, warped.affine, warped.shape[:3])
        grid_atlas = grid_atlases[key]
        label = str(group["label"].iloc[0])
        for method, vol in zip(ctx.maps, data, strict=True):
            total, count, _ = sums.get((method, label), (0.0, 0, warped.affine))
            sums[(method, label)] = (total + np.nan_to_num(vol), count + 1, warped.affine)
        info = pd.DataFrame({"participant_id": pid, "label": label, "method": list(ctx.maps)})
        tables.append(region_mass(data, grid_atlas, meta=info))
    # the mean heatmap per method and class in MNI space, for the report's 3D view
    for (method, label), (total, count, affine) in sums.items():
        mean = nib.Nifti1Image((total / count).astype(np.float32), affine)
        path = out / f"mni_mean_{method}_{label}.nii.gz"
        write_atomic(path, lambda tmp, img=mean: nib.save(img, tmp))
    per_map = pd.concat(tables, ignore_index=True).assign(model=ctx.model_name)
    lobes = lobe_mass(per_map)
    return {
        "regions": per_map,
        "lobes": lobes,
        "region_ranking": rank_regions(per_map, by=["model", "method", "label"]),
        "lobe_ranking": rank_regions(lobes, by=["model", "method", "label"]),
        "region_differences": region_differences(per_map, by=["model", "method"]),
        "atlas": pd.DataFrame(
            [{"atlas": atlas.name, "source": atlas.source, "licence": atlas.licence}]
        ),
    }


# --------------------------------------------------------------------------------- driver
# Each family writes its tables into ``out`` and returns its part of the compact summary.


def _run_localization(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    frame = pd.concat([localization(ctx, cfg), localization_3d(ctx, cfg)], ignore_index=True)
    _write_tsv(frame, out / "localization.tsv")
    return frame.to_dict(orient="records")


def _run_perturbation(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    frame, details = perturbation(ctx, cfg)
    _write_tsv(frame, out / "perturbation.tsv")
    return {"conditions": frame.to_dict(orient="records"), **details}


def _run_faithfulness(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    frame, curves = faithfulness(ctx, cfg)
    _write_tsv(frame, out / "faithfulness.tsv")
    write_atomic(out / "curves.npz", lambda tmp: np.savez(tmp, **curves))
    return frame.to_dict(orient="records")


def _run_sanity(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    frame, flags = sanity(ctx, cfg)
    _write_tsv(frame, out / "sanity.tsv")
    return flags


def _run_consistency(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    frame, freq = consistency(ctx, cfg)
    _write_tsv(frame, out / "consistency.tsv")
    write_atomic(out / "frequency.npz", lambda tmp: np.savez(tmp, **freq))
    means = frame.groupby(["level", "method"], dropna=False)["mean_r"].mean().reset_index()
    return means.to_dict(orient="records")


def _run_regions(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    tables = regions(ctx, cfg, out)
    for name, frame in tables.items():
        _write_tsv(frame, out / f"{name}.tsv")
    top = tables["lobe_ranking"].groupby(["method", "label"]).head(3)
    return {"atlas": tables["atlas"].iloc[0].to_dict(), "top_lobes": top.to_dict(orient="records")}


FAMILIES: dict[str, Callable[[_Context, CamEvalConfig, Path], Any]] = {
    "localization": _run_localization,
    "perturbation": _run_perturbation,
    "faithfulness": _run_faithfulness,
    "sanity": _run_sanity,
    "consistency": _run_consistency,
    "regions": _run_regions,
}


def evaluate_cams(
    run_dir: str | Path, config: CamEvalConfig = CamEvalConfig(), *, progress: bool = True
) -> dict[str, Any]:
    """Run every heatmap metric for one run and split; write TSVs and the summary section.

    Returns the compact summary (also written to ``RUN/cam_eval/<split>/summary.json`` and to
    the work directory's ``summary.json`` under ``cam_evaluation[<run name>]``).
    """
    from braincam.progress import make_progress

    run_dir = Path(run_dir)
    out = eval_dir(run_dir, config.split)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    ctx = _load(run_dir, config, progress)
    families = {k: f for k, f in FAMILIES.items() if config.regions or k != "regions"}
    summary: dict[str, Any] = {
        "model": ctx.model_name,
        "split": config.split,
        "config": asdict(config),
    }
    seconds: dict[str, float] = {}
    with make_progress(disable=not progress) as bar:
        task = bar.add_task(f"evaluate-cams {ctx.model_name}", total=len(families))
        for name, run_family in families.items():
            bar.update(task, description=f"evaluate-cams {ctx.model_name}: {name}")
            start = time.perf_counter()
            summary[name] = run_family(ctx, config, out)
            seconds[name] = time.perf_counter() - start
            bar.advance(task)
    summary["seconds"] = seconds
    write_json(out / "summary.json", summary)
    work_summary = Path(ctx.record["work_dir"]) / "summary.json"
    section = read_json(work_summary).get("cam_evaluation", {}) if work_summary.is_file() else {}
    section[run_dir.name] = summary
    update_summary(work_summary.parent, "cam_evaluation", section)
    return summary
