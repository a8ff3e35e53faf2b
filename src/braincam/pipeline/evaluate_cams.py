"""`braincam evaluate-cams`: are a run's heatmaps right? Every metric family on one split.

For each CAM method (and the uniform / random baselines where a metric has a chance level):
localization against ground-truth masks (slices and 3D), the lesion-level hit rate by lesion size
(lesion masks only) and localization against the other structural effects (GM atrophy,
ventricle enlargement; volumes, when their masks exist), the dMRI study's perturbation check,
deletion/insertion faithfulness, the cascading-randomization sanity check, the shortcut alarm
(heatmap mass outside the brain and in the head's rim against the area), consistency across
slices / subjects / methods, and heatmap mass per brain region and lobe in MNI space.

Outputs go to ``RUN/cam_eval/<split>/`` (paths: :class:`braincam.layout.CamEvalLayout`) as TSV
files (plus ``curves.npz`` and ``frequency.npz`` for the report) and a compact
``cam_evaluation`` section in the work directory's summary.json. The families live in
:mod:`~braincam.pipeline.cam_localization`, :mod:`~braincam.pipeline.cam_lesions`,
:mod:`~braincam.pipeline.cam_regions` and here;
the per-method verdicts in :mod:`~braincam.pipeline.cam_verdicts` (validated against
:mod:`braincam.summary_schema` before anything is written);
:mod:`~braincam.pipeline.cam_context` loads what they share.
Model forwards dominate the time; everything else is batched torch on the maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from braincam.config.cams import CamEvalConfig
from braincam.io import read_json, to_jsonable, write_atomic, write_json
from braincam.layout import CamEvalLayout, RunLayout, WorkLayout
from braincam.pipeline.cam_context import (
    CamContext,
    brain_pixels,
    is_volume_context,
    load_context,
    subsample,
)
from braincam.pipeline.cam_lesions import has_effect_masks, has_lesion_masks, lesion_hit_rates
from braincam.pipeline.cam_localization import (
    localization,
    localization_3d,
    localization_effects,
)
from braincam.pipeline.cam_regions import regions
from braincam.pipeline.cam_verdicts import verdicts
from braincam.summary_schema import update_summary, validate_cam_evaluation


def eval_dir(run_dir: str | Path, split: str) -> Path:
    """Where ``evaluate-cams`` writes its tables for a run and split."""
    return RunLayout(run_dir).cam_eval(split).root


def _write_tsv(frame: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, sep="\t", index=False))


# ------------------------------------------------------------------ perturbation, faithfulness


def perturbation(ctx: CamContext, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Imputing the CAM region vs random regions of its shape, with positive/negative controls."""
    from braincam.metrics.perturbation import RULE, control_checks, perturbation_check

    pick = subsample(len(ctx.images), cfg.max_images, ctx.generator)
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
            brain_masks=brain_pixels(ctx, pick),
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
            has = has[subsample(len(has), cfg.max_images, ctx.generator)]
            controls = control_checks(
                ctx.model,
                ctx.images[has],
                labels[has],
                truth[has],
                brain_masks=brain_pixels(ctx, has),
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


def faithfulness(ctx: CamContext, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Deletion / insertion AUCs per method, with the random-order curve as baseline."""
    from braincam.metrics.faithfulness import deletion_insertion

    pick = subsample(len(ctx.images), cfg.max_images, ctx.generator)
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
    ctx: CamContext, cfg: CamEvalConfig
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, np.ndarray]]:
    """Cascading model-parameter randomization (Adebayo et al.) per method.

    Besides the per-step table: per method the flag, the final similarities, the similarity of
    random pairs of original maps (Arun et al.'s chance level: two unrelated maps) and the mean
    curve; and the maps of the first images at every step (``sanity_maps.npz``).
    """
    from braincam.cam import compute_cams, get_method
    from braincam.data.references import ClassReferences
    from braincam.metrics.sanity import cascading_randomization, similarity
    from braincam.pipeline.explain import reference_batch

    pick = subsample(len(ctx.images), cfg.sanity_images, ctx.generator)
    x, t = ctx.images[pick], ctx.targets[pick]
    keep = min(SANITY_FIGURE_IMAGES, len(pick))
    frames, flags = [], {}
    figure: dict[str, np.ndarray] = {"images": x[:keep, 0].numpy()}
    reference = None
    if any(get_method(m).needs_reference for m in ctx.maps):  # the same reference as the maps'
        rows = ctx.table["store_row"].to_numpy()[pick.numpy()]
        reference = reference_batch(ClassReferences(ctx.store), rows, t, ctx.record)
    for method in ctx.maps:
        # the same layer(s), fusion and reference as the maps under test; one call for all
        # images (cascading_randomization's default), so the reference rows match the inputs
        options = {"reference": reference} if get_method(method).needs_reference else {}
        explain: Callable[..., Tensor] = lambda model, inputs, targets, m=method, o=options: (  # noqa: E731
            compute_cams(model, inputs, m, targets=targets, layer=cfg.layer, fusion=cfg.fusion, **o)
        )
        res = cascading_randomization(
            ctx.model,
            x,
            t,
            explain,
            generator=torch.Generator().manual_seed(cfg.seed),
            keep_maps=True,
            cascade=cfg.sanity_cascade,
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
            "cascade": cfg.sanity_cascade,
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


# ------------------------------------------------------------------------------ shortcut


def shortcut(ctx: CamContext, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per method (and a uniform map): heatmap mass outside the brain and in the head's rim
    against the area they cover; the shortcut alarm (:mod:`braincam.metrics.shortcut`)."""
    from braincam.metrics.shortcut import shortcut_alarm

    every = torch.arange(len(ctx.images))
    brain = brain_pixels(ctx, every)
    rows = ctx.table["store_row"].to_numpy()
    # Pixel spacing (mm) of the store's slices: the length of a pixel step in world space.
    spacing = float(np.median(np.linalg.norm(ctx.store.pixel_to_world[rows][:, :3, 0], axis=1)))
    width = max(1, round(cfg.rim_mm / spacing))
    candidates = {**ctx.maps, "baseline:uniform": torch.ones_like(brain, dtype=torch.float32)}
    section: dict[str, Any] = {"rim_mm": cfg.rim_mm, "pixel_mm": spacing, "methods": {}}
    table = []
    for method, maps in candidates.items():
        res = shortcut_alarm(maps, brain, width, margin=cfg.shortcut_margin)
        section["methods"][method] = res
        for where in ("outside_brain", "rim"):
            table.append({"model": ctx.model_name, "method": method, "where": where, **res[where]})
    alarms = [m for m, r in section["methods"].items() if r["alarm"]]
    section["alarm"] = bool(alarms)
    section["alarm_methods"] = alarms
    return pd.DataFrame(table), section


# --------------------------------------------------------------------------- consistency


def consistency(ctx: CamContext, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
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


# --------------------------------------------------------------------------------- driver
# Each family writes its tables into ``out`` and returns its part of the compact summary.


def _run_localization(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame = pd.concat([localization(ctx, cfg), localization_3d(ctx, cfg)], ignore_index=True)
    _write_tsv(frame, out.table("localization"))
    return frame.to_dict(orient="records")


def _run_localization_effects(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame = localization_effects(ctx, cfg)
    _write_tsv(frame, out.table("localization_effects"))
    return frame.to_dict(orient="records")


def _run_lesion_hits(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame, section = lesion_hit_rates(ctx, cfg)
    _write_tsv(frame, out.table("lesion_hits"))
    return section


def _run_perturbation(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame, section = perturbation(ctx, cfg)
    _write_tsv(frame, out.table("perturbation"))
    return section


def _run_faithfulness(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame, curves = faithfulness(ctx, cfg)
    _write_tsv(frame, out.table("faithfulness"))
    write_atomic(out.curves, lambda tmp: np.savez(tmp, **curves))
    return frame.to_dict(orient="records")


def _run_sanity(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame, flags, figure = sanity(ctx, cfg)
    _write_tsv(frame, out.table("sanity"))
    write_atomic(out.sanity_maps, lambda tmp: np.savez(tmp, **figure))
    return flags


def _run_shortcut(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame, section = shortcut(ctx, cfg)
    _write_tsv(frame, out.table("shortcut"))
    return section


def _run_consistency(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    frame, freq = consistency(ctx, cfg)
    _write_tsv(frame, out.table("consistency"))
    write_atomic(out.frequency, lambda tmp: np.savez(tmp, **freq))
    means = frame.groupby(["level", "method"], dropna=False)["mean_r"].mean().reset_index()
    return means.to_dict(orient="records")


def _run_regions(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> Any:
    tables = regions(ctx, cfg, out)
    for name, frame in tables.items():
        _write_tsv(frame, out.table(name))
    top = tables["lobe_ranking"].groupby(["method", "label"]).head(3)
    return {"atlas": tables["atlas"].iloc[0].to_dict(), "top_lobes": top.to_dict(orient="records")}


#: Every family, in the order they run; the names are ``cams.checks``' vocabulary.
FAMILIES: dict[str, Callable[[CamContext, CamEvalConfig, CamEvalLayout], Any]] = {
    "localization": _run_localization,
    "lesion_hits": _run_lesion_hits,
    "localization_effects": _run_localization_effects,
    "perturbation": _run_perturbation,
    "faithfulness": _run_faithfulness,
    "sanity": _run_sanity,
    "shortcut": _run_shortcut,
    "consistency": _run_consistency,
    "regions": _run_regions,
}


def family_files(name: str, out: CamEvalLayout) -> list[Path]:
    """The files family ``name`` writes into ``out`` (removed when it is skipped, so that the
    report, which reads some of them from disk, never shows a stale result)."""
    files = [out.table(name)]
    extra = {
        "faithfulness": [out.curves],
        "sanity": [out.sanity_maps],
        "consistency": [out.frequency],
    }
    files += extra.get(name, [])
    if name == "regions":
        tables = ("lobes", "region_ranking", "lobe_ranking", "region_differences", "atlas")
        files += [out.table(t) for t in tables] + sorted(out.root.glob("mni_mean_*.nii.gz"))
    return files


#: The families that score volumes (a volume store) so far; the others take 2-D slices.
VOLUME_FAMILIES = ("localization", "lesion_hits", "regions")


def evaluate_cams(
    run_dir: str | Path, config: CamEvalConfig = CamEvalConfig(), *, progress: bool = True
) -> dict[str, Any]:
    """Run the heatmap checks ``config.checks`` for one run and split; write TSVs and the
    summary section (a family left out of ``checks`` is listed under ``skipped``).

    Returns the compact summary (also written to ``RUN/cam_eval/<split>/summary.json`` and to
    the work directory's ``summary.json`` under ``cam_evaluation[<run name>]``).
    """
    from braincam.progress import make_progress

    run_dir = Path(run_dir)
    out = RunLayout(run_dir).cam_eval(config.split)
    out.root.mkdir(parents=True, exist_ok=True)
    out.summary.unlink(missing_ok=True)  # incomplete until rewritten at the end
    ctx = load_context(run_dir, config, progress)
    # A family left out of ``checks`` is recorded as skipped (its section null, the report says
    # "not run"); one that does not apply to the data (below) is simply absent.
    skipped = [k for k in FAMILIES if k not in config.checks]
    for name in skipped:
        for path in family_files(name, out):
            path.unlink(missing_ok=True)
    families = {k: f for k, f in FAMILIES.items() if k in config.checks}
    if not has_lesion_masks(ctx):  # the ground truth is an effect region, or there is none
        families.pop("lesion_hits", None)
    if not has_effect_masks(ctx):  # no atrophy / ventricle masks next to the stored masks
        families.pop("localization_effects", None)
    if is_volume_context(ctx):
        families = {k: f for k, f in families.items() if k in VOLUME_FAMILIES}
    summary: dict[str, Any] = {
        "model": ctx.model_name,
        "split": config.split,
        "config": config.model_dump(),
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
    for name in skipped:
        summary[name] = None
    summary["verdicts"] = verdicts(summary, tuple(ctx.maps))
    summary["seconds"] = seconds
    summary["skipped"] = skipped
    summary = to_jsonable(summary)
    validate_cam_evaluation(summary)  # typed before anything is written
    write_json(out.summary, summary)
    work_summary = WorkLayout(ctx.record["work_dir"]).summary
    section = read_json(work_summary).get("cam_evaluation", {}) if work_summary.is_file() else {}
    section[run_dir.name] = summary
    update_summary(work_summary.parent, "cam_evaluation", section)
    return summary
