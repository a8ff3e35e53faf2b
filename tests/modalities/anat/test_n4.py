"""N4 bias-field correction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from braincam.errors import InputError
from braincam.modalities.anat.n4 import n4_correct
from braincam.modalities.anat.preprocess import AnatParams
from builders.anat import contrast


def test_n4_lowers_white_matter_cov(template) -> None:
    t1 = contrast(template, (0.25, 0.65, 1.0)) * 1000
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in t1.shape], indexing="ij"))
    bias = np.exp(0.3 * grid[0] - 0.25 * grid[2] + 0.15 * grid[0] * grid[1]).astype(np.float32)
    noisy = t1 * bias + np.random.default_rng(0).normal(0, 10, t1.shape).astype(np.float32)
    wm = ndi.binary_erosion(template.wm > 0.9)

    def cov(x: np.ndarray) -> float:
        return float(x[wm].std() / x[wm].mean())

    corrected, field = n4_correct(noisy, template.affine, AnatParams())
    assert field.shape == t1.shape and np.all(field > 0)
    assert cov(noisy) > 0.1
    assert cov(corrected) < 0.6 * cov(noisy)
    # The estimated field follows the true one (up to N4's free global scale).
    head = template.tissue > 0.5
    assert np.corrcoef(np.log(field[head]), np.log(bias[head]))[0, 1] > 0.9


def test_n4_refuses_a_blank_image() -> None:
    with pytest.raises(InputError, match="empty"):
        n4_correct(np.zeros((20, 20, 20), np.float32), np.eye(4), AnatParams())
