"""braincam's one map normalization and the callers that treat constant maps their own way."""

from __future__ import annotations

import pytest
import torch

from braincam.cam.postprocess import normalize_maps, upsample_maps, upsampled_extremes
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


def test_normalize_by_hand_negative_offset_and_3d() -> None:
    maps = torch.tensor([[[-2.0, 0.0], [2.0, 6.0]], [[1.0, 1.0], [1.0, 1.5]]])
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    assert torch.allclose(normalize_maps(maps), expected)
    vol = torch.stack([torch.arange(8.0).view(2, 2, 2) * 3 + 1, torch.ones(2, 2, 2)])
    out = normalize_maps(vol)
    assert torch.allclose(out[0], torch.arange(8.0).view(2, 2, 2) / 7)
    assert torch.equal(out[1], torch.zeros(2, 2, 2))
    assert out.shape == vol.shape and out.dtype == torch.float32


def test_upsample_2d_is_bilinear_half_pixel_by_hand() -> None:
    low = torch.tensor([[[0.0, 4.0], [8.0, 12.0]]])
    up = upsample_maps(low, (4, 4))
    # align_corners=False: output pixel centres at 0.25, 0.75 of the input cells; edges clamp
    row = torch.tensor([0.0, 1.0, 3.0, 4.0])
    expected = row[None, :] + 2 * row[:, None]
    assert up.shape == (1, 4, 4)
    assert torch.allclose(up[0], expected)


def test_upsample_3d_is_trilinear_by_hand() -> None:
    low = torch.zeros(1, 2, 1, 1)
    low[0, 1] = 8.0  # a depth ramp only
    up = upsample_maps(low, [4, 3, 2])
    assert up.shape == (1, 4, 3, 2)
    depth = torch.tensor([0.0, 2.0, 6.0, 8.0])
    assert torch.allclose(up[0], depth[:, None, None].expand(4, 3, 2))


def test_upsample_to_the_same_grid_is_the_identity() -> None:
    maps = torch.rand(2, 5, 6)
    assert upsample_maps(maps, (5, 6)) is maps
    assert upsample_maps(maps, torch.Size([5, 6])) is maps


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((7, 7), (224, 224)),  # even scale: the source samples themselves are never hit
        ((5, 9), (63, 50)),  # odd and uneven scales
        ((12, 12), (7, 7)),  # downsampling
        ((1, 3), (5, 8)),  # a single source row: every output row equal
        ((4, 5, 6), (33, 40, 29)),  # trilinear
        ((6, 6), (6, 6)),  # same grid: the map's own extremes
    ],
)
def test_upsampled_extremes_equal_those_of_the_upsampled_maps(
    source: tuple[int, ...], target: tuple[int, ...]
) -> None:
    torch.manual_seed(sum(source) + sum(target))
    maps = torch.randn(9, *source, dtype=torch.float64)
    # peaks placed between source samples' interpolation rows too: a sharp spike per map
    maps.view(9, -1)[torch.arange(9), torch.randint(0, maps[0].numel(), (9,))] += 5.0
    up = upsample_maps(maps, target).flatten(1)
    expected = torch.stack(torch.aminmax(up, dim=1), dim=1)
    got = upsampled_extremes(maps, target, block=40)  # several blocks
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # not merely the source's extremes: for a real upsampling they differ
    if source != target and max(source) > 1:
        src = torch.stack(torch.aminmax(maps.flatten(1), dim=1), dim=1)
        assert not torch.allclose(got, src)
