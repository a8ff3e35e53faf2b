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

from braincam.explain import DEFAULT_METHODS, ExplainConfig, ExplainResult, explain_run
from braincam.io import read_json, to_jsonable, update_summary, write_atomic, write_json
from braincam.summary_schema import validate_cam_evaluation

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
    #: noise added to the imputed voxels of the perturbation check, in z-scored input units
    #: (ROAD's noisy linear imputation; 0.05 is the training augmentation's noise level)
    noise_std: float = 0.05
    #: dose–response: fractions of the way from the image to its imputed copy (last = verdict)
    strengths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    #: random area-matched placements per image (the perturbation baseline)
    n_random: int = 20
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
    from braincam.data.slices import SliceStore
    from braincam.train import load_trained, normalize

    explained = explain_run(
        run_dir, ExplainConfig(methods=cfg.methods, split=cfg.split), progress=progress
    )
    model, record = load_trained(run_dir)
    store = SliceStore.open(record["store"])
    table = explained.slices()
    rows = table["store_row"].to_numpy()
    images = normalize(torch.from_numpy(np.asarray(store.images[rows])), record)
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
    from braincam.evaluate.localization import default_tolerance, localization_table, tolerance_zone

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
    from braincam.evaluate.localization import baseline_maps, summarize_table

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

    from braincam.evaluate.localization import baseline_maps, summarize_table

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
    """Imputing the CAM region vs random regions of its shape, with positive/negative controls."""
    from braincam.evaluate.perturbation import RULE, control_checks, perturbation_check

    pick = _subsample(len(ctx.images), cfg.max_images, ctx.generator)
    shift = cfg.shift or (max(1, ctx.images.shape[-1] // 10),) * (ctx.images.ndim - 2)
    classes = list(ctx.record["classes"])
    labels = torch.as_tensor([classes.index(str(v)) for v in ctx.table["label"]])
    common = {
        "class_names": classes,
        "strengths": cfg.strengths,
        "n_random": cfg.n_random,
        "noise_std": cfg.noise_std,
        "generator": ctx.generator,
        "batch_size": cfg.batch_size,
    }
    rows, methods, settings = [], {}, {}
    for method, maps in ctx.maps.items():
        res = perturbation_check(
            ctx.model,
            ctx.images[pick],
            ctx.targets[pick],
            maps[pick],
            labels=labels[pick],
            threshold=cfg.threshold,
            shift=shift,
            brain_masks=_brain(ctx, pick),
            **common,
        )
        rows += [{"model": ctx.model_name, "method": method, **c} for c in res["conditions"]]
        settings = res["settings"]
        methods[method] = {
            k: res[k]
            for k in (
                "region",
                "comparison",
                "per_class",
                "dose_response",
                "hurts_more_than_random",
                "random_overlap_mean",
                "translation",
            )
        }
    controls: dict[str, Any] = {
        "positive_control": None,
        "negative_control": None,
        "controls": {},
    }
    if ctx.store.masks is not None:
        rows_all = ctx.table["store_row"].to_numpy()
        truth = torch.from_numpy(np.asarray(ctx.store.masks[rows_all]) > 0)
        has = torch.nonzero(truth.flatten(1).any(1))[:, 0]
        if len(has):
            has = has[_subsample(len(has), cfg.max_images, ctx.generator)]
            controls = control_checks(
                ctx.model,
                ctx.images[has],
                labels[has],
                truth[has],
                brain_masks=_brain(ctx, has),
                **common,
            )
    section = {
        "rule": RULE,
        "settings": settings,
        "conditions": rows,
        "methods": methods,
        **controls,
    }
    return pd.DataFrame(rows), section


def _brain(ctx: _Context, pick: Tensor) -> Tensor:
    """Brain pixels of the picked slices: raw intensity above zero (FA/T1 background is 0)."""
    rows = ctx.table["store_row"].to_numpy()[pick.numpy()]
    raw = torch.from_numpy(np.asarray(ctx.store.images[rows]))
    return (raw > 0).any(1)


def faithfulness(ctx: _Context, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Deletion / insertion AUCs per method, with the random-order curve as baseline."""
    from braincam.evaluate.faithfulness import deletion_insertion

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


#: images whose maps at every randomization step are kept for the report's figure
SANITY_FIGURE_IMAGES = 2


def sanity(
    ctx: _Context, cfg: CamEvalConfig
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, np.ndarray]]:
    """Cascading model-parameter randomization (Adebayo et al.) per method.

    Besides the per-step table: per method the flag, the final similarities, the similarity of
    random pairs of original maps (Arun et al.'s chance level: two unrelated maps) and the mean
    curve; and the maps of the first images at every step (``sanity_maps.npz``).
    """
    from braincam.cam import compute_cams
    from braincam.evaluate.sanity import cascading_randomization, similarity

    pick = _subsample(len(ctx.images), cfg.sanity_images, ctx.generator)
    x, t = ctx.images[pick], ctx.targets[pick]
    keep = min(SANITY_FIGURE_IMAGES, len(pick))
    frames, flags = [], {}
    figure: dict[str, np.ndarray] = {"images": x[:keep, 0].numpy()}
    for method in ctx.maps:
        explain: Callable[..., Tensor] = lambda model, inputs, targets, m=method: compute_cams(  # noqa: E731
            model, inputs, m, targets=targets
        )
        res = cascading_randomization(
            ctx.model,
            x,
            t,
            explain,
            generator=torch.Generator().manual_seed(cfg.seed),
            keep_maps=True,
        )
        summary = res.summary.copy()
        summary.insert(0, "method", method)
        summary.insert(0, "model", ctx.model_name)
        frames.append(summary)
        original = res.maps["original"]
        chance = similarity(original, original.roll(1, 0)) if len(original) > 1 else None
        last = res.summary.iloc[-1]
        flags[method] = {
            "flagged": res.flagged,
            "rule": res.rule,
            "threshold": res.threshold,
            "final_spearman": float(last["spearman_mean"]),
            "final_spearman_abs": float(last["spearman_abs_mean"]),
            "final_ssim": float(last["ssim_mean"]),
            "random_pairs_ssim": None if chance is None else float(chance["ssim"].nanmean()),
            "random_pairs_spearman": None
            if chance is None
            else float(chance["spearman"].nanmean()),
            "n_images": len(pick),
            "steps": [
                {
                    "step": int(r["step"]),
                    "layer": str(r["layer"]),
                    "spearman_mean": float(r["spearman_mean"]),
                    "spearman_abs_mean": float(r["spearman_abs_mean"]),
                    "ssim_mean": float(r["ssim_mean"]),
                }
                for _, r in res.summary.iterrows()
            ],
        }
        for step, (layer, maps) in enumerate(res.maps.items()):
            figure[f"{method}:{step:03d}:{layer}"] = maps[:keep].numpy()
    return pd.concat(frames, ignore_index=True), flags, figure


# --------------------------------------------------------------------------- consistency


def consistency(ctx: _Context, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Mean pairwise correlation within subjects, classes and across methods; frequency maps."""
    from braincam.evaluate.consistency import consistency_levels, frequency_maps

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

    from braincam.evaluate.atlas import load_atlas, resample_atlas
    from braincam.evaluate.regions import (
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
    frame, section = perturbation(ctx, cfg)
    _write_tsv(frame, out / "perturbation.tsv")
    return section


def _run_faithfulness(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    frame, curves = faithfulness(ctx, cfg)
    _write_tsv(frame, out / "faithfulness.tsv")
    write_atomic(out / "curves.npz", lambda tmp: np.savez(tmp, **curves))
    return frame.to_dict(orient="records")


def _run_sanity(ctx: _Context, cfg: CamEvalConfig, out: Path) -> Any:
    frame, flags, figure = sanity(ctx, cfg)
    _write_tsv(frame, out / "sanity.tsv")
    write_atomic(out / "sanity_maps.npz", lambda tmp: np.savez(tmp, **figure))
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


def _num(value: Any) -> float | None:
    """A figure for a verdict: None when missing or NaN (then the verdict is None too)."""
    return None if value is None or value != value else float(value)


def _row(rows: Any, **match: str) -> dict[str, Any] | None:
    for row in rows or []:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def verdicts(summary: dict[str, Any], methods: tuple[str, ...]) -> dict[str, Any]:
    """Per method: localizes, faithful, passes randomization, perturbation — each a figure, its
    chance baseline and a boolean verdict (None when the family did not run or has no data).

    The report's verdict table shows exactly these values; nothing is recomputed there.
    """
    out = {}
    for method in methods:
        loc = _row(summary.get("localization"), method=method, level="slice")
        uni = _row(summary.get("localization"), method="baseline:uniform", level="slice")
        mass = _num((loc or {}).get("relevance_mass"))
        chance = _num((uni or {}).get("relevance_mass"))
        localizes = {
            "metric": "relevance mass in the ground-truth region (slices)",
            "figure": mass,
            "baseline": chance,
            "verdict": None if mass is None or chance is None else bool(mass > chance),
            "rule": "the map's mass inside the region exceeds a uniform map's (the region's "
            "share of the slice)",
        }
        faith = summary.get("faithfulness")
        d, i = (
            _row(faith, method=method, curve="deletion"),
            _row(faith, method=method, curve="insertion"),
        )
        rd = _row(faith, method="baseline:random-order", curve="deletion")
        ri = _row(faith, method="baseline:random-order", curve="insertion")
        values = [None if r is None else _num(r.get("auc")) for r in (d, i, rd, ri)]
        faithful = {
            "metric": "deletion AUC (lower is better)",
            "figure": values[0],
            "baseline": values[2],
            "verdict": None
            if any(v is None for v in values)
            else bool(values[0] < values[2] and values[1] > values[3]),
            "rule": "deletion AUC below and insertion AUC above the random order's",
        }
        san = (summary.get("sanity") or {}).get(method)
        figure = None
        if san is not None:
            finals = [
                v for v in (san["final_spearman"], san["final_spearman_abs"]) if v is not None
            ]
            figure = max(finals) if finals else None
        randomization = {
            "metric": "Spearman, original vs fully randomized maps",
            "figure": figure,
            "baseline": None if san is None else san.get("random_pairs_spearman"),
            "verdict": None if san is None else not san["flagged"],
            "rule": "passes unless the mean (absolute) Spearman after full randomization exceeds "
            f"{san['threshold'] if san else 0.5}; baseline: two unrelated maps",
        }
        pert = ((summary.get("perturbation") or {}).get("methods") or {}).get(method)
        comp = None if pert is None else pert["comparison"]
        perturbation = {
            "metric": "drop of target probability, CAM region (imputed)",
            "figure": None if comp is None else comp["region_drop"],
            "baseline": None if comp is None else comp["random_drop"],
            "verdict": None if comp is None else comp["hurts_more"],
            "rule": "CAM region hurts more than 20 random regions of its shape per image "
            "(95 % CI of the paired difference above 0)",
            "ci_low": None if comp is None else comp["ci_low"],
            "ci_high": None if comp is None else comp["ci_high"],
        }
        out[method] = {
            "localizes": localizes,
            "faithful": faithful,
            "randomization": randomization,
            "perturbation": perturbation,
        }
    return out


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
    summary["verdicts"] = verdicts(summary, tuple(ctx.maps))
    summary["seconds"] = seconds
    summary = to_jsonable(summary)
    validate_cam_evaluation(summary)  # typed before anything is written
    write_json(out / "summary.json", summary)
    work_summary = Path(ctx.record["work_dir"]) / "summary.json"
    section = read_json(work_summary).get("cam_evaluation", {}) if work_summary.is_file() else {}
    section[run_dir.name] = summary
    update_summary(work_summary.parent, "cam_evaluation", section)
    return summary
