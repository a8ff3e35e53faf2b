"""Which brain regions do the heatmaps point at? Step 1: into MNI space (warping here;
registration and resampling live in :mod:`braincam.imaging` and are re-exported).

1. Into MNI space.
   - Synthetic data: the transform is known as a coordinate map
     ``from-MNI152NLin2009cAsym_to-native_coords`` (on the MNI grid, native mm per voxel; see
     docs/architecture.md). :func:`warp_to_mni` samples the native heatmap at those coordinates.
   - Real data: :func:`register_to_mni` registers the subject's FA / T1 to nilearn's bundled MNI152
     template (SimpleITK, Mattes mutual information, rigid then affine, at low resolution), and
     :func:`apply_to_mni` resamples any image of that subject (the heatmap) with the transform.
2. Per map, :func:`~braincam.metrics.region_mass.region_mass` sums the (non-negative) heatmap
   inside each atlas region (:mod:`braincam.metrics.atlas`) and ``lobe_mass`` per lobe.
3. ``rank_regions`` ranks regions per class (and model, method); ``region_differences`` lists
   the regions whose share of the mass differs most between classes.

Steps 2 and 3 live in :mod:`braincam.metrics.region_mass`.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from braincam.errors import InputError

# Registration to MNI, resampling and NIfTI ↔ SimpleITK live in braincam.imaging (one home);
# re-exported here for callers of this module.
from braincam.imaging.registration import apply_to_mni, register_to_mni  # noqa: F401
from braincam.imaging.resample import coords_map_array, resample_isotropic  # noqa: F401
from braincam.imaging.sitk import nifti_to_sitk, sitk_to_nifti, transform_points  # noqa: F401
from braincam.imaging.templates import mni_template  # noqa: F401
from braincam.metrics.atlas import Atlas, grid_coordinates, sample_at_world

# --------------------------------------------------------------------------------------------
# Coordinate maps (synthetic data)
# --------------------------------------------------------------------------------------------


def warp_maps(maps: Tensor, native_affine: np.ndarray, coords: Tensor) -> Tensor:
    """Pull maps ``(N, X, Y, Z)`` on a native grid onto the grid of a coordinate map.

    ``coords (X', Y', Z', 3)`` holds, per target voxel, the native mm coordinate of the same point;
    trilinear interpolation, 0 outside the native volume. Returns ``(N, X', Y', Z')``.
    """
    if maps.ndim != 4:
        raise InputError("maps must be (N, X, Y, Z) volumes", value=tuple(maps.shape))
    return sample_at_world(maps, native_affine, coords)


def warp_to_mni(
    native_img: nib.Nifti1Image, coords_img: nib.Nifti1Image, *, order: int = 1
) -> nib.Nifti1Image:
    """Put a native-space image (3D, or 4D = several maps) onto the coordinate map's MNI grid.

    ``coords_img`` is ``sub-XX_from-MNI152NLin2009cAsym_to-native_coords.nii.gz``. ``order`` 1 is
    trilinear, 0 nearest neighbour (for masks and labels).
    """
    if order not in (0, 1):
        raise InputError("order must be 0 (nearest) or 1 (linear)", value=order)
    data = np.asarray(native_img.dataobj, dtype=np.float32)
    if data.ndim not in (3, 4):
        raise InputError("native_img must be 3D or 4D", value=tuple(native_img.shape))
    vols = torch.as_tensor(data if data.ndim == 4 else data[..., None]).permute(3, 0, 1, 2)
    coords = torch.as_tensor(coords_map_array(coords_img), dtype=torch.float32)
    mode = "bilinear" if order == 1 else "nearest"
    out = sample_at_world(vols, native_img.affine, coords, mode=mode).permute(1, 2, 3, 0).numpy()
    if data.ndim == 3:
        out = out[..., 0]
    return nib.Nifti1Image(out.astype(np.float32), coords_img.affine)


def maps_on_atlas(
    native_img: nib.Nifti1Image, coords_img: nib.Nifti1Image, atlas: Atlas
) -> tuple[np.ndarray, Atlas]:
    """Warp a subject's native heatmap(s) to MNI and put the atlas on the same grid.

    Convenience for synthetic data: returns ``(maps (N, X, Y, Z), atlas on the coordinate map's
    grid)`` ready for :func:`braincam.metrics.region_mass.region_mass`.
    """
    from braincam.metrics.atlas import resample_atlas

    warped = warp_to_mni(native_img, coords_img)
    data = np.asarray(warped.dataobj)
    maps = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
    return maps, resample_atlas(atlas, warped.affine, warped.shape[:3])


def identity_coords(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """A coordinate map that maps a grid onto itself (its voxels' own mm coordinates)."""
    coords = grid_coordinates(img.affine, tuple(img.shape[:3])).numpy()
    return nib.Nifti1Image(coords.astype(np.float32), img.affine)
