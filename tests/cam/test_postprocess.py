"""braincam's one map normalization and the callers that treat constant maps their own way."""

from __future__ import annotations

import torch

from braincam.cam.postprocess import normalize_maps
from braincam.metrics import boxes as bx
from braincam.metrics import sanity


def _maps() -> torch.Tensor:
    constant = torch.full((5, 5), 3.0)
    ramp = torch.arange(25.0).view(5, 5)
    return torch.stack([constant, ramp, torch.zeros(5, 5)])


def test_one_rule_constant_map_is_zero() -> None:
    out = normalize_maps(_maps())
    assert torch.equal(out[0], torch.zeros(5, 5)) and torch.equal(out[2], torch.zeros(5, 5))
    assert torch.equal(out[1], torch.arange(25.0).view(5, 5) / 24.0)
    maps = _maps()
    normalize_maps(maps)
    assert torch.equal(maps, _maps())  # the input is left alone
    assert normalize_maps(_maps().double()).dtype == torch.float64


def test_threshold_region_of_a_constant_map_is_the_whole_field() -> None:
    for threshold in (0.0, 0.2, 1.0):
        regions = bx.threshold_regions(_maps(), threshold)
        assert regions[0].all() and regions[2].all(), threshold
        assert torch.equal(regions[1], normalize_maps(_maps())[1] >= threshold)


def test_sanity_ssim_scales_with_the_one_rule() -> None:
    maps = _maps()
    scaled = sanity._scaled(maps)
    assert scaled.dtype == torch.float32
    assert torch.equal(scaled, normalize_maps(maps.double()).float())
