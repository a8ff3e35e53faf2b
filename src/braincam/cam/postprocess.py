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

__all__ = ["normalize_maps", "upsample_maps"]


def upsample_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize maps (N, *spatial) to ``size``: bi/trilinear, align_corners=False."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps  # identical grid: interpolation would be the identity
    mode = "bilinear" if len(size) == 2 else "trilinear"
    out = F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=False)
    return out.squeeze(1)


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
