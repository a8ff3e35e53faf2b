"""NIfTI ↔ SimpleITK: geometry and transforms."""

from __future__ import annotations

import numpy as np

from braincam.imaging.sitk import from_sitk, ras_to_sitk_transform, sitk_to_ras_matrix, to_sitk
from builders.geometry import LAS, rigid


def test_sitk_geometry_matches_nibabel_and_round_trips() -> None:
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    img = to_sitk(data, LAS)
    assert np.array_equal(from_sitk(img), data)
    ras = LAS @ np.array([2.0, 3.0, 4.0, 1.0])
    lps = img.TransformIndexToPhysicalPoint([2, 3, 4])
    assert np.allclose(lps, [-ras[0], -ras[1], ras[2]])
    m = rigid((3.0, -2.0, 1.0), (1.5, -0.5, 2.0), (10.0, -20.0, 5.0))
    assert np.allclose(sitk_to_ras_matrix(ras_to_sitk_transform(m)), m, atol=1e-9)
