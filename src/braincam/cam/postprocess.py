"""Map post-processing: upsampling, and braincam's one min-max normalization of maps.

:func:`normalize_maps` is the only min-max scaling of heatmaps in braincam: the CAM methods
normalize their output with it, and the metrics (localization's thresholded regions, the sanity
check's SSIM) scale maps through it. It lives here, in ``cam/``, because ``cam`` sits below
``metrics`` in the import layers (see docs/architecture.md).

The rule, for each map of a batch ``(N, *spatial)``: ``(map - min) / (max - min)``, so the
minimum goes to 0 and the maximum to 1; **a constant map (max == min) becomes all 0** — it
carries no localization information, and 0 (not NaN, not 1) keeps sums, means and colour scales
finite and says "nothing highlighted". A caller that needs another value for constant maps
says so at its call site (e.g. :func:`braincam.metrics.boxes.threshold_regions`, whose
region of a constant map is the whole field by definition).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["normalize_maps", "upsample_maps", "upsampled_extremes"]


def upsample_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize maps (N, *spatial) to ``size``: bi/trilinear, align_corners=False."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps  # identical grid: interpolation would be the identity
    mode = "bilinear" if len(size) == 2 else "trilinear"
    out = F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=False)
    return out.squeeze(1)


def _extreme_rows(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """The rows of the 1-D linear interpolation matrix (``n_out`` × ``n_in``, align_corners=False)
    at which an interpolated signal can take its extremes.

    Between two neighbouring source samples (a *segment*) the weights are affine in the output
    index, so an interpolated value there is affine too and its extremes over the segment's output
    samples sit at the segment's first and last ones. Those (≤ 2·n_in rows) are kept.
    """
    eye = torch.eye(n_in, dtype=like.dtype, device=like.device).unsqueeze(0)
    weights = F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T
    lower = (weights > 0).to(torch.int8).argmax(dim=1)  # each output's first source sample
    starts = torch.ones(n_out, dtype=torch.bool, device=like.device)
    starts[1:] = lower[1:] != lower[:-1]
    ends = torch.ones_like(starts)
    ends[:-1] = starts[1:]
    return weights[starts | ends]


def upsampled_extremes(maps: Tensor, size: Sequence[int], block: int = 1 << 22) -> Tensor:
    """Per-map minimum and maximum of ``upsample_maps(maps, size)``, shape (N, 2), exactly,
    without building the upsampled maps.

    Bi/trilinear interpolation is separable, so applying each axis' :func:`_extreme_rows` in turn
    keeps every sample at which the upsampled map can reach an extreme: the cost is that of a map
    about twice the source's size per axis, not the target's (FullGrad needs the extremes of every
    channel of every layer at the input's size). ``block`` bounds the elements made at once.
    """
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return torch.stack(torch.aminmax(maps.flatten(1), dim=1), dim=1)
    rows = [
        _extreme_rows(n_in, n_out, maps) for n_in, n_out in zip(maps.shape[1:], size, strict=True)
    ]
    per_map = 1
    for r in rows:
        per_map *= r.shape[0]
    step = max(1, block // per_map)
    out = maps.new_empty((maps.shape[0], 2))
    for start in range(0, maps.shape[0], step):
        part = maps[start : start + step]
        for axis, r in enumerate(rows, start=1):
            # contract the axis with its kept interpolation rows, then put it back in place
            part = torch.movedim(torch.tensordot(part, r, dims=([axis], [1])), -1, axis)
        low, high = torch.aminmax(part.flatten(1), dim=1)
        out[start : start + step, 0] = low
        out[start : start + step, 1] = high
    return out


def normalize_maps(maps: Tensor) -> Tensor:
    """Per-sample min-max scaling to [0, 1]: min → 0, max → 1, a constant map → all 0 (no NaN).

    Computed in the maps' dtype (pass float64 maps for float64 arithmetic); the input is not
    modified.
    """
    shape = (-1,) + (1,) * (maps.ndim - 1)
    lo, hi = torch.aminmax(maps.flatten(1), dim=1)  # one pass for both
    span = (hi - lo).view(shape)
    varies = span > 0
    # in place on the fresh difference: on a 96³ volume these passes cost as much as upsampling
    out = (maps - lo.view(shape)).div_(torch.where(varies, span, 1.0))
    return out.mul_(varies)  # a constant map → all 0
