"""Lesion-level hit rate (metrics/lesions.py) on hand-built masks and maps with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from braincam.errors import InputError
from braincam.metrics.lesions import (
    chance_level,
    equivalent_diameter,
    hit_rate_by_size,
    label_lesions,
    lesion_hits,
    local_maxima,
)
from braincam.metrics.localization import baseline_maps


def _bump(shape: tuple[int, ...], centre: tuple[float, ...], width: float = 2.0) -> torch.Tensor:
    """A Gaussian bump: one local maximum, at ``centre``."""
    grids = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return torch.exp(-d2 / (2 * width**2))


def _two_lesions() -> torch.Tensor:
    """One 16×16 slice: lesion A (3×3 at rows 2–4, cols 2–4), lesion B (3×3 at rows 10–12,
    cols 10–12)."""
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    mask[0, 10:13, 10:13] = True
    return mask


def test_map_peaking_in_one_of_two_lesions_hits_half() -> None:
    mask = _two_lesions()
    maps = _bump((16, 16), (3.0, 3.0))[None]
    out = lesion_hits(maps, mask)
    assert out["hit"].tolist() == [True, False]
    assert out["voxels"].tolist() == [9, 9]
    assert out["sample"].tolist() == [0, 0]
    rows = hit_rate_by_size(out)
    assert rows[0]["bin"] == "all" and rows[0]["hit_rate"] == 0.5
    assert (rows[0]["n_lesions"], rows[0]["n_hit"]) == (2, 1)


def test_a_small_bump_below_the_chance_level_is_not_a_hit() -> None:
    """Lesion B holds a genuine local maximum, but far below the 18 highest pixels (K = 18)."""
    mask = _two_lesions()
    maps = (_bump((16, 16), (3.0, 3.0)) + 0.01 * _bump((16, 16), (11.0, 11.0), 0.7))[None]
    assert bool(local_maxima(maps)[0, 11, 11])
    level = float(chance_level(maps, mask)[0])
    assert float(maps[0, 11, 11]) < level
    assert lesion_hits(maps, mask)["hit"].tolist() == [True, False]
    # the same bump raised above the level counts
    raised = (_bump((16, 16), (3.0, 3.0)) + 1.5 * _bump((16, 16), (11.0, 11.0), 0.7))[None]
    assert lesion_hits(raised, mask)["hit"].tolist() == [True, True]


def test_chance_level_is_the_k_plus_first_largest_value() -> None:
    maps = torch.arange(16.0).view(1, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, :3] = True  # K = 3: the level is the 4th largest value, 12
    assert chance_level(maps, mask).tolist() == [12.0]
    full = torch.ones(1, 4, 4, dtype=torch.bool)  # K = P: the minimum
    assert chance_level(maps, full).tolist() == [0.0]


def test_map_peaking_between_the_lesions_hits_none() -> None:
    mask = _two_lesions()
    maps = _bump((16, 16), (7.0, 7.0), 3.0)[None]  # (7, 7) is in neither lesion
    out = lesion_hits(maps, mask)
    assert out["hit"].tolist() == [False, False]
    assert hit_rate_by_size(out)[0]["hit_rate"] == 0.0


def test_plateaus_flat_top_counts_shelf_does_not() -> None:
    # a ramp rising to the right (column c holds c) with a flat shelf on its way up (cols 3-5)
    # and a flat top of 2×2 pixels in the corner; the rest of the last column is a ridge of 9s
    # that rises into the top, so no pixel of it is a maximum either (the drop must spread)
    maps = torch.arange(10.0).repeat(10, 1)
    maps[:, 3:6] = 3.0
    maps[0:2, 8:] = 10.0
    peaks = local_maxima(maps[None])[0]
    assert peaks[0:2, 8:].all() and int(peaks.sum()) == 4
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 0:2, 8:10] = True  # on the flat top (first in raster order)
    mask[0, 4:7, 3:6] = True  # on the shelf
    out = lesion_hits(maps[None], mask)
    assert out["hit"].tolist() == [True, False]
    # the shelf inside the lesion equals its 3×3 maximum in its middle column, yet is no peak
    assert maps[5, 4] == maps[4:7, 3:6].max()


def test_constant_and_uniform_maps_hit_nothing() -> None:
    mask = _two_lesions()
    assert local_maxima(torch.full((1, 16, 16), 0.3)).all()  # one flat top
    uniform = baseline_maps(torch.zeros(1, 16, 16), "uniform")
    assert lesion_hits(uniform, mask)["hit"].tolist() == [False, False]


def test_known_yes_and_known_no() -> None:
    """The mask itself as a map hits every lesion (each is a flat top of exactly the K highest
    pixels); its negative hits none. Blurred, a faint lesion next to a large bright one drops
    out: the large one's halo takes the K highest pixels (the chance level is per sample)."""
    mask = torch.zeros(2, 24, 24, dtype=torch.bool)
    mask[0, 3:6, 3:6] = True
    mask[0, 15:17, 18:20] = True
    mask[1, 2, 20] = True
    mask[1, 10:15, 4:9] = True
    yes = lesion_hits(mask.float(), mask)
    assert yes["hit"].tolist() == [True, True, True, True]
    assert yes["sample"].tolist() == [0, 0, 1, 1]
    assert yes["voxels"].tolist() == [9, 4, 1, 25]
    assert not lesion_hits(-mask.float(), mask)["hit"].any()
    kernel = _bump((5, 5), (2.0, 2.0), 1.0)
    blurred = torch.nn.functional.conv2d(mask[:, None].float(), kernel[None, None], padding=2)[:, 0]
    assert lesion_hits(blurred, mask)["hit"].tolist() == [True, True, False, True]
    assert not lesion_hits(-blurred, mask)["hit"].any()


def test_size_bins_by_equivalent_diameter() -> None:
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[0, 1, 1] = True  # 1 px at 2 mm: 4 mm², d = 2.26 mm
    mask[0, 5:7, 5:7] = True  # 4 px: 16 mm², d = 4.51 mm
    mask[0, 10:13, 10:13] = True  # 9 px: 36 mm², d = 6.77 mm
    mask[0, 14:20, 14:20] = True  # 36 px: 144 mm², d = 13.5 mm
    maps = _bump((20, 20), (11.0, 11.0), 1.5)[None]
    out = lesion_hits(maps, mask, spacing=2.0)
    expected = [math.sqrt(4 * 4 * n / math.pi) for n in (1, 4, 9, 36)]
    assert out["diameter_mm"].tolist() == pytest.approx(expected)
    rows = {r["bin"]: r for r in hit_rate_by_size(out)}
    assert list(rows) == ["all", "0-3mm", "3-6mm", "6-10mm", "10mm+"]
    assert [rows[b]["n_lesions"] for b in rows] == [4, 1, 1, 1, 1]
    assert [rows[b]["hit_rate"] for b in rows] == [0.25, 0.0, 0.0, 1.0, 0.0]
    assert rows["10mm+"]["high_mm"] is None and rows["3-6mm"]["low_mm"] == 3.0
    # other bins; an empty bin has no rate
    custom = {r["bin"]: r for r in hit_rate_by_size(out, bins_mm=(5.0, 50.0))}
    assert custom["50mm+"]["n_lesions"] == 0 and custom["50mm+"]["hit_rate"] is None
    assert custom["5-50mm"]["n_lesions"] == 2
    # anisotropic spacing per axis: 1 px of 1 × 4 mm is 4 mm² too
    aniso = lesion_hits(maps, mask, spacing=(1.0, 4.0))
    assert aniso["diameter_mm"].tolist() == pytest.approx(expected)


def test_three_d_lesions_and_connectivity() -> None:
    mask = torch.zeros(1, 12, 12, 12, dtype=torch.bool)
    mask[0, 2:4, 2:4, 2:4] = True  # 8 voxels
    mask[0, 4, 4, 4] = True  # touches the cube at a corner only
    mask[0, 8:11, 8:11, 8:11] = True  # 27 voxels
    labels, count = label_lesions(mask, "face")
    assert count == 3 and labels[0, 4, 4, 4] not in (0, labels[0, 3, 3, 3])
    full, count_full = label_lesions(mask, "full")
    assert count_full == 2 and full[0, 4, 4, 4] == full[0, 3, 3, 3] == 1
    maps = _bump((12, 12, 12), (9.0, 9.0, 9.0))[None]
    out = lesion_hits(maps, mask, spacing=1.0)
    assert out["voxels"].tolist() == [9, 27]
    assert out["hit"].tolist() == [False, True]
    assert out["diameter_mm"][1].item() == pytest.approx((6 * 27 / math.pi) ** (1 / 3))
    face = lesion_hits(maps, mask, connectivity="face")
    assert face["voxels"].tolist() == [8, 1, 27]


def test_batch_lesions_stay_in_their_sample() -> None:
    """The same pixel set in two samples is two lesions, each scored against its own map."""
    mask = _two_lesions().expand(2, 16, 16).clone()
    maps = torch.stack([_bump((16, 16), (3.0, 3.0)), _bump((16, 16), (11.0, 11.0))])
    out = lesion_hits(maps, mask)
    assert out["sample"].tolist() == [0, 0, 1, 1]
    assert out["hit"].tolist() == [True, False, False, True]


def test_random_baseline_matches_the_derived_probability() -> None:
    """Two single-pixel lesions, not neighbours, in an 8×8 field (P = 64, K = 2), each with 8
    neighbours: hit probability 2/P − 8/(P(P−1)) (module docstring). 40 000 lesion draws under
    a fixed seed: tolerance 4 binomial standard deviations."""
    n, p = 20_000, 64
    mask = torch.zeros(n, 8, 8, dtype=torch.bool)
    mask[:, 2, 2] = True
    mask[:, 5, 5] = True
    maps = baseline_maps(mask.float(), "random", torch.Generator().manual_seed(0))
    rate = hit_rate_by_size(lesion_hits(maps, mask))[0]["hit_rate"]
    expected = 2 / p - 8 / (p * (p - 1))
    sd = math.sqrt(expected * (1 - expected) / (2 * n))
    assert rate == pytest.approx(expected, abs=4 * sd)
    # one single-pixel lesion (K = 1): a hit iff it is the global maximum, probability 1/P
    single = torch.zeros(n, 8, 8, dtype=torch.bool)
    single[:, 3, 4] = True
    rate1 = hit_rate_by_size(lesion_hits(maps, single))[0]["hit_rate"]
    sd1 = math.sqrt((1 / p) * (1 - 1 / p) / n)
    assert rate1 == pytest.approx(1 / p, abs=4 * sd1)


def test_equivalent_diameter_and_input_errors() -> None:
    assert equivalent_diameter(torch.tensor([1]), torch.tensor([math.pi]), 2).item() == (
        pytest.approx(2.0)
    )
    assert equivalent_diameter(torch.tensor([1]), torch.tensor([math.pi / 6]), 3).item() == (
        pytest.approx(1.0)
    )
    mask, maps = _two_lesions(), _bump((16, 16), (3.0, 3.0))[None]
    with pytest.raises(InputError, match="spacing"):
        lesion_hits(maps, mask, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        lesion_hits(maps, mask, spacing=0.0)
    with pytest.raises(InputError, match="connectivity"):
        lesion_hits(maps, mask, connectivity="edge")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="bins_mm"):
        hit_rate_by_size(lesion_hits(maps, mask), bins_mm=(6.0, 3.0))
    with pytest.raises(InputError, match="shape"):
        lesion_hits(maps, mask[:, :8])
    # per-sample spacing (N, ndim)
    out = lesion_hits(maps, mask, spacing=torch.tensor([[2.0, 2.0]]))
    assert out["diameter_mm"].tolist() == pytest.approx([math.sqrt(4 * 36 / math.pi)] * 2)
