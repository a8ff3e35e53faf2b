"""NIfTI (RAS, x-y-z arrays) ↔ SimpleITK (LPS, z-y-x arrays): images, points and transforms.

SimpleITK is imported inside the functions: loading it costs time that most callers never need.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from braincam.errors import InputError

# LPS (ITK) ↔ RAS (NIfTI/nibabel): negate x and y.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def to_sitk(data: NDArray, affine: NDArray) -> Any:
    """A SimpleITK image (the array's dtype) with the geometry of a NIfTI array + RAS affine.

    SimpleITK's physical space is LPS and its arrays are indexed (z, y, x).
    """
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0)))
    lps = _FLIP @ np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


def from_sitk(img: Any) -> NDArray:
    """The voxel array of a SimpleITK image in NIfTI (x, y, z) order."""
    import SimpleITK as sitk

    return np.ascontiguousarray(sitk.GetArrayFromImage(img).transpose(2, 1, 0))


def sitk_to_ras_matrix(transform: Any) -> NDArray[np.float64]:
    """4×4 RAS matrix of any affine SimpleITK transform (fixed mm → moving mm).

    Read off by transforming four points, so composite and centred transforms work alike.
    """
    base = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], dtype=np.float64)
    out = np.array([transform.TransformPoint([float(v) for v in p]) for p in base])
    lps = np.eye(4)
    lps[:3, 3] = out[0]
    lps[:3, :3] = (out[1:] - out[0]).T / 100.0
    return _FLIP @ lps @ _FLIP


def ras_to_sitk_transform(matrix: NDArray) -> Any:
    """A SimpleITK AffineTransform equivalent to a 4×4 RAS matrix (fixed mm → moving mm)."""
    import SimpleITK as sitk

    lps = _FLIP @ np.asarray(matrix, dtype=np.float64) @ _FLIP
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    tx.SetTranslation([float(v) for v in lps[:3, 3]])
    return tx


def nifti_to_sitk(img: nib.Nifti1Image) -> Any:
    """A 3D NIfTI image as a float32 SimpleITK image with the same world geometry (RAS → LPS)."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise InputError("only 3D images can be registered/resampled", value=tuple(img.shape))
    return to_sitk(data, img.affine)


def sitk_to_nifti(image: Any) -> nib.Nifti1Image:
    """A 3D SimpleITK image as a float32 NIfTI image (LPS → RAS)."""
    data = from_sitk(image).astype(np.float32)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    affine[:3] = np.diag([-1.0, -1.0, 1.0]) @ affine[:3]
    return nib.Nifti1Image(data, affine)


def transform_points(transform: Any, points_ras: NDArray) -> NDArray[np.float64]:
    """Apply a SimpleITK transform to RAS mm points ``(P, 3)`` (handles the LPS convention)."""
    flip = np.array([-1.0, -1.0, 1.0])
    pts = np.asarray(points_ras, dtype=np.float64) * flip
    return np.array([transform.TransformPoint(p.tolist()) for p in pts]) * flip
