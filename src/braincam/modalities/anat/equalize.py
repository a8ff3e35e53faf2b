"""Histogram equalization within the brain and the slice-trimming rule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from braincam.errors import ConfigError, InputError


def equalize(
    data: NDArray,
    mask: NDArray[np.bool_],
    method: str = "adaptive",
    *,
    nbins: int = 256,
    clip_limit: float = 0.01,
    kernel_size: Sequence[int] | int | None = None,
) -> NDArray[np.float32]:
    """Histogram equalization within ``mask``: float32 in [0, 1], exactly 0 outside the mask.

    ``global``: the in-brain intensity CDF (``skimage.exposure.equalize_hist`` with ``mask``);
    ``adaptive``: CLAHE (``equalize_adapthist``) after scaling the in-brain 0.5–99.5 percentile
    range to [0, 1]; ``none``: that scaling only.
    """
    from skimage import exposure

    arr = np.asarray(data, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != arr.shape:
        raise InputError("equalize: mask and image shapes differ", value=(mask.shape, arr.shape))
    out = np.zeros(arr.shape, dtype=np.float32)
    if not mask.any():
        return out
    if method == "global":
        eq = exposure.equalize_hist(arr, nbins=nbins, mask=mask)
    elif method in ("adaptive", "none"):
        lo, hi = np.percentile(arr[mask], [0.5, 99.5])
        scaled = np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
        scaled[~mask] = 0.0
        eq = (
            scaled
            if method == "none"
            else exposure.equalize_adapthist(
                scaled, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins
            )
        )
    else:
        raise ConfigError(f"equalize must be global, adaptive or none; got {method!r}")
    out[mask] = np.clip(np.asarray(eq, dtype=np.float32)[mask], 0.0, 1.0)
    return out


def trim_range(mask: NDArray[np.bool_], axis: int, threshold: float = 0.10) -> tuple[int, int]:
    """The slice-trimming rule: ``(first, last)`` (inclusive) of the contiguous range of slices
    along voxel ``axis`` from the first to the last slice whose brain area is at least
    ``threshold`` × the largest slice's brain area. Raises InputError for an empty mask."""
    area = np.asarray(mask, dtype=bool).sum(axis=tuple(a for a in range(3) if a != axis))
    if area.max() == 0:
        raise InputError("slice trimming: the brain mask is empty")
    keep = np.flatnonzero(area >= threshold * area.max())
    return int(keep[0]), int(keep[-1])
