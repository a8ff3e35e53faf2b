"""ROAD noisy linear imputation: remove the information in a region, stay in distribution.

Each voxel of the region is replaced by the weighted mean of its neighbours (a discrete Laplace
equation with the surrounding tissue as boundary), plus a little Gaussian noise (Rong et al.
2022). Only voxels of the region's *support* (the brain, for brain regions) are changed and only
support voxels feed the mean, so the background never bleeds in. Also the image operations the
perturbation check needs around it: the default brain masks and the study's translation.
Used by :mod:`braincam.metrics.perturbation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from braincam.errors import InputError
from braincam.metrics.faithfulness import gaussian_blur
from braincam.metrics.maps import seeded_rand

__all__ = ["default_brain_masks", "impute", "translate"]


def default_brain_masks(images: Tensor) -> Tensor:
    """Brain = voxels where any channel differs from that channel's minimum (the background).

    This is the non-zero area of a skull-stripped FA map, and still the brain when the image was
    z-scored (the background is then a constant negative value). Pass explicit masks otherwise.
    """
    dims = tuple(range(2, images.ndim))
    background = images.amin(dim=dims, keepdim=True)
    return (images != background).any(1)


def translate(images: Tensor, shift: Sequence[int]) -> Tensor:
    """Shift ``(N, C, *spatial)`` by ``shift`` voxels per spatial axis; fill with the background.

    The vacated band takes each channel's minimum (the background) rather than wrapping around as
    ``torch.roll`` would, which would move brain to the opposite edge.
    """
    d = images.ndim - 2
    if len(shift) != d:
        raise InputError(f"shift must give one integer per spatial axis ({d})", value=tuple(shift))
    dims = tuple(range(2, images.ndim))
    out = torch.roll(images, shifts=tuple(int(s) for s in shift), dims=dims)
    background = images.amin(dim=dims, keepdim=True).expand_as(out)
    vacated = torch.zeros(images.shape[2:], dtype=torch.bool, device=images.device)
    for axis, (s, size) in enumerate(zip(shift, images.shape[2:], strict=True)):
        coord = torch.arange(size, device=images.device)
        band = coord < s if s >= 0 else coord >= size + s
        view = [1] * d
        view[axis] = size
        vacated |= band.view(view)
    return torch.where(vacated, background, out)


def _neighbour_kernel(d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Weights 1/|offset|² over the 3^d neighbourhood, centre 0 (2D: ROAD's 1/6 and 1/12)."""
    grids = torch.meshgrid(*(torch.arange(-1, 2, dtype=dtype) for _ in range(d)), indexing="ij")
    dist2 = sum(g**2 for g in grids)
    kernel = torch.where(dist2 > 0, 1.0 / dist2.clamp_min(1), torch.zeros_like(dist2))
    return (kernel / kernel.sum()).to(device).view(1, 1, *([3] * d))


_CONV = {2: F.conv2d, 3: F.conv3d}

#: Share of voxels being imputed below which the Jacobi sweeps visit only those voxels (a
#: gather of their neighbours) instead of convolving whole images: on one thread 6.7× faster
#: at 13 % of a 64² slice, 3.6× at 24 %, 1.6× at 36 % (BENCHMARKS.md, "Imputation").
SPARSE_BELOW = 0.3


def _jacobi_dense(
    x: Tensor, tissue: Tensor, update: Tensor, weight: Tensor, kernel: Tensor, iterations: int
) -> Tensor:
    """``iterations`` Jacobi sweeps: each ``update`` voxel becomes the kernel-weighted mean of
    its tissue neighbours (``x`` (M, 1, *spatial)), by convolving the whole images."""
    conv = _CONV[x.ndim - 2]
    for _ in range(iterations):
        x = torch.where(update, conv(x * tissue, kernel, padding=1) / weight.clamp_min(1e-12), x)
    return x


def _jacobi_sparse(
    x: Tensor, tissue: Tensor, update: Tensor, weight: Tensor, kernel: Tensor, iterations: int
) -> Tensor:
    """The same sweeps as :func:`_jacobi_dense`, computed on the ``update`` voxels only: their
    neighbours are gathered from a zero-padded, flattened copy (one index per neighbour)."""
    d = x.ndim - 2
    padded = F.pad(x * tissue, [1] * (2 * d))
    shape = padded.shape
    flat = padded.flatten()
    strides = torch.tensor(padded.stride(), device=x.device)
    where = update.nonzero()  # (K, 2 + d): image, channel 0, coordinates
    where[:, 2:] += 1  # into the padded grid
    voxels = (where * strides).sum(1)
    offsets = torch.cartesian_prod(*([torch.tensor([-1, 0, 1], device=x.device)] * d))
    weights = kernel.flatten()
    keep = weights > 0  # the centre carries no weight
    shifts = (offsets.view(-1, d)[keep] * strides[2:]).sum(1)
    neighbours = voxels[:, None] + shifts[None, :]
    w = weights[keep].to(x.dtype)
    scale = 1.0 / weight[update].clamp_min(1e-12)
    for _ in range(iterations):
        flat[voxels] = (flat[neighbours] * w).sum(1) * scale
    return torch.where(update, flat.view(shape)[(...,) + (slice(1, -1),) * d], x)


def impute(
    images: Tensor,
    regions: Tensor,
    support: Tensor | None = None,
    *,
    noise_std: float = 0.0,
    iterations: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noisy linear imputation of ``regions`` (ROAD): each voxel the mean of its neighbours.

    ``images`` (N, C, *spatial); ``regions`` and ``support`` (N, *spatial) bool. Voxels in
    ``regions & support`` are unknown; the other ``support`` voxels are the boundary. The linear
    system is solved by Jacobi iterations started from a normalized convolution (a Gaussian-
    weighted mean of the known support voxels), then ``noise_std`` Gaussian noise is added to
    the imputed voxels. Voxels outside ``support`` never change and never feed the mean.
    """
    n, c, *spatial = images.shape
    d = len(spatial)
    if support is None:
        support = torch.ones_like(regions)
    hole = (regions & support)[:, None].expand(n, c, *spatial).reshape(n * c, 1, *spatial)
    tissue = support[:, None].expand(n, c, *spatial).reshape(n * c, 1, *spatial).to(images.dtype)
    x = images.reshape(n * c, 1, *spatial).clone()
    known = tissue * (~hole).to(images.dtype)
    # Start: a Gaussian-weighted mean of the known tissue (falls back to its mean far away).
    sigma = max(1.0, max(spatial) / 16)
    num, den = gaussian_blur(x * known, sigma), gaussian_blur(known, sigma)
    flat_known = known.flatten(1)
    mean = (x.flatten(1) * flat_known).sum(1) / flat_known.sum(1).clamp_min(1)
    fallback = mean.view(-1, *([1] * (d + 1))).expand_as(x)
    x = torch.where(hole, torch.where(den > 1e-3, num / den.clamp_min(1e-3), fallback), x)
    kernel = _neighbour_kernel(d, images.dtype, images.device)
    weight = _CONV[d](tissue, kernel, padding=1)
    update = hole & (weight > 0)
    sweeps = _jacobi_sparse if update.float().mean() < SPARSE_BELOW else _jacobi_dense
    x = sweeps(x, tissue, update, weight, kernel, iterations)
    if noise_std > 0:
        noise = seeded_rand(tuple(x.shape), generator, x.device, normal=True) * noise_std
        x = x + noise * hole
    return x.reshape(images.shape)


# ----------------------------------------------------------------------------- placements
