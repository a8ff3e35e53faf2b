"""File checks for diffusion inputs: each failure is an InputError naming subject, file and value.

Two levels, so that ingest stays cheap and the expensive part runs in the (parallel) workers:

- header level (:func:`check_dwi_header`, :func:`read_gradients`): the NIfTI header, the bval and
  bvec tables — run at ingest for every subject;
- data level (:func:`load_dwi_data`): decompress and read the whole 4D array (a truncated ``.gz``
  only fails here) and check it is finite — run by the worker that fits the tensor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from braincam.config.prepare import DEFAULT_B0_THRESHOLD, DEFAULT_BVEC_TOLERANCE
from braincam.errors import InputError
from braincam.imaging.nifti import check_grid, load_nifti_header


@dataclass(frozen=True)
class Gradients:
    """A validated gradient table: ``bvals`` (n,) and ``bvecs`` (n, 3), FSL convention."""

    bvals: np.ndarray
    bvecs: np.ndarray

    def b0_mask(self, threshold: float = DEFAULT_B0_THRESHOLD) -> np.ndarray:
        """Boolean (n,) marking the b=0 volumes."""
        return self.bvals <= threshold


def check_dwi_header(path: Path, *, subject: str | None) -> tuple[int, ...]:
    """Return the DWI's shape after checking it is a readable 4D NIfTI with ≥ 2 volumes,
    a numeric data type, positive voxel sizes, an invertible affine and a size under the cap
    (:func:`~braincam.imaging.nifti.check_grid`)."""
    img = load_nifti_header(path, subject=subject)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) != 4:
        raise InputError("DWI must be a 4D NIfTI", subject=subject, path=path, value=shape)
    if shape[3] < 2 or min(shape[:3]) < 1:
        raise InputError(
            "DWI needs at least two volumes (b=0 and diffusion-weighted)",
            subject=subject,
            path=path,
            value=shape,
        )
    check_grid(img, path, subject=subject)
    return shape


def _read_table(path: Path, *, subject: str | None, what: str) -> np.ndarray:
    """Read a whitespace-separated numeric table (bval/bvec) as float64, at least 2D."""
    if not Path(path).is_file():
        raise InputError(f"{what} file missing", subject=subject, path=path)
    try:
        with warnings.catch_warnings():
            # An empty file: numpy warns, then braincam says so itself (below).
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as exc:
        raise InputError(
            f"cannot parse {what} file", subject=subject, path=path, value=str(exc)
        ) from exc
    if table.size == 0:
        raise InputError(f"{what} file is empty", subject=subject, path=path)
    return table


def read_gradients(
    bval_path: Path,
    bvec_path: Path,
    n_volumes: int,
    *,
    subject: str | None,
    b0_threshold: float = DEFAULT_B0_THRESHOLD,
    bvec_tolerance: float = DEFAULT_BVEC_TOLERANCE,
) -> Gradients:
    """Read and check the FSL bval/bvec pair against a DWI with ``n_volumes`` volumes.

    Checks: both files exist and parse; one bval and one bvec per volume; at least one b=0
    volume (b ≤ ``b0_threshold``); finite, non-negative b-values; unit-length bvecs (within
    ``bvec_tolerance``) for every diffusion-weighted volume.
    """
    bvals = _read_table(bval_path, subject=subject, what="bval")
    if min(bvals.shape) != 1:
        raise InputError(
            "bval file must hold a single row of values",
            subject=subject,
            path=bval_path,
            value=bvals.shape,
        )
    bvals = bvals.ravel()
    if bvals.size != n_volumes:
        raise InputError(
            f"bval count does not match the DWI's {n_volumes} volumes",
            subject=subject,
            path=bval_path,
            value=int(bvals.size),
        )
    if not np.all(np.isfinite(bvals)) or np.any(bvals < 0):
        bad = bvals[~np.isfinite(bvals) | (bvals < 0)]
        raise InputError(
            "b-values must be finite and non-negative",
            subject=subject,
            path=bval_path,
            value=float(bad[0]),
        )
    if not np.any(bvals <= b0_threshold):
        raise InputError(
            f"no b=0 volume (b ≤ {b0_threshold:g}); smallest b-value",
            subject=subject,
            path=bval_path,
            value=float(bvals.min()),
        )

    bvecs = _read_table(bvec_path, subject=subject, what="bvec")
    # FSL writes 3 rows × n columns; accept the transposed layout as DIPY does.
    if bvecs.shape == (3, n_volumes):
        bvecs = bvecs.T
    elif bvecs.shape != (n_volumes, 3):
        raise InputError(
            f"bvec table must be 3 × {n_volumes} (one vector per volume)",
            subject=subject,
            path=bvec_path,
            value=bvecs.shape,
        )
    if not np.all(np.isfinite(bvecs)):
        raise InputError("bvecs contain NaN or Inf", subject=subject, path=bvec_path)
    weighted = bvals > b0_threshold
    norms = np.linalg.norm(bvecs, axis=1)
    off = np.abs(norms - 1.0) > bvec_tolerance
    bad = weighted & off
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"bvec of volume {i} (b={bvals[i]:g}) is not unit length "
            f"(tolerance {bvec_tolerance:g}); |g|",
            subject=subject,
            path=bvec_path,
            value=round(float(norms[i]), 6),
        )
    return Gradients(bvals=bvals, bvecs=np.ascontiguousarray(bvecs))


def load_dwi_data(path: Path, *, subject: str | None) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Read the full 4D DWI array (float64) and check it is finite.

    Decompressing the whole file is what reveals a truncated ``.nii.gz``: the header of such a
    file reads fine, the data does not.
    """
    img = load_nifti_header(path, subject=subject)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float64))
    except Exception as exc:  # EOFError, zlib.error, ValueError for short files, ...
        raise InputError(
            "unreadable or truncated NIfTI data",
            subject=subject,
            path=path,
            value=f"{type(exc).__name__}: {exc}",
        ) from exc
    if data.ndim != 4:
        raise InputError("DWI must be a 4D NIfTI", subject=subject, path=path, value=data.shape)
    finite = np.isfinite(data)
    if not finite.all():
        # Voxels (x, y, z) with a NaN/Inf in any volume, as docs/prepare.md documents.
        n_bad = int(np.count_nonzero(~finite.all(axis=-1)))
        raise InputError(
            "DWI data contain NaN/Inf; number of voxels with a non-finite value",
            subject=subject,
            path=path,
            value=n_bad,
        )
    return img, data
