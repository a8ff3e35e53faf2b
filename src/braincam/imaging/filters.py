"""Filters on image tensors: one separable Gaussian blur for every caller (the deletion and
imputation baselines of the metrics, the blurred spatial prior of ``priorcnn-gap``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Edges = Literal["replicate", "zeros"]


def gaussian_blur(
    x: Tensor, sigma: float | Sequence[float], *, edges: Edges = "replicate"
) -> Tensor:
    """Separable Gaussian blur over the spatial dims of ``(N, C, *spatial)``.

    ``sigma`` in voxels, one value or one per spatial axis (0 leaves that axis); taps over ±max(1,
    ⌈3σ⌉), normalized to sum 1. ``edges``: ``replicate`` the border voxels (images) or treat the
    outside as ``zeros`` (a weight map, which then loses mass at its edges).
    """
    n_axes = x.ndim - 2
    sigmas = [float(sigma)] * n_axes if isinstance(sigma, int | float) else list(sigma)
    if all(s <= 0 for s in sigmas):
        return x.clone()
    mode = "replicate" if edges == "replicate" else "constant"
    out = x
    for axis, s in zip(range(2, x.ndim), sigmas, strict=True):
        if s <= 0:
            continue
        radius = max(1, math.ceil(3 * s))
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-(t**2) / (2 * s**2))
        kernel = (kernel / kernel.sum()).view(1, 1, -1)
        moved = out.movedim(axis, -1)  # each axis a 1-D convolution
        shape = moved.shape
        line = F.pad(moved.reshape(-1, 1, shape[-1]), (radius, radius), mode=mode)
        out = F.conv1d(line, kernel).view(shape).movedim(-1, axis)
    return out
