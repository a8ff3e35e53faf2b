"""Slice orientation: the voxel axis of a slice direction, cropping along it."""

from __future__ import annotations

import numpy as np

from braincam.imaging.orientation import crop_axis, slice_axis
from builders.geometry import LAS


def test_crop_axis_keeps_world_positions_and_slice_axis() -> None:
    data = np.random.default_rng(0).random((6, 7, 8))
    cropped, affine = crop_axis(data, LAS, 2, 3, 5)
    assert cropped.shape == (6, 7, 3)
    assert np.array_equal(cropped[:, :, 0], data[:, :, 3])
    assert np.allclose(affine @ [1, 2, 0, 1], LAS @ [1, 2, 3, 1])
    assert slice_axis(LAS, "axial") == 2 and slice_axis(LAS, "sagittal") == 0
    permuted = LAS[:, [2, 0, 1, 3]]  # voxel axis 0 now runs along z
    assert slice_axis(permuted, "axial") == 0
