"""Slice orientations: the RAS world axis normal to axial, coronal and sagittal slices."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from braincam.errors import ConfigError

AXES = ("axial", "coronal", "sagittal")
#: World (RAS) axis normal to the slices of each orientation, which is also the array axis held
#: fixed by those slices on a RAS+ canonical grid (``FIXED_AXIS`` in the slice store).
AXIS_OF = {"sagittal": 0, "coronal": 1, "axial": 2}
FIXED_AXIS = AXIS_OF


def slice_axis(affine: NDArray, axis: str) -> int:
    """Voxel axis of an image whose slices are ``axis`` (axial ↔ the axis closest to S–I)."""
    if axis not in AXIS_OF:
        raise ConfigError(f"axis must be one of {', '.join(AXIS_OF)}; got {axis!r}")
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=float))
    return int(np.flatnonzero(ornt[:, 0] == AXIS_OF[axis])[0])


def crop_axis(
    data: NDArray, affine: NDArray, axis: int, lo: int, hi: int
) -> tuple[NDArray, NDArray]:
    """Keep slices ``lo..hi`` (inclusive) along voxel ``axis``; the affine keeps world positions."""
    index = [slice(None)] * 3
    index[axis] = slice(lo, hi + 1)
    shift = np.eye(4)
    shift[axis, 3] = lo
    return np.asarray(data)[tuple(index)], np.asarray(affine, dtype=np.float64) @ shift
