"""The dMRI study's localization box: threshold a map, keep its largest component, box it.

Maps are tensors ``(N, *spatial)`` (2 or 3 spatial dimensions), processed as a batch through one
code path. Connected components leave torch for SciPy on the CPU (``scipy.ndimage.label``, no
batched torch equivalent), once for the whole batch: the batch axis is made unreachable in the
structuring element, never a per-sample Python loop.

Thresholding min-max normalizes each map with braincam's one rule
(:func:`braincam.cam.postprocess.normalize_maps`); a constant map's region — and so its box — is
the whole field.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from braincam.cam.postprocess import normalize_maps
from braincam.errors import InputError
from braincam.metrics.maps import check_maps

__all__ = [
    "Connectivity",
    "bounding_boxes",
    "box_masks",
    "boxes_from_regions",
    "check_threshold",
    "largest_components",
    "occupied_box",
    "threshold_regions",
    "thresholded",
]

Connectivity = Literal["full", "face"]


def check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise InputError(
            "threshold must be in [0, 1] (a fraction of the map's maximum)", value=threshold
        )
    return float(threshold)


def threshold_regions(maps: Tensor, threshold: float = 0.2) -> Tensor:
    """Voxels whose min-max normalized value is ≥ ``threshold`` (default 20 % of the max).

    A constant map's region is the whole field: all its voxels equal its maximum, so they all
    pass any threshold ≤ 1 — the "localized region" of a map without information is everything.
    """
    return thresholded(check_maps(maps), check_threshold(threshold))


def thresholded(maps: Tensor, threshold: float) -> Tensor:
    """:func:`threshold_regions` on maps already checked and a valid threshold (no second
    finiteness pass)."""
    # braincam's one normalization (cam.postprocess.normalize_maps) sends a constant map to 0;
    # here a constant map's region must be the whole field (see threshold_regions), so constant
    # maps are set to pass explicitly rather than through their normalized value.
    flat = maps.flatten(1)
    constant = (flat == flat[:, :1]).all(1).view((-1,) + (1,) * (maps.ndim - 1))
    return (normalize_maps(maps) >= threshold) | constant


def _structure(spatial_ndim: int, connectivity: Connectivity) -> np.ndarray:
    if connectivity not in ("full", "face"):
        raise InputError("connectivity must be 'full' or 'face'", value=connectivity)
    rank = spatial_ndim if connectivity == "full" else 1
    inner = ndimage.generate_binary_structure(spatial_ndim, rank)
    # Only the middle plane along the batch axis is set: components never join across samples,
    # so the whole batch is labelled in one scipy call instead of a per-sample loop.
    structure = np.zeros((3, *inner.shape), dtype=bool)
    structure[1] = inner
    return structure


def largest_components(regions: Tensor, connectivity: Connectivity = "full") -> Tensor:
    """Keep each sample's largest connected component of a boolean ``(N, *spatial)`` tensor.

    ``connectivity="full"`` joins diagonal neighbours (8 in 2D, 26 in 3D, as OpenCV's contours
    used by CAM code do); ``"face"`` only face neighbours (4 / 6). Equal-size components: the one
    met first in raster order wins. A sample without any voxel stays empty.
    """
    if not isinstance(regions, Tensor) or regions.ndim not in (3, 4):
        raise InputError(
            "regions must be a boolean tensor (N, H, W) or (N, D, H, W)",
            value=getattr(regions, "shape", type(regions).__name__),
        )
    regions = regions != 0
    # Components live inside the occupied bounding box: label only that (raster order, and so
    # the tie rule, is the same in a crop).
    box = occupied_box(regions)
    crop = regions[box]
    # scipy.ndimage.label has no torch counterpart: a documented trip to the CPU, once per batch.
    labels_np, _ = ndimage.label(
        crop.cpu().numpy(), structure=_structure(regions.ndim - 1, connectivity)
    )
    labels = torch.from_numpy(labels_np.astype(np.int64)).to(regions.device).flatten(1)
    sizes = torch.bincount(labels.flatten())
    sizes[0] = 0  # background is not a component
    voxel_size = sizes[labels]
    # argmax returns the first maximal voxel: the tie rule "first in raster order".
    keep = labels.gather(1, voxel_size.argmax(1, keepdim=True))
    out = torch.zeros_like(regions)
    out[box] = ((labels == keep) & (keep > 0)).view(crop.shape)
    return out


def boxes_from_regions(regions: Tensor) -> Tensor:
    """Bounding boxes ``(N, 2*d)`` long: lower corner (inclusive), then upper (exclusive).

    Box i is ``x[i, b[0]:b[d], b[1]:b[d+1], ...]``. An empty region gives an all-zero box.
    """
    n, spatial = regions.shape[0], regions.shape[1:]
    d = len(spatial)
    lows, highs = [], []
    for axis in range(d):  # loop over 2 or 3 axes, not over samples
        others = tuple(a + 1 for a in range(d) if a != axis)
        present = regions.any(dim=others) if others else regions
        size = spatial[axis]
        first = present.int().argmax(1)
        last = size - present.flip(1).int().argmax(1)
        nonempty = present.any(1)
        lows.append(torch.where(nonempty, first, 0))
        highs.append(torch.where(nonempty, last, 0))
    return torch.stack(lows + highs, 1).long().view(n, 2 * d)


def box_masks(boxes: Tensor, spatial_shape: tuple[int, ...]) -> Tensor:
    """Rasterize boxes ``(N, 2*d)`` (from :func:`boxes_from_regions`) to boolean masks."""
    d = len(spatial_shape)
    if boxes.ndim != 2 or boxes.shape[1] != 2 * d:
        raise InputError(f"boxes must have shape (N, {2 * d})", value=tuple(boxes.shape))
    out = torch.ones((boxes.shape[0], *spatial_shape), dtype=torch.bool, device=boxes.device)
    for axis, size in enumerate(spatial_shape):
        coord = torch.arange(size, device=boxes.device)
        inside = (coord >= boxes[:, axis, None]) & (coord < boxes[:, d + axis, None])  # (N, size)
        shape = [boxes.shape[0]] + [1] * d
        shape[axis + 1] = size
        out &= inside.view(shape)
    return out


def bounding_boxes(
    maps: Tensor,
    threshold: float = 0.2,
    largest_component: bool = True,
    connectivity: Connectivity = "full",
) -> tuple[Tensor, Tensor]:
    """The dMRI study's box: threshold at ``threshold`` × max, largest component, its box.

    Returns ``(boxes, regions)``: boxes ``(N, 2*d)`` long as in :func:`boxes_from_regions`, and
    the boolean region the box was taken from (the largest component, or every voxel above the
    threshold when ``largest_component=False``). The study's published code instead used
    ``threshold=0.8, largest_component=False``; the defaults follow the paper's text.
    """
    regions = threshold_regions(maps, threshold)
    if largest_component:
        regions = largest_components(regions, connectivity)
    return boxes_from_regions(regions), regions


def occupied_box(x: Tensor, pad: int = 0) -> tuple[slice, ...]:
    """Index ``(all samples, *spatial slices)`` of the bounding box of every sample's nonzero
    voxels together, grown by ``pad`` voxels per side (clipped); the full field if empty."""
    present = x.any(0)
    box: list[slice] = [slice(None)]
    for axis, size in enumerate(present.shape):
        others = tuple(a for a in range(present.ndim) if a != axis)
        hit = torch.nonzero(present.any(dim=others) if others else present).flatten()
        if hit.numel() == 0:
            return (slice(None),) * x.ndim
        box.append(slice(max(0, int(hit[0]) - pad), min(size, int(hit[-1]) + pad + 1)))
    return tuple(box)
