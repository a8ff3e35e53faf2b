"""``evaluate-cams``, localization family: do the maps point at the ground-truth region?

On the slices (the maps of ``explain``) and on the volumes (the maps back-projected onto each
subject's grid), each method scored next to a uniform and a random baseline map. On a volume
store the maps are volumes already: they are scored once, against the store's masks on the same
grid (level ``volume``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from braincam.pipeline.cam_context import CamContext, is_volume_context

if TYPE_CHECKING:
    from braincam.pipeline.evaluate_cams import CamEvalConfig


def _score_candidates(
    candidates: dict[str, Tensor],
    masks: Tensor,
    cfg: CamEvalConfig,
    tolerance: float | None,
    support: Tensor | None = None,
) -> dict[str, dict[str, Tensor]]:
    """Localization tables of several map sets against the same masks (``support``: the voxels
    where the maps are defined, see :func:`~braincam.metrics.localization.localization_table`).

    The mask-only work (the tolerant pointing game's distance transform) is done once for all
    of them. (Each map set is scored on its own: one batch of all would multiply the memory.)
    """
    from braincam.metrics.localization import default_tolerance, localization_table, tolerance_zone

    if tolerance is None:
        tolerance = default_tolerance(tuple(masks.shape[1:]))
    zone = tolerance_zone(masks, tolerance)
    return {
        name: localization_table(
            maps, masks, threshold=cfg.threshold, tolerance=tolerance, zone=zone, support=support
        )
        for name, maps in candidates.items()
    }


def localization(ctx: CamContext, cfg: CamEvalConfig) -> pd.DataFrame:
    """Localization metrics on slices (volume store: volumes) with ground-truth mask pixels,
    per method and baseline."""
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
    level = "volume" if is_volume_context(ctx) else "slice"
    return pd.DataFrame(
        [
            {"model": ctx.model_name, "method": name, "level": level, **summarize_table(t)}
            for name, t in tables.items()
        ]
    )


def localization_3d(ctx: CamContext, cfg: CamEvalConfig) -> pd.DataFrame:
    """Localization of the back-projected 3D maps against each subject's native mask.

    Per subject the mask is read once and every method and baseline is scored against it
    (sharing its distance transform); the per-subject rows are then averaged per method. A
    back-projected map is defined only on the voxels its slices pass through: the rank metrics
    (AUROC, rank accuracy) rank those voxels (:func:`covered_voxels`); a mask voxel between
    slices has no score, and counting it as the lowest would cap the AUROC by the slice
    spacing rather than measure the map.
    """

    from braincam.metrics.localization import baseline_maps, summarize_table

    if is_volume_context(ctx):
        return pd.DataFrame()  # the maps are the volumes: scored by localization()
    per_method: dict[str, list[dict[str, Tensor]]] = {}
    for pid in sorted(ctx.table["participant_id"].unique()):
        mask_path = ctx.store.meta["subjects"][pid].get("mask")
        if not mask_path:
            continue
        mask = _mask_on_source_grid(ctx.store, pid, mask_path)
        if not mask.any():
            continue
        candidates = native_maps(ctx, pid)
        candidates["baseline:uniform"] = baseline_maps(mask.float(), "uniform")
        candidates["baseline:random"] = baseline_maps(mask.float(), "random", ctx.generator)
        covered = covered_voxels(ctx, pid)
        for name, table in _score_candidates(candidates, mask, cfg, None, covered).items():
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


def localization_effects(ctx: CamContext, cfg: CamEvalConfig) -> pd.DataFrame:
    """Volume-level localization against each further effect's ground truth of a structural
    cohort (GM atrophy, ventricle enlargement: :data:`~braincam.imaging.groundtruth.
    EFFECT_MASK_DESCS`), found next to each subject's stored mask.

    The store holds one mask per slice (``prepare.mask_desc``), so only the back-projected maps
    are scored against the other effects: per subject, every effect mask that exists and is not
    empty (a group without the effect has an empty one), each method next to the uniform and
    the random map. Rows as :func:`localization_3d`'s plus ``ground_truth`` (the ``desc``).
    Empty for a volume store and for cohorts without such masks.
    """

    from braincam.imaging.groundtruth import EFFECT_MASK_DESCS, sibling_mask
    from braincam.metrics.localization import baseline_maps, summarize_table

    if is_volume_context(ctx):
        return pd.DataFrame()
    per_effect: dict[tuple[str, str], list[dict[str, Tensor]]] = {}
    for pid in sorted(ctx.table["participant_id"].unique()):
        mask_path = ctx.store.meta["subjects"][pid].get("mask")
        if not mask_path:
            continue
        found = {d: sibling_mask(mask_path, d) for d in EFFECT_MASK_DESCS}
        effects = {d: p for d, p in found.items() if p is not None and p.is_file()}
        if not effects:
            continue
        maps = native_maps(ctx, pid)
        covered = covered_voxels(ctx, pid)
        for desc, path in effects.items():
            mask = _mask_on_source_grid(ctx.store, pid, str(path))
            if not mask.any():
                continue
            candidates = {
                **maps,
                "baseline:uniform": baseline_maps(mask.float(), "uniform"),
                "baseline:random": baseline_maps(mask.float(), "random", ctx.generator),
            }
            for name, table in _score_candidates(candidates, mask, cfg, None, covered).items():
                per_effect.setdefault((desc, name), []).append(table)
    records = []
    for (desc, method), per_subject in per_effect.items():
        merged = {k: torch.cat([t[k] for t in per_subject]) for k in per_subject[0]}
        records.append(
            {
                "model": ctx.model_name,
                "method": method,
                "level": "volume",
                "ground_truth": desc,
                **summarize_table(merged),
            }
        )
    return pd.DataFrame(records)


def covered_voxels(ctx: CamContext, pid: str) -> Tensor:
    """The voxels of subject ``pid``'s native grid that its explained slices pass through (where
    its back-projected maps are defined: the same back-projection as ``explain``'s NIfTI), as
    ``(1, *grid)`` bool."""
    rows = ctx.table.loc[ctx.table["participant_id"] == pid, "store_row"].to_numpy()
    ones = np.ones((len(rows), *ctx.images.shape[-2:]), dtype=np.float32)
    img = ctx.store.backproject(ones, pid, rows=rows)
    return torch.from_numpy(np.isfinite(np.asarray(img.dataobj)))[None]


def native_maps(ctx: CamContext, pid: str) -> dict[str, Tensor]:
    """Each method's map of subject ``pid`` back-projected to its native grid (the NIfTI that
    ``explain`` wrote), as ``(1, *grid)`` float32."""
    import nibabel as nib

    heatmaps = ctx.explained.layout
    return {
        method: torch.from_numpy(
            np.asarray(nib.load(heatmaps.nifti_map(pid, method)).dataobj, dtype=np.float32)
        )[None]
        for method in ctx.maps
    }


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
