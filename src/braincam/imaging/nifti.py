"""NIfTI I/O: header checks, reading checked 3D volumes, atomic and reproducible writing."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener
from numpy.typing import NDArray

from braincam.errors import InputError
from braincam.io import atomic_path, write_atomic

# Largest image read (as float64 in memory); bigger headers are refused before any data is read.
MAX_IMAGE_BYTES = 16 * 2**30


def load_nifti_header(path: Path, *, subject: str | None) -> nib.Nifti1Image:
    """Open a NIfTI (header only); a missing or unreadable file raises InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError("NIfTI file not found", subject=subject, path=path)
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(
            "unreadable NIfTI", subject=subject, path=path, value=f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError("not a NIfTI image", subject=subject, path=path, value=type(img).__name__)
    return img


def check_grid(img: nib.Nifti1Image, path: Path, *, subject: str | None) -> None:
    """Header sanity every image needs before its data are read: a size under the cap, a
    supported numeric data type, positive finite voxel sizes and an invertible affine."""
    n_bytes = int(np.prod([int(s) for s in img.shape], dtype=np.float64)) * 8
    if n_bytes > MAX_IMAGE_BYTES:
        raise InputError(
            f"image too large: {n_bytes / 2**30:.1f} GiB as float64 exceeds the "
            f"{MAX_IMAGE_BYTES / 2**30:g} GiB cap; shape",
            subject=subject,
            path=path,
            value=tuple(int(s) for s in img.shape),
        )
    header = img.header
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "biuf" or dtype.names is not None:
        raise InputError(
            "unsupported NIfTI data type (need integers or floats)",
            subject=subject,
            path=path,
            value=str(dtype),
        )
    ndim = len(img.shape)
    # nibabel silently replaces zero or negative pixdim by 1 or |pixdim| when it loads a
    # header: read the header as written to see what the file really says.
    with ImageOpener(path) as f:
        raw = type(header).from_fileobj(f, check=False)
    zooms = np.asarray(raw["pixdim"][1 : 1 + min(ndim, 3)], dtype=np.float64)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise InputError(
            "voxel sizes (pixdim) must be positive and finite",
            subject=subject,
            path=path,
            value=tuple(float(z) for z in zooms),
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    linear = affine[:3, :3]
    if not np.all(np.isfinite(affine)) or abs(float(np.linalg.det(linear))) < 1e-12:
        raise InputError(
            "the image's affine (voxel → world) is singular or not finite",
            subject=subject,
            path=path,
            value=np.round(linear, 6).tolist(),
        )


def load_volume(path: str | Path | None, *, subject: str, contrast: str) -> nib.Nifti1Image:
    """Read a 3D contrast; InputError naming the subject, the file and the contrast otherwise."""
    if path is None:
        raise InputError(f"missing {contrast} image", subject=subject)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {contrast} image (file not found)", subject=subject, path=path)
    try:
        img = nib.load(str(path))
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise InputError(
                f"{contrast} must be a 3D image", subject=subject, path=path, value=tuple(img.shape)
            )
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except InputError:
        raise
    except Exception as exc:  # nibabel/zlib/EOF: several types for truncated or bad files
        raise InputError(
            f"cannot read the {contrast} image: {exc}", subject=subject, path=path
        ) from exc
    if not np.isfinite(data).all():
        raise InputError(
            f"{contrast} contains NaN or Inf values",
            subject=subject,
            path=path,
            value=int((~np.isfinite(data)).sum()),
        )
    if float(data.max()) <= float(data.min()):
        raise InputError(f"{contrast} is constant (blank image)", subject=subject, path=path)
    return nib.Nifti1Image(data, img.affine)


def write_nifti(
    path: Path,
    data: NDArray,
    affine: NDArray,
    dtype: type,
    *,
    qform_code: int = 1,
    sform_code: int = 1,
) -> None:
    """Write a derivative volume as ``dtype`` with both qform and sform set, atomically."""
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.set_qform(affine, code=qform_code)
    img.set_sform(affine, code=sform_code)
    img.header.set_xyzt_units(xyz="mm")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def save_nifti(
    path: Path,
    data: NDArray,
    affine: NDArray,
    *,
    space_code: int = 1,
    compresslevel: int = 4,
    on_disk: type | None = None,
) -> Path:
    """Write a NIfTI-1 file atomically and byte-reproducibly.

    The gzip stream is made here with ``mtime=0`` and no file name, because a gzip header
    otherwise records the time (and the temporary name) of each write. ``on_disk`` (e.g.
    ``np.int16``) stores float data scaled to that type (nibabel picks slope/intercept; readers
    get floats back from ``get_fdata``).
    """
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    if on_disk is not None:
        img.set_data_dtype(on_disk)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(affine, code=space_code)
    img.set_qform(affine, code=space_code)
    raw = img.to_bytes()
    if str(path).endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=compresslevel, mtime=0)
    return write_atomic(path, lambda tmp: tmp.write_bytes(raw))
