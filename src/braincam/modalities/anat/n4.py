"""N4 bias-field correction and the foreground/brain masks it and the co-registration use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.errors import InputError
from braincam.imaging.masks import largest_component
from braincam.imaging.sitk import from_sitk, to_sitk

if TYPE_CHECKING:
    from braincam.modalities.anat.preprocess import AnatParams


def foreground_mask(data: NDArray) -> NDArray[np.bool_]:
    """Head/brain foreground: Otsu threshold of the lightly smoothed image, largest component,
    holes filled. Meant for skull-stripped or synthetic images (background near zero)."""
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(np.asarray(data, dtype=np.float32), 1.0)
    if not np.isfinite(smooth).all() or float(smooth.max()) <= float(smooth.min()):
        return np.zeros(smooth.shape, dtype=bool)
    mask = smooth > threshold_otsu(smooth)
    mask = largest_component(mask)
    return ndi.binary_fill_holes(mask)


def head_extent(*images: NDArray) -> NDArray[np.bool_]:
    """The whole head: every bright voxel of any contrast (Otsu on the smoothed image, all
    components — the scalp is a shell apart from the brain), closed and filled, so bone and
    brain inside the scalp are included."""
    from skimage.filters import threshold_otsu

    mask = np.zeros(np.asarray(images[0]).shape, dtype=bool)
    for img in images:
        smooth = ndi.gaussian_filter(np.asarray(img, dtype=np.float32), 1.0)
        if np.isfinite(smooth).all() and float(smooth.max()) > float(smooth.min()):
            mask |= smooth > threshold_otsu(smooth)
    mask = ndi.binary_closing(mask, iterations=2)
    return largest_component(ndi.binary_fill_holes(mask))


def brain_mask_from(*images: NDArray) -> NDArray[np.bool_]:
    """Union of the contrasts' foreground masks (dark CSF on T1w is bright on T2w), closed,
    filled, largest component."""
    mask = np.zeros(np.asarray(images[0]).shape, dtype=bool)
    for img in images:
        mask |= foreground_mask(img)
    mask = ndi.binary_closing(mask, iterations=2)
    return ndi.binary_fill_holes(largest_component(mask))


def n4_correct(
    data: NDArray,
    affine: NDArray,
    params: AnatParams,
    mask: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """N4 bias-field correction. Returns ``(corrected, bias_field)`` on the input grid.

    The field is fitted on a copy shrunk by ``params.n4_shrink`` (the field is smooth, so this
    loses nothing and saves most of the time) inside ``mask`` (default: Otsu foreground), and
    evaluated at full resolution with ``GetLogBiasFieldAsImage``.
    """
    import SimpleITK as sitk

    arr = np.asarray(data, dtype=np.float32)
    if mask is None:
        mask = foreground_mask(arr)
    if not mask.any():
        raise InputError("N4: the foreground mask is empty (blank image?)")
    # N4 works on log intensities: keep the fitted region strictly positive.
    mask = mask & (arr > 0)
    image = to_sitk(arr, affine)
    mask_img = sitk.Cast(to_sitk(mask.astype(np.uint8), affine), sitk.sitkUInt8)
    factor = max(
        [f for f in range(1, params.n4_shrink + 1) if min(arr.shape) // f >= 16], default=1
    )
    small = sitk.Shrink(image, [factor] * 3) if factor > 1 else image
    small_mask = sitk.Shrink(mask_img, [factor] * 3) if factor > 1 else mask_img
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in params.n4_iterations])
    n4.SetConvergenceThreshold(float(params.n4_convergence))
    if params.threads:
        n4.SetNumberOfThreads(int(params.threads))
    n4.Execute(small, small_mask)
    log_bias = from_sitk(n4.GetLogBiasFieldAsImage(image)).astype(np.float32)
    bias = np.exp(log_bias)
    return (arr / bias).astype(np.float32), bias
