"""Localization metrics: does a heatmap point at the ground-truth region?

Every function takes ``maps`` of shape ``(N, *spatial)`` with 2 or 3 spatial dimensions and works
on the whole batch at once, on the maps' device, through one code path for 2D and 3D. Masks have
the same shape as the maps (bool, or numbers that are all 0 or 1).

Samples whose mask is empty get NaN: a metric against an empty region is undefined, and callers
(``localization_table`` / ``summarize_table``) exclude and count them instead of scoring them.

The thresholded region and the paper's box come from :mod:`braincam.metrics.boxes`; input checks
from :mod:`braincam.metrics.maps`. Two steps leave torch for SciPy on the CPU because no batched
torch equivalent exists: connected components (``scipy.ndimage.label``, in ``boxes``) and the
Euclidean distance to a mask used by the tolerant pointing game
(``scipy.ndimage.distance_transform_edt``). Both run once on the whole batch (the batch axis is
made unreachable, see below), not in a per-sample Python loop.

Values documented for a constant map (no localization information at all): pointing game =
fraction of the field inside the (tolerance-dilated) mask, relevance mass = mask fraction,
relevance rank accuracy = mask fraction, AUROC = 0.5, thresholded region and box = the whole
field. A map that is zero or negative everywhere counts as constant.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from scipy import ndimage
from torch import Tensor

from braincam.errors import InputError
from braincam.metrics.boxes import (
    Connectivity,
    box_masks,
    boxes_from_regions,
    check_threshold,
    largest_components,
    occupied_box,
    thresholded,
)
from braincam.metrics.maps import check_maps, check_masks

__all__ = [
    "auroc",
    "baseline_maps",
    "default_tolerance",
    "fixed_point_ceiling",
    "iou_box",
    "iou_threshold",
    "localization_table",
    "pointing_game",
    "relevance_mass",
    "relevance_rank_accuracy",
    "summarize_table",
    "tolerance_zone",
]


def _nan_where_empty(values: Tensor, masks: Tensor) -> Tensor:
    empty = masks.flatten(1).sum(1) == 0
    return values.masked_fill(empty, float("nan"))


# --------------------------------------------------------------------------- metrics


def default_tolerance(spatial_shape: tuple[int, ...]) -> float:
    """Zhang et al.'s pointing-game tolerance, 15 px at 224², scaled to the largest side."""
    return 15.0 * max(spatial_shape) / 224.0


def tolerance_zone(masks: Tensor, tolerance: float) -> Tensor:
    """Voxels whose Euclidean distance to the nearest mask voxel is ≤ ``tolerance`` (bool).

    The tolerant pointing game's hit zone. It depends on the masks only, so callers scoring
    several map sets against the same masks compute it once and pass it as ``zone=``.
    """
    if tolerance < 0:
        raise InputError("tolerance must be ≥ 0 (voxels)", value=tolerance)
    if tolerance == 0:
        return masks
    if not bool(masks.any()):
        return masks
    # Nothing farther than the tolerance from every mask voxel can be in the zone: the
    # transform only runs on the masks' bounding box grown by the tolerance (exact, and a
    # small part of a volume when the region is).
    box = occupied_box(masks, math.ceil(tolerance))
    crop = masks[box]
    spatial = crop.shape[1:]
    # The batch axis gets a spacing larger than any in-sample distance + tolerance, so the
    # nearest mask voxel found is always in the same sample (one scipy call for the batch).
    far = float(sum(spatial)) + tolerance + 1.0
    dist = ndimage.distance_transform_edt(
        ~crop.cpu().numpy(), sampling=(far,) + (1.0,) * len(spatial)
    )
    zone = torch.zeros_like(masks, dtype=torch.bool)
    zone[box] = torch.from_numpy(dist <= tolerance).to(masks.device)
    return zone


def pointing_game(
    maps: Tensor,
    masks: Tensor,
    tolerance: float = 0.0,
    ties: Literal["fraction", "any"] = "fraction",
    *,
    zone: Tensor | None = None,
) -> Tensor:
    """Pointing game (Zhang et al.): is the map's maximum inside the mask? → float ``(N,)``.

    ``tolerance`` (voxels, Euclidean): a hit also counts when the maximum lies within that
    distance of a mask voxel (0 = strict). Ties in the maximum: ``"fraction"`` scores the
    fraction of tied maximal voxels that hit (the expected hit under a random choice among them;
    a constant map scores the fraction of the field that hits, i.e. chance); ``"any"`` scores 1 if
    any tied maximum hits (Quantus' rule, which gives a constant map 1). Without ties both are
    0 or 1. Empty masks give NaN. ``zone``: :func:`tolerance_zone` of ``masks`` already computed
    for this ``tolerance`` (it is the costly part; the caller vouches that it matches).
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    if tolerance < 0:
        raise InputError("tolerance must be ≥ 0 (voxels)", value=tolerance)
    if ties not in ("fraction", "any"):
        raise InputError("ties must be 'fraction' or 'any'", value=ties)
    zone = _resolve_zone(masks, float(tolerance), zone)
    score = _pointing(maps.flatten(1), zone.flatten(1), ties)
    return _nan_where_empty(score.to(maps.dtype), masks)


def fixed_point_ceiling(masks: Tensor, tolerance: float = 0.0) -> float:
    """The best pointing game of a map that points at the same voxel in every image: the largest
    share of the (non-empty) masks that hold one voxel (within ``tolerance`` of it, as in
    :func:`pointing_game`).

    A diagnostic bound, not a baseline: it reads the truth. A model that learned *where* the
    group effect lies (a fixed spatial prior) cannot beat it; only a map that follows each
    image's own effect can, so a target above it asks for per-image localization. Where the
    effect sits at one place in every image it is 1; where the masks never overlap, 1/N.
    """
    masks = check_masks(masks, masks.float())
    if tolerance < 0:
        raise InputError("tolerance must be ≥ 0 (voxels)", value=tolerance)
    masks = masks[masks.flatten(1).any(1)]
    if len(masks) == 0:
        return math.nan
    zone = _resolve_zone(masks, float(tolerance), None)
    return zone.flatten(1).float().mean(0).max().item()


def _resolve_zone(masks: Tensor, tolerance: float, zone: Tensor | None) -> Tensor:
    """The caller's precomputed hit zone (shape-checked, on the masks' device), else computed."""
    if zone is None:
        return tolerance_zone(masks, tolerance)
    if tuple(zone.shape) != tuple(masks.shape):
        raise InputError(f"zone must have the masks' shape {tuple(masks.shape)}", value=zone.shape)
    return zone.to(masks.device)


def _pointing(flat: Tensor, hit_zone: Tensor, ties: str) -> Tensor:
    is_max = flat == flat.amax(1, keepdim=True)
    hits = (is_max & hit_zone).sum(1)
    if ties == "fraction":
        return hits.double() / is_max.sum(1).double()
    return (hits > 0).double()


def relevance_mass(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of the map's positive mass inside the mask (Arras et al.) → ``(N,)``.

    Negative values are clipped to 0 first (evidence against the class is not mass). A map with
    no positive mass is constant and gets the documented constant-map value, the mask fraction.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    score = _mass(maps.flatten(1), masks.flatten(1))
    return _nan_where_empty(score.to(maps.dtype), masks)


def _mass(flat: Tensor, m: Tensor) -> Tensor:
    pos = flat.clamp_min(0).double()
    total = pos.sum(1)
    inside = (pos * m).sum(1)
    fraction = m.double().mean(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), fraction)


def relevance_rank_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Fraction of the ``K = |mask|`` highest-valued voxels that lie inside the mask → ``(N,)``.

    Ties straddling the K-th value are shared in proportion (the expected score under a random
    order among them), so a constant map scores the mask fraction, not an artefact of sorting.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    flat = maps.flatten(1)
    score = _rank_accuracy(flat, masks.flatten(1), flat.sort(1).values)
    return _nan_where_empty(score.to(maps.dtype), masks)


def _rank_accuracy(flat: Tensor, m: Tensor, ascending: Tensor) -> Tensor:
    """Core of :func:`relevance_rank_accuracy`; ``ascending`` = each row of ``flat`` sorted."""
    k = m.sum(1)  # (N,)
    last = flat.shape[1] - 1
    # value of the K-th best voxel: position P − K of the ascending order
    kth = ascending.gather(1, (last - (k - 1).clamp_min(0))[:, None])
    above, tied = flat > kth, flat == kth
    n_above = above.sum(1).double()
    in_above = (above & m).sum(1).double()
    n_tied = tied.sum(1).double()
    in_tied = (tied & m).sum(1).double()
    kd = k.double()
    return (in_above + (kd - n_above) * in_tied / n_tied) / kd.clamp_min(1)


def _iou(a: Tensor, b: Tensor) -> Tensor:
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.nan)


def iou_threshold(
    maps: Tensor,
    masks: Tensor,
    threshold: float = 0.2,
    largest_component: bool = False,
    connectivity: Connectivity = "full",
) -> Tensor:
    """IoU between the map thresholded at ``threshold`` × max and the mask → ``(N,)``."""
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    regions = thresholded(maps, check_threshold(threshold))
    if largest_component:
        regions = largest_components(regions, connectivity)
    return _nan_where_empty(_iou(regions, masks).to(maps.dtype), masks)


def iou_box(
    maps: Tensor,
    masks: Tensor,
    threshold: float = 0.2,
    against: Literal["mask", "box"] = "mask",
    connectivity: Connectivity = "full",
) -> Tensor:
    """IoU of the map's box (:func:`bounding_boxes`, paper rule) with the mask → ``(N,)``.

    ``against="box"`` compares with the mask's own bounding box instead, the convention of
    weakly supervised detection benchmarks (Zhou et al.), which only annotate boxes.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    if against not in ("mask", "box"):
        raise InputError("against must be 'mask' or 'box'", value=against)
    regions = thresholded(maps, check_threshold(threshold))
    score = _iou_box(largest_components(regions, connectivity), masks, against)
    return _nan_where_empty(score.to(maps.dtype), masks)


def _iou_box(component: Tensor, masks: Tensor, against: str) -> Tensor:
    """IoU of the box around ``component`` (the paper's largest component) with the truth."""
    spatial = tuple(masks.shape[1:])
    pred = box_masks(boxes_from_regions(component), spatial)
    truth = masks if against == "mask" else box_masks(boxes_from_regions(masks), spatial)
    return _iou(pred, truth)


def auroc(maps: Tensor, masks: Tensor) -> Tensor:
    """Area under the ROC curve of the map as a voxel score for the mask → ``(N,)``.

    Rank-based (Mann-Whitney U with mid-ranks for ties, which equals the trapezoidal ROC area
    that scikit-learn computes), batched through a sort and ``searchsorted``. NaN when the mask
    is empty or covers every voxel (no negatives).
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    ascending, order = maps.flatten(1).sort(1)
    return _auroc(masks.flatten(1), ascending, order).to(maps.dtype)


def _auroc(m: Tensor, ascending: Tensor, order: Tensor) -> Tensor:
    """Core of :func:`auroc` from each row sorted ascending (values and their positions).

    Mid-rank (1-based) of a voxel = (#smaller + #smaller-or-equal + 1) / 2. In sorted order a tie
    group occupies positions [start, end), so #smaller = start and #smaller-or-equal = end: a
    running maximum of group starts and a running minimum (from the right) of group ends give
    both for every voxel in linear time. Float64: rank sums over a volume exceed float32's
    exact integers.
    """
    n, p = ascending.shape
    pos = torch.arange(p, device=ascending.device).expand(n, p)
    change = ascending[:, 1:] != ascending[:, :-1]
    edge = torch.ones((n, 1), dtype=torch.bool, device=ascending.device)
    starts = torch.where(torch.cat([edge, change], 1), pos, 0).cummax(1).values
    ends_at = torch.where(torch.cat([change, edge], 1), pos + 1, p)
    ends = ends_at.flip(1).cummin(1).values.flip(1)
    ranks = (starts + ends + 1).double() / 2
    in_mask = m.gather(1, order)
    n_pos = m.sum(1).double()
    n_neg = p - n_pos
    u = (ranks * in_mask).sum(1) - n_pos * (n_pos + 1) / 2
    return torch.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg).clamp_min(1), torch.nan)


# --------------------------------------------------------------------------- tables


def localization_table(
    maps: Tensor,
    masks: Tensor,
    *,
    threshold: float = 0.2,
    tolerance: float | None = None,
    connectivity: Connectivity = "full",
    zone: Tensor | None = None,
    support: Tensor | None = None,
) -> dict[str, Tensor]:
    """Every localization metric per sample, as ``(N,)`` tensors keyed by name.

    Keys: ``has_mask`` (bool), ``mask_fraction`` (the chance level of mass and rank accuracy),
    ``pointing_game`` (strict), ``pointing_game_tolerant`` (``tolerance`` voxels; default
    :func:`default_tolerance`; recorded in the ``tolerance`` column), ``relevance_mass``,
    ``relevance_rank_accuracy``, ``iou_threshold``, ``iou_box``, ``auroc``. Samples without
    mask voxels are NaN everywhere; :func:`summarize_table` excludes and counts them.
    ``zone``: ``tolerance_zone(masks, tolerance)`` when the caller scores several map sets
    against the same masks (computed here otherwise). ``support``: the voxels where each map is
    defined (a map back-projected from slices covers only the voxels its slices pass through);
    rank accuracy and AUROC then rank those voxels only, since an undefined voxel has no score
    to rank. Default: every voxel.
    """
    maps = check_maps(maps).contiguous()
    masks = check_masks(masks, maps).contiguous()
    threshold = check_threshold(threshold)
    if tolerance is None:
        tolerance = default_tolerance(tuple(maps.shape[1:]))
    zone = _resolve_zone(masks, float(tolerance), zone)
    # Validated once here; each metric's core then works on the flat views (one sort shared by
    # rank accuracy and AUROC, one thresholding shared by both IoUs).
    flat, m = maps.flatten(1), masks.flatten(1)
    empty = ~m.any(1)
    ascending, order = flat.sort(1)
    regions = thresholded(maps, threshold)
    component = largest_components(regions, connectivity)

    if support is None:
        rank_accuracy, auc = _rank_accuracy(flat, m, ascending), _auroc(m, ascending, order)
    else:
        support = check_masks(support, maps, "support").flatten(1)
        rank_accuracy, auc = _ranked_within(flat, m, support)

    def nan_empty(values: Tensor) -> Tensor:
        return values.to(maps.dtype).masked_fill(empty, float("nan"))

    return {
        "has_mask": ~empty,
        "mask_fraction": nan_empty(m.to(maps.dtype).mean(1)),
        "pointing_game": nan_empty(_pointing(flat, m, "fraction")),
        "pointing_game_tolerant": nan_empty(_pointing(flat, zone.flatten(1), "fraction")),
        "tolerance": torch.full((len(maps),), float(tolerance), dtype=maps.dtype),
        "relevance_mass": nan_empty(_mass(flat, m)),
        "relevance_rank_accuracy": nan_empty(rank_accuracy),
        "iou_threshold": nan_empty(_iou(regions, masks)),
        "iou_box": nan_empty(_iou_box(component, masks, "mask")),
        "auroc": auc.to(maps.dtype),
    }


def _ranked_within(flat: Tensor, m: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
    """Rank accuracy and AUROC of each row over its ``support`` voxels only (rows differ in
    support, so one at a time)."""
    accuracy, auc = [], []
    for f, mm, keep in zip(flat, m, support, strict=True):
        if not keep.any():  # nothing defined: nothing to rank
            accuracy.append(f.new_full((1,), float("nan"), dtype=torch.float64))
            auc.append(f.new_full((1,), float("nan"), dtype=torch.float64))
            continue
        f, mm = f[keep][None], mm[keep][None]
        ascending, order = f.sort(1)
        accuracy.append(_rank_accuracy(f, mm, ascending))
        auc.append(_auroc(mm, ascending, order))
    return torch.cat(accuracy), torch.cat(auc)


def summarize_table(table: dict[str, Tensor]) -> dict[str, float]:
    """Mean of each metric over the samples with mask voxels, plus the counts.

    ``n_scored`` samples had mask voxels; ``n_excluded`` had none and are not averaged (a slice
    that misses the effect region says nothing about localization).
    """
    if "has_mask" not in table:
        raise InputError(
            "table must come from localization_table (no 'has_mask' key)", value=sorted(table)
        )
    keep = table["has_mask"].bool()
    out: dict[str, float] = {
        "n_scored": int(keep.sum()),
        "n_excluded": int((~keep).sum()),
    }
    for name, values in table.items():
        if name == "has_mask":
            continue
        v = values[keep].double()
        v = v[~torch.isnan(v)]
        out[name] = float(v.mean()) if v.numel() else float("nan")
    return out


def baseline_maps(
    like: Tensor,
    kind: Literal["uniform", "random"],
    generator: torch.Generator | None = None,
) -> Tensor:
    """Chance-level maps shaped like ``like``: all ones, or i.i.d. uniform noise.

    Scored with the same metrics, they give each figure its chance row. ``generator`` (on the
    maps' device) makes the random maps reproducible.
    """
    like = check_maps(like, "like")
    if kind == "uniform":
        return torch.ones_like(like)
    if kind == "random":
        return torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    raise InputError("kind must be 'uniform' or 'random'", value=kind)
