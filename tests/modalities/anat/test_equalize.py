"""Histogram equalization within the brain and the slice-trimming rule."""

from __future__ import annotations

import numpy as np
import pytest

from braincam.errors import ConfigError, InputError
from braincam.modalities.anat.equalize import equalize, trim_range
from builders.anat import contrast


@pytest.mark.parametrize("method", ["global", "adaptive", "none"])
def test_equalize_range_and_in_brain_only(template, method: str) -> None:
    t1 = contrast(template, (0.25, 0.65, 1.0)) * 800 + 50  # background 50, not 0
    mask = template.tissue > 0.5
    out = equalize(t1, mask, method)
    assert out.dtype == np.float32 and out.shape == t1.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(out[~mask] == 0.0)
    assert out[mask].max() > 0.9 and np.ptp(out[mask]) > 0.8
    if method == "global":
        # Equalized: in-brain values spread evenly over [0, 1] (quartiles near 0.25/0.5/0.75).
        q = np.quantile(out[mask], [0.25, 0.5, 0.75])
        assert np.allclose(q, [0.25, 0.5, 0.75], atol=0.1)


def test_equalize_rejects_bad_mask_and_method() -> None:
    with pytest.raises(InputError, match="shapes"):
        equalize(np.ones((4, 4, 4)), np.ones((4, 4, 3), bool))
    with pytest.raises(ConfigError, match="equalize"):
        equalize(np.ones((4, 4, 4)), np.ones((4, 4, 4), bool), "median")


def test_trim_range_follows_the_documented_rule() -> None:
    mask = np.zeros((10, 10, 12), bool)
    areas = [0, 2, 5, 20, 60, 100, 100, 80, 30, 9, 10, 0]  # pixels per axial slice
    for k, a in enumerate(areas):
        mask[:, :, k].flat[:a] = True
    assert mask.sum(axis=(0, 1)).tolist() == areas
    # ≥ 10 % of the largest slice (100 px): slices 3..10 (9 px at slice 9 sits inside the range).
    assert trim_range(mask, 2, 0.10) == (3, 10)
    assert trim_range(mask, 2, 0.5) == (4, 7)
    assert trim_range(mask, 2, 0.0) == (0, 11)
    with pytest.raises(InputError, match="empty"):
        trim_range(np.zeros((3, 3, 3), bool), 2)
