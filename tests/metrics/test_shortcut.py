"""The shortcut alarm: heatmap mass outside the brain and in the head's rim vs their area."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from braincam.errors import InputError
from braincam.metrics.shortcut import outside_brain_shares, rim_band, shortcut_alarm


def _disc(n: int, size: int, radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    one = ((yy - c) ** 2 + (xx - c) ** 2) <= radius**2
    return one.expand(n, size, size).clone()


def test_rim_is_the_euclidean_band_outside_the_brain() -> None:
    brain = _disc(2, 40, 10)
    rim = rim_band(brain, 4)
    # the same band by an independent route: distance to the nearest brain pixel in (0, 4]
    dist = ndi.distance_transform_edt(~brain[0].numpy())
    expected = (dist > 0) & (dist <= 4)
    assert np.array_equal(rim[0].numpy(), expected)
    assert not (rim & brain).any()
    with pytest.raises(InputError, match="at least one pixel"):
        rim_band(brain, 0)


def test_shares_by_hand() -> None:
    brain = torch.tensor([[[True, True], [False, False]]])
    rim = torch.tensor([[[False, False], [True, False]]])
    maps = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])
    s = outside_brain_shares(maps, brain, rim)
    assert s["mass_outside"].item() == pytest.approx(0.5)  # 2 of 4
    assert s["area_outside"].item() == pytest.approx(0.5)
    assert s["mass_rim"].item() == pytest.approx(0.5)
    assert s["area_rim"].item() == pytest.approx(0.25)
    # a map without mass has no share (NaN), not 0
    empty = outside_brain_shares(torch.zeros(1, 2, 2), brain, rim)
    assert torch.isnan(empty["mass_outside"]).all()
    with pytest.raises(InputError, match="one shape"):
        outside_brain_shares(maps, brain[:, :1], rim)


def _noisy(maps: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return maps + 0.05 * torch.rand(maps.shape, generator=g)


def test_alarm_fires_on_maps_on_the_scalp() -> None:
    # known yes: maps that light up the rim just outside the brain (where a scalp would be)
    brain = _disc(12, 64, 20)
    ring = _disc(12, 64, 24) & ~brain
    res = shortcut_alarm(_noisy(ring.float(), 0), brain, rim_width=6)
    assert res["alarm"] is True
    assert res["rim"]["fires"] is True and res["outside_brain"]["fires"] is True
    assert res["rim"]["mass"] > 0.8 > res["rim"]["area"]
    assert res["n_maps"] == 12


def test_alarm_fires_on_the_rim_even_when_air_dominates_the_slice() -> None:
    # a big field of view: most of the slice is air, so "outside the brain" is a large area the
    # rim-focused map does not exceed — the rim figure still catches it
    brain = _disc(12, 128, 12)
    ring = _disc(12, 128, 15) & ~brain
    maps = 0.3 * ring.float() + 0.7 * brain.float() / brain[0].sum() * ring[0].sum()
    res = shortcut_alarm(_noisy(maps, 1), brain, rim_width=5)
    assert res["outside_brain"]["mass"] < res["outside_brain"]["area"]
    assert res["outside_brain"]["fires"] is False
    assert res["rim"]["fires"] is True and res["alarm"] is True


def test_alarm_stays_quiet_on_maps_inside_the_brain_and_on_a_uniform_map() -> None:
    # known no: maps on a blob inside the brain; and a uniform map (exactly its area's share)
    brain = _disc(12, 64, 20)
    blob = _disc(12, 64, 8).float()
    inside = shortcut_alarm(_noisy(blob, 2), brain, rim_width=6)
    assert inside["alarm"] is False
    assert inside["outside_brain"]["mass"] < inside["outside_brain"]["area"]
    uniform = shortcut_alarm(torch.ones(12, 64, 64), brain, rim_width=6)
    assert uniform["alarm"] is False
    assert uniform["outside_brain"]["excess"] == pytest.approx(0.0, abs=1e-12)
    assert uniform["rim"]["mass"] == pytest.approx(uniform["rim"]["area"])


def test_a_small_excess_within_the_margin_does_not_fire() -> None:
    # maps put 1 percentage point more than the area outside the brain: below the 2 % margin
    brain = _disc(20, 32, 10)
    area = float((~brain[0]).float().mean())
    target = area + 0.01
    out_w = target / (~brain[0]).sum()
    in_w = (1 - target) / brain[0].sum()
    maps = torch.where(brain, in_w, out_w).float()
    res = shortcut_alarm(maps, brain, rim_width=3, margin=0.02)
    assert res["outside_brain"]["excess"] == pytest.approx(0.01, abs=1e-6)
    assert res["outside_brain"]["fires"] is False
    assert shortcut_alarm(maps, brain, rim_width=3, margin=0.005)["outside_brain"]["fires"]
