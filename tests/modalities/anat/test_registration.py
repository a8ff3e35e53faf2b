"""Rigid co-registration of T2w/FLAIR to T1w."""

from __future__ import annotations

import numpy as np

from braincam.imaging.registration import registration_error
from braincam.imaging.resample import resample_to
from braincam.modalities.anat.n4 import foreground_mask
from braincam.modalities.anat.preprocess import AnatParams
from braincam.modalities.anat.registration import register_rigid
from builders.anat import contrast
from builders.geometry import rigid


def test_registration_recovers_known_rigid_transform(template) -> None:
    """A T2-like image moved by 4°/3 mm is registered back to T1 within 1° and 1 mm."""
    t1 = contrast(template, (0.25, 0.65, 1.0))
    t2 = contrast(template, (1.6, 0.95, 0.7))
    affine = template.affine
    centre = affine[:3, :3] @ ((np.array(t1.shape) - 1) / 2) + affine[:3, 3]
    true = rigid((4.0, -3.0, 2.5), (3.0, -2.0, 2.5), centre)
    # Moving content at world q is the fixed anatomy at T⁻¹(q): sample T2 through T⁻¹.
    moved = resample_to(t2, affine, t2.shape, affine, np.linalg.inv(true))
    reg = register_rigid(t1, affine, moved, affine, AnatParams(), foreground_mask(t1))
    err = registration_error(reg.matrix, true, centre)
    assert err["rotation_deg"] < 1.0, err
    assert err["translation_mm"] < 1.0, err
    # Identity would be far off: the test can fail.
    assert registration_error(np.eye(4), true, centre)["rotation_deg"] > 4.0
