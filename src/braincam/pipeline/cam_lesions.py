"""``evaluate-cams``, lesion family: the lesion-level hit rate by lesion size.

Scored only when the ground truth is a lesion mask (``*_desc-lesion_mask`` files,
:func:`braincam.imaging.groundtruth.is_lesion_mask`: a structural cohort prepared with
``mask_desc: lesion``, the structural default); an effect region is one blob, not lesions. The
metric is :mod:`braincam.metrics.lesions`. Two levels, as for localization:

- ``slice``: the 2-D lesions of every split slice that cuts one (a lesion crossing five slices
  counts five times), sized with the store's pixel spacing; on a volume store, the 3-D lesions of
  each volume on the store grid (level ``volume``);
- ``volume``: the 3-D lesions of each subject's native mask against the maps back-projected onto
  that grid (:func:`~braincam.pipeline.cam_localization.localization_3d`'s inputs).

Every method is reported next to the uniform and the seeded random map
(:func:`braincam.metrics.localization.baseline_maps`), overall and per size bin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from braincam.imaging.groundtruth import EFFECT_MASK_DESCS, is_lesion_mask, sibling_mask
from braincam.pipeline.cam_context import CamContext, is_volume_context
from braincam.pipeline.cam_localization import _mask_on_source_grid, native_maps

if TYPE_CHECKING:
    from braincam.pipeline.evaluate_cams import CamEvalConfig

#: How the summary states the metric (the report prints it under the table).
RULE = (
    "a lesion (connected component of the mask, 8-/26-connected, per slice or per volume) is hit "
    "when the map holds a local maximum (equal to the maximum of its 3×3(×3) neighbourhood, flat "
    "tops counted, shelves not) inside it that is strictly above the map's (K+1)-th largest "
    "value, K = the sample's mask voxels; size = equivalent diameter (circle or sphere of the "
    "lesion's area or volume)"
)


def has_lesion_masks(ctx: CamContext) -> bool:
    """True when a subject of the split has a ground-truth mask named as a lesion mask."""
    subjects = ctx.store.meta.get("subjects", {})
    for pid in ctx.table["participant_id"].unique():
        path = (subjects.get(pid) or {}).get("mask")
        if path and is_lesion_mask(path):
            return True
    return False


def has_effect_masks(ctx: CamContext) -> bool:
    """True when a subject of the split (slice store) has an atrophy or ventricle mask next to
    its stored mask (:func:`~braincam.pipeline.cam_localization.localization_effects`)."""
    if is_volume_context(ctx):
        return False
    subjects = ctx.store.meta.get("subjects", {})
    for pid in ctx.table["participant_id"].unique():
        path = (subjects.get(pid) or {}).get("mask")
        for desc in EFFECT_MASK_DESCS if path else ():
            sibling = sibling_mask(path, desc)
            if sibling is not None and sibling.is_file():
                return True
    return False


def _with_baselines(maps: dict[str, Tensor], ctx: CamContext) -> dict[str, Tensor]:
    from braincam.metrics.localization import baseline_maps

    like = next(iter(maps.values()))
    return {
        **maps,
        "baseline:uniform": baseline_maps(like, "uniform"),
        "baseline:random": baseline_maps(like, "random", ctx.generator),
    }


def _column_norms(matrices: np.ndarray, ndim: int) -> Tensor:
    """Voxel edge lengths (mm) per sample: the lengths of the first ``ndim`` columns of each
    voxel-to-world matrix."""
    return torch.from_numpy(np.linalg.norm(matrices[:, :3, :ndim], axis=1).astype(np.float64))


def _store_level(ctx: CamContext) -> dict[str, dict[str, Tensor]]:
    """Per method, the lesions of the split's store samples (slices, or store volumes)."""
    from braincam.metrics.lesions import lesion_hits

    if ctx.store.masks is None:
        return {}
    rows = ctx.table["store_row"].to_numpy()
    masks = torch.from_numpy(np.asarray(ctx.store.masks[rows]) > 0)
    has = masks.flatten(1).any(1)
    if not has.any():
        return {}
    if is_volume_context(ctx):
        spacing = _column_norms(np.asarray(ctx.store.affines[rows]), 3)
    else:
        spacing = _column_norms(np.asarray(ctx.store.pixel_to_world[rows]), 2)
    candidates = _with_baselines({m: maps[has] for m, maps in ctx.maps.items()}, ctx)
    return {name: lesion_hits(maps, masks[has], spacing[has]) for name, maps in candidates.items()}


def _native_level(ctx: CamContext) -> dict[str, dict[str, Tensor]]:
    """Per method, the 3-D lesions of every subject's native mask against its back-projected
    maps (slice stores only: a volume store's maps are scored by :func:`_store_level`)."""

    from braincam.metrics.lesions import lesion_hits

    per_method: dict[str, list[dict[str, Tensor]]] = {}
    for pid in sorted(ctx.table["participant_id"].unique()):
        mask_path = ctx.store.meta["subjects"][pid].get("mask")
        if not mask_path:
            continue
        mask = _mask_on_source_grid(ctx.store, pid, mask_path)
        if not mask.any():
            continue
        affine, _ = ctx.store.grid(pid, "source")
        spacing = _column_norms(np.asarray(affine)[None], 3)
        for name, m in _with_baselines(native_maps(ctx, pid), ctx).items():
            per_method.setdefault(name, []).append(lesion_hits(m, mask, spacing))
    return {
        name: {k: torch.cat([t[k] for t in tables]) for k in tables[0]}
        for name, tables in per_method.items()
    }


def lesion_hit_rates(ctx: CamContext, cfg: CamEvalConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The hit-rate table (one row per model, method, level and size bin) and the summary
    section (``levels[level][method][bin]``: ``low_mm``, ``high_mm``, ``n_lesions``, ``n_hit``,
    ``hit_rate``)."""
    from braincam.metrics.lesions import DEFAULT_BINS_MM, hit_rate_by_size

    if is_volume_context(ctx):
        levels = {"volume": _store_level(ctx)}
    else:
        levels = {"slice": _store_level(ctx), "volume": _native_level(ctx)}
    section: dict[str, Any] = {
        "rule": RULE,
        "connectivity": "full",
        "bins_mm": list(DEFAULT_BINS_MM),
        "levels": {},
    }
    records = []
    for level, per_method in levels.items():
        if not per_method:
            continue
        section["levels"][level] = {}
        for method, lesions in per_method.items():
            rows = hit_rate_by_size(lesions, DEFAULT_BINS_MM)
            section["levels"][level][method] = {
                str(r["bin"]): {k: v for k, v in r.items() if k != "bin"} for r in rows
            }
            records += [
                {"model": ctx.model_name, "method": method, "level": level, **r} for r in rows
            ]
    return pd.DataFrame(records), section
