"""Resampling volumes: onto another grid through a RAS transform, or to isotropic voxels."""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.imaging.sitk import nifti_to_sitk, sitk_to_nifti


def resample_to(
    moving: NDArray,
    moving_affine: NDArray,
    fixed_shape: Sequence[int],
    fixed_affine: NDArray,
    matrix: NDArray | None = None,
    *,
    order: int = 1,
) -> NDArray[np.float32]:
    """``moving`` on the fixed grid through ``matrix`` (fixed RAS mm → moving RAS mm; identity
    if None): one linear (or nearest, ``order=0``) interpolation, 0 outside."""
    m = np.eye(4) if matrix is None else np.asarray(matrix, dtype=np.float64)
    vox = np.linalg.inv(moving_affine) @ m @ np.asarray(fixed_affine, dtype=np.float64)
    return ndi.affine_transform(
        np.asarray(moving, dtype=np.float32),
        vox[:3, :3],
        offset=vox[:3, 3],
        output_shape=tuple(int(n) for n in fixed_shape[:3]),
        order=order,
        mode="constant",
        cval=0.0,
    ).astype(np.float32)


def resample_isotropic(img: nib.Nifti1Image, resolution_mm: float) -> nib.Nifti1Image:
    """Resample a 3D image to isotropic voxels (same axes and field of view), smoothing first."""
    import SimpleITK as sitk

    src = nifti_to_sitk(img)
    old = np.asarray(src.GetSpacing())
    size = np.maximum(1, np.round(np.asarray(src.GetSize()) * old / resolution_mm)).astype(int)
    # Gaussian anti-aliasing before subsampling (σ ≈ half the new voxel, in mm).
    sigma = max(0.0, 0.5 * resolution_mm - 0.5 * float(old.min()))
    if sigma > 0:
        src = sitk.SmoothingRecursiveGaussian(src, sigma)
    out = sitk.Resample(
        src,
        size.tolist(),
        sitk.Transform(),
        sitk.sitkLinear,
        src.GetOrigin(),
        [resolution_mm] * 3,
        src.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
    return sitk_to_nifti(out)
