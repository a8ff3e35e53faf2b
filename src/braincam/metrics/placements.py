"""Area-matched random placements of a region inside the brain, and regions outside it.

The perturbation check's baseline (:mod:`braincam.metrics.perturbation`): the same region shape,
moved by random offsets that keep it in the field and cover at least as many brain voxels.
Random placement is batched: brain coverage of the region at *every* offset is a
cross-correlation computed with zero-padded FFTs over the spatial dims (2D or 3D). The negative
control's region is the background farthest from the brain.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from braincam.errors import InputError
from braincam.metrics.boxes import boxes_from_regions
from braincam.metrics.maps import seeded_rand

__all__ = ["DEFAULT_N_RANDOM", "outside_regions", "random_placements"]

#: Random placements per image; the baseline of each image is their mean.
DEFAULT_N_RANDOM = 20


def _correlate(region: Tensor, other: Tensor) -> Tensor:
    """``c[o] = Σ_y region(y)·other(y+o)`` for every offset o, as a circular (2S)^d array."""
    dims = tuple(range(1, region.ndim))
    size = tuple(2 * s for s in region.shape[1:])  # zero padding: no wrap-around aliasing
    fr = torch.fft.rfftn(region, s=size, dim=dims)
    fo = torch.fft.rfftn(other, s=size, dim=dims)
    return torch.fft.irfftn(fr.conj() * fo, s=size, dim=dims)


def _shift(regions: Tensor, offsets: list[Tensor]) -> Tensor:
    """``moved[i](x) = regions[i](x − offsets[:, i])`` (zero where the source is outside)."""
    n, spatial = regions.shape[0], tuple(regions.shape[1:])
    d = len(spatial)
    flat_src = torch.zeros((n, *spatial), dtype=torch.long, device=regions.device)
    valid = torch.ones((n, *spatial), dtype=torch.bool, device=regions.device)
    stride = 1
    for axis in reversed(range(d)):
        size = spatial[axis]
        src = torch.arange(size, device=regions.device)[None] - offsets[axis][:, None]
        view = [n] + [1] * d
        view[axis + 1] = size
        valid &= ((src >= 0) & (src < size)).view(view)
        flat_src = flat_src + (src.clamp(0, size - 1) * stride).view(view)
        stride *= size
    return regions.flatten(1).gather(1, flat_src.flatten(1)).view_as(regions) & valid


def random_placements(
    regions: Tensor,
    brain: Tensor,
    n_random: int = DEFAULT_N_RANDOM,
    generator: torch.Generator | None = None,
    max_elements: int = 2**24,
) -> tuple[Tensor, Tensor]:
    """``n_random`` random translates of each region inside the brain → ``(N, n_random, *S)``.

    Eligible offsets keep the region in the field and cover at least as many brain voxels as the
    region itself (so the random regions perturb at least as much brain). They are drawn
    uniformly with replacement among the eligible ones, the zero offset excluded unless it is the
    only one (a region as large as the brain can only stay where it is: its difference is then
    0, an honest "cannot tell"). Also returns the share of each placement's brain voxels inside
    the original region ``(N, n_random)``.
    """
    if n_random < 1:
        raise InputError("n_random must be ≥ 1", value=n_random)
    grid = math.prod(2 * s for s in regions.shape[1:])
    chunk = max(1, max_elements // grid)
    moved, overlap = [], []
    for i in range(0, regions.shape[0], chunk):
        m, o = _place_chunk(regions[i : i + chunk], brain[i : i + chunk], n_random, generator)
        moved.append(m)
        overlap.append(o)
    return torch.cat(moved), torch.cat(overlap)


def _place_chunk(
    regions: Tensor, brain: Tensor, n_random: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    n, spatial = regions.shape[0], tuple(regions.shape[1:])
    d = len(spatial)
    r, b = regions.double(), brain.double()
    coverage = _correlate(r, b).round()
    own = (r * b).flatten(1).sum(1).view([n] + [1] * d)
    boxes = boxes_from_regions(regions)
    eligible = coverage >= own
    offsets_per_axis = []
    for axis, size in enumerate(spatial):
        idx = torch.arange(2 * size, device=regions.device)
        off = torch.where(idx < size, idx, idx - 2 * size)  # circular index → signed offset
        offsets_per_axis.append(off)
        ok = (off >= -boxes[:, axis, None]) & (off <= size - boxes[:, d + axis, None])
        view = [n] + [1] * d
        view[axis + 1] = 2 * size
        eligible &= ok.view(view)
    weights = eligible.flatten(1).double()
    others = weights[:, 1:].sum(1) > 0
    weights[:, 0] = torch.where(others, 0.0, 1.0)  # index 0 is the zero offset
    gen_device = generator.device if generator is not None else torch.device("cpu")
    picks = torch.multinomial(
        weights.to(gen_device), n_random, replacement=True, generator=generator
    ).to(regions.device)  # (n, n_random)
    chosen = []
    rest = picks.flatten()
    for axis in reversed(range(d)):
        size2 = 2 * spatial[axis]
        chosen.append(offsets_per_axis[axis][rest % size2])
        rest = rest // size2
    chosen.reverse()
    repeated = regions.repeat_interleave(n_random, 0)
    moved = _shift(repeated, chosen).view(n, n_random, *spatial)
    inside = (moved & regions[:, None] & brain[:, None]).flatten(2).sum(2).double()
    total = (moved & brain[:, None]).flatten(2).sum(2).double()
    overlap = torch.where(total > 0, inside / total.clamp_min(1), torch.zeros_like(total))
    return moved, overlap


def outside_regions(
    brain: Tensor, sizes: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Per image the ``sizes[i]`` background voxels farthest from the brain (ties at random).

    The negative control's region: as many voxels as the region it is matched to, where no
    brain is. An image with fewer background voxels gets all of them.
    """
    background = (~brain).cpu().numpy()
    # One distance transform for the batch: the batch axis is made longer than any distance.
    far = float(sum(s * s for s in brain.shape[1:]) + 1)
    dist = ndimage.distance_transform_edt(background, sampling=(far,) + (1.0,) * (brain.ndim - 1))
    dist = torch.from_numpy(np.where(background, dist, -1.0)).to(brain.device).flatten(1)
    jitter = seeded_rand(tuple(dist.shape), generator, brain.device).double() * 1e-3
    order = torch.argsort(dist + jitter, dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=brain.device).expand_as(order))
    chosen = (rank < sizes.to(brain.device)[:, None]) & (dist >= 0)
    return chosen.view_as(brain)
