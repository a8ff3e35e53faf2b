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
    """Apply a SimpleITK transform to RAS mm points ``(P, 3)`` (handles the LPS convention).

    Many points through an affine transform (a registration's result) go through its 4 × 4
    matrix in one product, read from the transform and checked on a sample of the points; any
    other transform point by point.
    """
    flip = np.array([-1.0, -1.0, 1.0])
    pts = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3) * flip
    out = _as_matrix(transform, pts) if len(pts) > _MATRIX_FROM else None
    if out is None:
        out = np.array([transform.TransformPoint(p.tolist()) for p in pts]).reshape(-1, 3)
    return out * flip


_MATRIX_FROM = 64  # points: below this, point by point is as fast


def _as_matrix(transform: Any, pts: NDArray) -> NDArray[np.float64] | None:
    """``pts`` (LPS) through ``transform`` as one matrix product when the transform is affine
    (its images of 4 basis points define the matrix, and 16 of ``pts`` must agree to 1e-6 mm);
    None otherwise."""

    def through(q: NDArray) -> NDArray:
        return np.array([transform.TransformPoint(p.tolist()) for p in q])

    basis = np.vstack([np.zeros(3), 100.0 * np.eye(3)])
    image = through(basis)
    matrix = (image[1:] - image[0]).T / 100.0
    probe = pts[np.linspace(0, len(pts) - 1, 16).astype(int)]
    if not np.allclose(through(probe), probe @ matrix.T + image[0], rtol=0, atol=1e-6):
        return None
    return pts @ matrix.T + image[0]
