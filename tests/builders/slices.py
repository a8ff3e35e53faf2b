"""Tiny NIfTI cohorts for the slice-store tests (non-canonical grids, masks, splits)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd

from braincam.data.slices import SliceSource
from braincam.data.splits import make_splits

SHAPE = (20, 24, 18)
ZOOMS = (1.5, 1.0, 2.0)


def lps_affine(angle_deg: float = 5.0, permuted: bool = False) -> np.ndarray:
    """Non-canonical affine: LPS axes (x and y flipped), anisotropic voxels, a small rotation;
    ``permuted`` also stores the array axes as (y, z, x), as a sagittal acquisition might."""
    th = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    affine = np.eye(4)
    axes = np.diag([-ZOOMS[0], -ZOOMS[1], ZOOMS[2]])
    if permuted:
        axes = np.array([[0, 0, -ZOOMS[2]], [-ZOOMS[0], 0, 0], [0, ZOOMS[1], 0]])
    affine[:3, :3] = rot @ axes
    affine[:3, 3] = [30.0, 20.0, -10.0]
    return affine


def write_cohort(tmp_path, n_per_class=3, channels=1, masks=True):
    """Tiny random subjects on a non-canonical grid; the first half of each class has a mask."""
    rng = np.random.default_rng(0)
    affine = lps_affine()
    sources = []
    for c, label in enumerate(("young", "old")):
        for s in range(n_per_class):
            pid = f"sub-{label[0]}{s}"
            paths = []
            for ch in range(channels):
                data = rng.random(SHAPE, dtype=np.float32) + c
                path = tmp_path / "in" / f"{pid}_ch{ch}.nii.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(data, affine), path)
                paths.append(path)
            mask_path = None
            if masks and s < (n_per_class + 1) // 2:
                m = np.zeros(SHAPE, np.uint8)
                m[2:8, 10:16, 7:11] = 1  # off-centre box: some centre slices miss it
                mask_path = tmp_path / "in" / f"{pid}_mask.nii.gz"
                nib.save(nib.Nifti1Image(m, affine), mask_path)
            sources.append(SliceSource(pid, label, paths, mask_path))
    labels = pd.DataFrame(
        {"participant_id": [s.participant_id for s in sources], "label": [s.label for s in sources]}
    )
    return sources, make_splits(labels, seed=0)
