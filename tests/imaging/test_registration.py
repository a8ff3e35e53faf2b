"""Registration helpers: the error of an estimated transform."""

from __future__ import annotations

import numpy as np
import pytest

from braincam.imaging.registration import registration_error
from builders.geometry import rigid


def test_registration_error_measures_known_offsets() -> None:
    centre = np.array([0.0, -10.0, 15.0])
    true = rigid((2.0, 0.0, 0.0), (1.0, 0.0, 0.0), centre)
    est = rigid((2.0, 0.0, 1.5), (1.0, 0.0, 0.0), centre)
    err = registration_error(est, true, centre)
    assert err["rotation_deg"] == pytest.approx(1.5, abs=1e-6)
    assert err["translation_mm"] == pytest.approx(0.0, abs=1e-9)
    shifted = true.copy()
    shifted[:3, 3] += [0.0, 3.0, 4.0]
    assert registration_error(shifted, true, centre)["translation_mm"] == pytest.approx(5.0)
