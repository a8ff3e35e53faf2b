"""Resampling volumes: onto another grid through a RAS transform, or to isotropic voxels."""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.errors import InputError
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


def sample_at_points(
    data: NDArray, affine: NDArray, points: NDArray, *, order: int = 1, mode: str = "constant"
) -> NDArray[np.float32]:
    """Values of a volume ``data`` (on the grid ``affine``) at world mm ``points (..., 3)``.

    Linear (``order=1``) or nearest (0) interpolation; outside the grid 0 (``mode="constant"``)
    or the nearest edge value (``"nearest"``, for coordinate maps). Returns ``points.shape[:-1]``.
    """
    if order not in (0, 1):
        raise InputError("order must be 0 (nearest) or 1 (linear)", value=order)
    pts = np.asarray(points, dtype=np.float64)
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    ijk = pts.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
    out = ndi.map_coordinates(
        np.asarray(data, dtype=np.float32), ijk.T, order=order, mode=mode, cval=0.0
    )
    return out.reshape(pts.shape[:-1]).astype(np.float32)


def coords_map_array(coords_img: nib.spatialimages.SpatialImage) -> NDArray[np.float64]:
    """The ``(X, Y, Z, 3)`` mm array of a coordinate map (a ``*_coords.nii.gz``: per voxel of its
    grid, the mm coordinate of the same point in another space); vector NIfTIs stored 5-D
    ``(X, Y, Z, 1, 3)`` are accepted."""
    data = np.asarray(coords_img.dataobj, dtype=np.float64)
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim != 4 or data.shape[-1] != 3:
        raise InputError(
            "a coordinate map must be 4D (X, Y, Z, 3) in mm", value=tuple(coords_img.shape)
        )
    return data


def pull_points(coords_img: nib.spatialimages.SpatialImage, points: NDArray) -> NDArray:
    """Map world mm ``points (..., 3)`` through a coordinate map (trilinear in each component;
    beyond the map's grid its edge values)."""
    data = coords_map_array(coords_img)
    return np.stack(
        [
            sample_at_points(data[..., d], coords_img.affine, points, mode="nearest")
            for d in range(3)
        ],
        axis=-1,
    ).astype(np.float64)


def grid_points(affine: NDArray, shape: Sequence[int]) -> NDArray[np.float64]:
    """World mm of every voxel centre of a grid, ``(X, Y, Z, 3)``."""
    axes = [np.arange(n, dtype=np.float64) for n in shape[:3]]
    i, j, k = np.meshgrid(*axes, indexing="ij")
    a = np.asarray(affine, dtype=np.float64)
    out = np.empty((*i.shape, 3))
    for r in range(3):
        out[..., r] = a[r, 0] * i + a[r, 1] * j + a[r, 2] * k + a[r, 3]
    return out
