"""Consistency of heatmaps: pairwise correlation within groups, frequency maps of top regions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from braincam.errors import InputError
from braincam.metrics.consistency import (
    consistency,
    consistency_levels,
    correlation_matrix,
    frequency_maps,
    mean_pairwise_correlation,
    top_mask,
)


def test_correlation_matrix_matches_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 6, 7, generator=g)
    np.testing.assert_allclose(
        correlation_matrix(maps).numpy(), np.corrcoef(maps.flatten(1).numpy()), atol=1e-10
    )


@pytest.mark.parametrize("shape", [(6, 8), (5, 6, 4)])
def test_identical_maps_give_one(shape: tuple[int, ...]) -> None:
    m = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    maps = m.expand(4, *shape).clone()
    assert mean_pairwise_correlation(maps) == pytest.approx(1.0)


def test_anticorrelated_pairs_give_minus_one() -> None:
    m = torch.rand(1, 9, 9, generator=torch.Generator().manual_seed(2))
    maps = torch.cat([m, 1.0 - m, 2 * m + 3, -m])  # pairs (0,1), (2,3) anti-correlated
    table = pd.DataFrame({"pair": ["a", "a", "b", "b"]})
    out = consistency(maps, table, ["pair"])
    np.testing.assert_allclose(out["mean_r"], -1.0, atol=1e-9)
    assert list(out["n_pairs"]) == [1, 1]


def test_constant_maps_are_left_out() -> None:
    m = torch.rand(1, 5, 5, generator=torch.Generator().manual_seed(3))
    maps = torch.cat([m, m, torch.zeros(1, 5, 5)])
    assert torch.isnan(correlation_matrix(maps)[2]).all()
    out = consistency(maps, pd.DataFrame({"g": [0, 0, 0]}), "g")
    assert out["n_pairs"].item() == 1 and out["mean_r"].item() == pytest.approx(1.0)
    alone = consistency(maps[2:], pd.DataFrame({"g": [0]}), "g")
    assert alone["n_pairs"].item() == 0 and math.isnan(alone["mean_r"].item())


def test_exclude_same_drops_within_subject_pairs() -> None:
    m = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(4))
    # Subject s1's two maps agree perfectly; across subjects they are anti-correlated.
    maps = torch.cat([m, m, -m])
    table = pd.DataFrame({"label": ["x"] * 3, "participant_id": ["s1", "s1", "s2"]})
    with_all = consistency(maps, table, ["label"])
    across = consistency(maps, table, ["label"], exclude_same="participant_id")
    assert with_all["n_pairs"].item() == 3
    assert with_all["mean_r"].item() == pytest.approx(-1 / 3)
    assert across["n_pairs"].item() == 2
    assert across["mean_r"].item() == pytest.approx(-1.0)


def test_consistency_levels_tidy_rows() -> None:
    g = torch.Generator().manual_seed(5)
    base = torch.rand(2, 8, 8, generator=g)  # one pattern per slice position
    rows, maps = [], []
    for model in ("m1", "m2"):
        for method in ("gradcam", "cam"):
            for sub, label in (("s1", "A"), ("s2", "A"), ("s3", "B")):
                for pos in (0, 1):
                    rows.append(
                        {
                            "model": model,
                            "method": method,
                            "participant_id": sub,
                            "label": label,
                            "axis": "axial",
                            "position": pos,
                        }
                    )
                    maps.append(base[pos])
    table = pd.DataFrame(rows)
    out = consistency_levels(torch.stack(maps), table)
    assert set(out["level"]) == {
        "slices_of_subject",
        "subjects_of_class",
        "across_models",
        "across_methods",
    }
    # Same pattern at a position for every model/method/subject: all those levels are 1.
    for level in ("subjects_of_class", "across_models", "across_methods"):
        sub = out[(out["level"] == level) & (out["n_pairs"] > 0)]
        np.testing.assert_allclose(sub["mean_r"], 1.0, atol=1e-9)
    # Class B has a single subject: no cross-subject pairs.
    b_rows = out[(out["level"] == "subjects_of_class") & (out["label"] == "B")]
    assert (b_rows["n_pairs"] == 0).all()
    # Slices of one subject compare two different patterns.
    expected = float(np.corrcoef(base.flatten(1).numpy())[0, 1])
    sos = out[out["level"] == "slices_of_subject"]
    np.testing.assert_allclose(sos["mean_r"], expected, atol=1e-9)


def test_frequency_map_of_identical_maps_is_top_indicator() -> None:
    m = torch.zeros(10, 10)
    m[2:4, 3:8] = torch.linspace(1, 2, 10).reshape(2, 5)  # 10 locations = top 10 %
    m += 0.01 * torch.arange(100.0).reshape(10, 10)  # distinct background, below the blob
    maps = m.expand(6, 10, 10).clone()
    classes, freq, counts = frequency_maps(maps, ["a", "b", "a", "b", "a", "a"])
    indicator = torch.zeros(10, 10)
    indicator[2:4, 3:8] = 1.0
    assert classes == ["a", "b"]
    assert counts.tolist() == [4, 2]
    for c in range(2):
        torch.testing.assert_close(freq[c], indicator)


def test_frequency_counts_share_of_maps_3d() -> None:
    a = torch.zeros(4, 4, 5)
    a[0, 0, 0] = 1.0
    b = torch.zeros(4, 4, 5)
    b[3, 3, 4] = 1.0
    maps = torch.stack([a, a, a, b])
    _, freq, _ = frequency_maps(maps, [0, 0, 0, 0], top_fraction=0.01)
    assert freq[0, 0, 0, 0].item() == pytest.approx(0.75)
    assert freq[0, 3, 3, 4].item() == pytest.approx(0.25)
    assert freq.sum().item() == pytest.approx(1.0)


def test_top_mask_constant_map_has_no_top_and_ties_included() -> None:
    assert not top_mask(torch.ones(1, 5, 5)).any()
    m = torch.zeros(1, 10, 10)
    m[0, :2, :6] = 1.0  # 12 tied maxima for a top 10 % of 100 locations: all included
    assert top_mask(m).sum().item() == 12
    m[0, 5, 5] = 0.5  # one more location above the minimum, below the threshold
    assert not top_mask(m)[0, 5, 5]


def test_bad_inputs_raise() -> None:
    with pytest.raises(InputError, match="one row per map"):
        consistency(torch.rand(3, 4, 4), pd.DataFrame({"g": [0, 1]}), ["g"])
    with pytest.raises(InputError, match="columns missing"):
        consistency(torch.rand(2, 4, 4), pd.DataFrame({"g": [0, 1]}), ["nope"])
    with pytest.raises(InputError, match="top_fraction"):
        top_mask(torch.rand(2, 4, 4), 0.0)
    with pytest.raises(InputError, match="one class per map"):
        frequency_maps(torch.rand(2, 4, 4), [0])
