"""Localization metrics: known answers, constant/random maps, 2D = 3D, Quantus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from braincam.errors import InputError
from braincam.metrics import boxes as bx
from braincam.metrics import localization as loc
from builders.reference import require

METRICS = (
    "pointing_game",
    "pointing_game_tolerant",
    "relevance_mass",
    "relevance_rank_accuracy",
    "iou_threshold",
    "iou_box",
    "auroc",
)


def _square_masks(n: int = 3, size: int = 12) -> torch.Tensor:
    """Masks with a different square per sample (a box, so box IoU can reach 1)."""
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        masks[i, 1 + i : 5 + i, 2 : 6 + i] = True
    return masks


def test_map_equal_to_mask_scores_perfectly() -> None:
    masks = _square_masks()
    table = loc.localization_table(masks.float(), masks)
    for name in METRICS:
        assert torch.allclose(table[name], torch.ones(3)), name


def test_map_outside_mask_scores_zero() -> None:
    masks = torch.zeros(2, 12, 12, dtype=torch.bool)
    masks[:, :4, :4] = True
    maps = torch.zeros(2, 12, 12)
    maps[:, 7:11, 6:12] = 1.0  # a blob far from the mask (further than the tolerance)
    maps[1, 8, 8] = 2.0
    table = loc.localization_table(maps, masks, tolerance=2.0)
    for name in METRICS:
        if name != "auroc":  # a blob leaves ties with the mask at 0; AUROC 0 needs the complement
            assert torch.equal(table[name], torch.zeros(2)), name
    assert torch.all((table["auroc"] > 0) & (table["auroc"] < 0.5))
    assert torch.equal(loc.auroc((~masks).float(), masks), torch.zeros(2))


def test_constant_map_gives_documented_values() -> None:
    masks = _square_masks()
    fraction = masks.flatten(1).float().mean(1)
    table = loc.localization_table(torch.full((3, 12, 12), 0.7), masks, tolerance=0.0)
    for name in ("pointing_game", "relevance_mass", "relevance_rank_accuracy", "iou_threshold"):
        assert torch.allclose(table[name], fraction), name
    # The box of a constant map is the whole field, so its IoU with the mask is the fraction.
    assert torch.allclose(table["iou_box"], fraction)
    assert torch.allclose(table["auroc"], torch.full((3,), 0.5))
    # An all-zero (or all-negative) map is constant too.
    assert torch.allclose(loc.relevance_mass(-torch.ones(3, 12, 12), masks), fraction)
    # Quantus' tie rule ("any tied maximum hits") gives a constant map a hit.
    assert torch.equal(loc.pointing_game(torch.ones(3, 12, 12), masks, ties="any"), torch.ones(3))


def test_pointing_game_ties_are_shared() -> None:
    masks = torch.zeros(1, 6, 6, dtype=torch.bool)
    masks[0, 0, 0] = True
    maps = torch.zeros(1, 6, 6)
    maps[0, 0, 0] = maps[0, 5, 5] = maps[0, 5, 0] = maps[0, 0, 5] = 1.0
    assert loc.pointing_game(maps, masks).item() == pytest.approx(0.25)
    assert loc.pointing_game(maps, masks, ties="any").item() == 1.0


def test_rank_accuracy_shares_ties_at_the_cut() -> None:
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = masks[0, 0, 1] = True  # K = 2
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0] = 1.0  # best voxel, in the mask
    maps[0, 0, 1] = maps[0, 2, 2] = maps[0, 3, 3] = 0.5  # three tied for the last place, one in
    assert loc.relevance_rank_accuracy(maps, masks).item() == pytest.approx((1 + 1 / 3) / 2)


def test_pointing_game_tolerance_is_euclidean() -> None:
    masks = torch.zeros(1, 20, 20, dtype=torch.bool)
    masks[0, 0, 0] = True
    maps = torch.zeros(1, 20, 20)
    maps[0, 3, 4] = 1.0  # distance 5 from the mask voxel
    assert loc.pointing_game(maps, masks).item() == 0.0
    assert loc.pointing_game(maps, masks, tolerance=4.9).item() == 0.0
    assert loc.pointing_game(maps, masks, tolerance=5.0).item() == 1.0
    # Other samples' masks never count (the batch axis is out of reach).
    masks2 = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks2[0, 19, 19] = True
    masks2[1, 3, 4] = True
    maps2 = maps.expand(2, 20, 20).clone()
    assert loc.pointing_game(maps2, masks2, tolerance=3.0).tolist() == [0.0, 1.0]
    assert loc.default_tolerance((224, 224)) == 15.0


def test_precomputed_zone_gives_the_same_tolerant_score() -> None:
    masks = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks[0, 0, 0] = masks[1, 10, 10] = True
    maps = torch.zeros(2, 20, 20)
    maps[0, 3, 4] = 1.0  # distance 5 from sample 0's mask voxel
    maps[1, 10, 17] = 1.0  # distance 7 from sample 1's
    zone = loc.tolerance_zone(masks, 5.0)
    assert zone[0, 3, 4] and not zone[1, 10, 17] and zone.sum() < zone.numel()
    expected = loc.pointing_game(maps, masks, tolerance=5.0)
    assert expected.tolist() == [1.0, 0.0]
    assert torch.equal(loc.pointing_game(maps, masks, tolerance=5.0, zone=zone), expected)
    table = loc.localization_table(maps, masks, tolerance=5.0, zone=zone)
    assert torch.equal(table["pointing_game_tolerant"], expected)
    assert torch.equal(loc.tolerance_zone(masks, 0.0), masks)
    with pytest.raises(InputError, match="zone"):
        loc.pointing_game(maps, masks, tolerance=5.0, zone=zone[:1])
    with pytest.raises(InputError, match="tolerance"):
        loc.tolerance_zone(masks, -1.0)


def test_empty_masks_are_nan_and_excluded() -> None:
    masks = _square_masks()
    masks[1] = False
    table = loc.localization_table(masks.float(), masks)
    for name in METRICS:
        assert math.isnan(table[name][1].item()), name
        assert not torch.isnan(table[name][[0, 2]]).any(), name
    summary = loc.summarize_table(table)
    assert summary["n_scored"] == 2 and summary["n_excluded"] == 1
    assert summary["pointing_game"] == 1.0
    assert summary["tolerance"] == pytest.approx(15 * 12 / 224)  # Zhang's 15 px at 224², scaled


def test_random_maps_are_at_chance() -> None:
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(64, 32, 32, dtype=torch.bool)
    masks[:, 8:20, 4:20] = True
    fraction = masks[0].float().mean().item()
    maps = loc.baseline_maps(masks.float(), "random", gen)
    summary = loc.summarize_table(loc.localization_table(maps, masks))
    assert summary["relevance_mass"] == pytest.approx(fraction, abs=0.01)
    assert summary["relevance_rank_accuracy"] == pytest.approx(fraction, abs=0.02)
    assert summary["auroc"] == pytest.approx(0.5, abs=0.02)
    assert summary["pointing_game"] == pytest.approx(fraction, abs=0.12)
    uniform = loc.baseline_maps(masks.float(), "uniform")
    assert torch.equal(uniform, torch.ones_like(uniform))
    with pytest.raises(InputError, match="kind"):
        loc.baseline_maps(masks.float(), "gaussian")  # type: ignore[arg-type]


def test_2d_and_depth1_3d_agree() -> None:
    gen = torch.Generator().manual_seed(1)
    maps = torch.rand(5, 10, 11, generator=gen)
    masks = torch.rand(5, 10, 11, generator=gen) > 0.6
    t2 = loc.localization_table(maps, masks, tolerance=2.0)
    t3 = loc.localization_table(maps[:, None], masks[:, None], tolerance=2.0)
    for name in METRICS:
        assert torch.allclose(t2[name], t3[name]), name
    b2, r2 = bx.bounding_boxes(maps)
    b3, r3 = bx.bounding_boxes(maps[:, None])
    assert torch.equal(r2, r3[:, 0])
    assert torch.equal(b2, b3[:, [1, 2, 4, 5]])
    assert torch.equal(b3[:, [0, 3]], torch.tensor([[0, 1]] * 5))


def test_iou_box_against_mask_box() -> None:
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, 2:8, 2:8] = True
    masks[0, 2:5, 2:5] = False  # an L shape: its box is the 6×6 square
    maps = torch.zeros(1, 10, 10)
    maps[0, 2:8, 2:8] = 1.0
    assert loc.iou_box(maps, masks, against="box").item() == pytest.approx(1.0)
    assert loc.iou_box(maps, masks).item() == pytest.approx(27 / 36)


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError, match="shape"):
        loc.pointing_game(torch.rand(4, 4), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(InputError, match="masks must have the maps' shape"):
        loc.relevance_mass(torch.rand(2, 4, 4), torch.ones(2, 4, 5, dtype=torch.bool))
    with pytest.raises(InputError, match="binary"):
        loc.auroc(torch.rand(2, 4, 4), torch.full((2, 4, 4), 0.5))
    with pytest.raises(InputError, match="NaN"):
        loc.auroc(torch.full((2, 4, 4), float("nan")), torch.ones(2, 4, 4))
    with pytest.raises(InputError, match="threshold"):
        bx.bounding_boxes(torch.rand(2, 4, 4), threshold=20)
    with pytest.raises(InputError, match="tolerance"):
        loc.pointing_game(torch.rand(2, 4, 4), torch.ones(2, 4, 4), tolerance=-1)


def test_auroc_matches_sklearn_with_ties() -> None:
    metrics = require("sklearn.metrics")
    gen = torch.Generator().manual_seed(3)
    maps = torch.randint(0, 4, (6, 9, 9), generator=gen).float()  # many ties
    masks = torch.rand(6, 9, 9, generator=gen) > 0.5
    ours = loc.auroc(maps, masks)
    for i in range(6):
        ref = metrics.roc_auc_score(masks[i].flatten().numpy(), maps[i].flatten().numpy())
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("spatial", [(14, 14), (3, 6, 7)])
def test_matches_quantus_on_random_inputs(spatial: tuple[int, ...]) -> None:
    quantus = require("quantus")
    rng = np.random.default_rng(0)
    a = rng.random((6, *spatial))  # continuous: no ties; non-negative: no clipping
    s = rng.random((6, *spatial)) > 0.7
    # Quantus 0.6 only takes 2D images. These four metrics only see the flattened voxels, so a
    # volume is handed to it as a (D·H, W) image and must give braincam's 3D result.
    flat_shape = (6, 1, int(np.prod(spatial[:-1])), spatial[-1])
    a_q, s_q = a.reshape(flat_shape), s.reshape(flat_shape).astype(float)
    x = rng.random(flat_shape)  # Quantus validates x_batch; the metrics never use it
    y = np.zeros(6, dtype=int)
    kwargs = {"disable_warnings": True, "normalise": False, "abs": False}
    pairs = {
        "pointing_game": (quantus.PointingGame, loc.pointing_game),
        "relevance_mass": (quantus.RelevanceMassAccuracy, loc.relevance_mass),
        "relevance_rank_accuracy": (quantus.RelevanceRankAccuracy, loc.relevance_rank_accuracy),
        "auroc": (quantus.AUC, loc.auroc),
    }
    maps, masks = torch.from_numpy(a), torch.from_numpy(s)
    for name, (metric_cls, ours) in pairs.items():
        ref = np.asarray(
            metric_cls(**kwargs)(model=None, x_batch=x, y_batch=y, a_batch=a_q, s_batch=s_q),
            dtype=float,
        )
        np.testing.assert_allclose(ours(maps, masks).numpy(), ref, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("shape", [(6, 12, 13), (3, 5, 9, 8)])
def test_table_equals_each_metric_function(shape: tuple[int, ...]) -> None:
    """The table's shared-sort path gives what every public metric gives on its own."""
    gen = torch.Generator().manual_seed(7)
    maps = (torch.rand(shape, generator=gen) * 6).floor()  # coarse values: many ties
    masks = torch.rand(shape, generator=gen) > 0.7
    masks[0] = False  # an empty mask: NaN in both paths
    table = loc.localization_table(maps, masks, threshold=0.3, tolerance=1.5)
    expected = {
        "pointing_game": loc.pointing_game(maps, masks),
        "pointing_game_tolerant": loc.pointing_game(maps, masks, tolerance=1.5),
        "relevance_mass": loc.relevance_mass(maps, masks),
        "relevance_rank_accuracy": loc.relevance_rank_accuracy(maps, masks),
        "iou_threshold": loc.iou_threshold(maps, masks, 0.3),
        "iou_box": loc.iou_box(maps, masks, 0.3),
        "auroc": loc.auroc(maps, masks),
    }
    for name, values in expected.items():
        assert torch.allclose(table[name], values, equal_nan=True), name
        assert math.isnan(table[name][0].item()), name


def test_cropped_transforms_equal_the_whole_field() -> None:
    """Zone and components are computed on the occupied box only; the result is the same."""
    from scipy import ndimage

    gen = torch.Generator().manual_seed(3)
    masks = torch.zeros(3, 20, 18, 16, dtype=torch.bool)
    masks[0, 2:5, 3:6, 1:3] = True  # near a corner: the grown box is clipped
    masks[1, 12:14, 10:15, 9:12] = True
    # sample 2 empty
    for tol in (0.5, 2.0, 3.7):
        ref = [
            ndimage.distance_transform_edt(~m.numpy()) <= tol if m.any() else np.zeros_like(m)
            for m in masks
        ]
        assert torch.equal(loc.tolerance_zone(masks, tol), torch.from_numpy(np.stack(ref)))
    regions = torch.rand(3, 20, 18, 16, generator=gen) > 0.8
    regions[:, :4] = False  # an empty margin the crop drops
    got = bx.largest_components(regions)
    for i, r in enumerate(regions.numpy()):
        lab, _ = ndimage.label(r, structure=np.ones((3, 3, 3)))
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        first_largest = lab.ravel()[np.flatnonzero(sizes[lab.ravel()] == sizes.max())[0]]
        assert torch.equal(got[i], torch.from_numpy(lab == first_largest)), i
    assert not bx.largest_components(torch.zeros(2, 5, 5, dtype=torch.bool)).any()


# ------------------------------------------------- defaults, options and columns (issue 19)


def _diagonal_blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2×2 square A (the mask), a 3-voxel L touching A only at a corner, a lone voxel far off.

    Face connectivity: A (4) is the largest component. Full connectivity: A and the L join
    (7 voxels). All three are at the map's maximum, so the 20 % region is all 8 voxels.
    """
    maps = torch.zeros(1, 8, 8)
    maps[0, 0:2, 0:2] = 1.0  # A
    maps[0, 2, 2] = maps[0, 2, 3] = maps[0, 3, 2] = 1.0  # the L, diagonal to A's (1, 1)
    maps[0, 7, 7] = 1.0  # a lone voxel
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True
    return maps, masks


def test_largest_component_follows_connectivity() -> None:
    maps, masks = _diagonal_blobs()
    assert loc.iou_threshold(maps, masks).item() == pytest.approx(4 / 8)  # all 8 voxels
    full = loc.iou_threshold(maps, masks, largest_component=True)
    assert full.item() == pytest.approx(4 / 7)  # A + L, the default "full"
    face = loc.iou_threshold(maps, masks, largest_component=True, connectivity="face")
    assert face.item() == pytest.approx(1.0)  # A alone
    # The box of A + L is rows/cols 0..3 (16 voxels); the box of A alone is A.
    assert loc.iou_box(maps, masks).item() == pytest.approx(4 / 16)
    assert loc.iou_box(maps, masks, connectivity="face").item() == pytest.approx(1.0)
    table = loc.localization_table(maps, masks, connectivity="face")
    assert table["iou_box"].item() == pytest.approx(1.0)
    assert loc.localization_table(maps, masks)["iou_box"].item() == pytest.approx(4 / 16)


def test_iou_threshold_default_is_twenty_percent() -> None:
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0], maps[0, 0, 1], maps[0, 0, 2] = 1.0, 0.25, 0.15  # min 0: already in [0, 1]
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    assert loc.iou_threshold(maps, masks).item() == pytest.approx(1.0)  # 0.25 in, 0.15 out
    assert loc.iou_threshold(maps, masks, 0.1).item() == pytest.approx(2 / 3)
    assert loc.iou_threshold(maps, masks, 0.3).item() == pytest.approx(1 / 2)


def test_single_voxel_mask_hit_exactly_scores_one() -> None:
    """A union of one voxel is a defined IoU (1), not the empty-union NaN."""
    maps = torch.zeros(2, 5, 5)
    maps[:, 2, 3] = 1.0
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[0, 2, 3] = True  # the peak itself
    masks[1, 0, 0] = True  # elsewhere: union 2, IoU 0
    assert loc.iou_threshold(maps, masks).tolist() == [1.0, 0.0]
    assert loc.iou_box(maps, masks).tolist() == [1.0, 0.0]
    # K = 1: the top voxel is the mask (1) or not (0).
    assert loc.relevance_rank_accuracy(maps, masks).tolist() == [1.0, 0.0]
    # One positive: above all 24 negatives (1), or tied with 23 of them at 0 (23 / 2 / 24).
    assert loc.auroc(maps, masks).tolist() == pytest.approx([1.0, 23 / 48])
    # The smallest field: one positive above one negative (n_pos · n_neg = 1).
    two = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert loc.auroc(two, torch.tensor([[[True, False]]] * 2)).tolist() == [1.0, 0.0]


def test_table_default_tolerance_uses_the_largest_side() -> None:
    maps, masks = torch.rand(2, 30, 12), torch.zeros(2, 30, 12, dtype=torch.bool)
    masks[:, 3, 3] = True
    table = loc.localization_table(maps, masks)
    assert torch.allclose(table["tolerance"], torch.full((2,), 15 * 30 / 224))


def test_table_uses_the_callers_zone() -> None:
    """A precomputed zone is taken as given (the caller vouches), not computed again."""
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, 0, 0] = True
    maps = torch.zeros(1, 10, 10)
    maps[0, 9, 9] = 1.0  # far from the mask
    everywhere = torch.ones_like(masks)
    table = loc.localization_table(maps, masks, tolerance=0.0, zone=everywhere)
    assert table["pointing_game"].item() == 0.0
    assert table["pointing_game_tolerant"].item() == 1.0


def test_table_mask_fraction_and_dtypes() -> None:
    masks = _square_masks()  # 4×4, 4×5 and 4×6 squares in 12×12
    maps = masks.double()
    table = loc.localization_table(maps, masks, tolerance=1.0)
    expected = torch.tensor([16, 20, 24], dtype=torch.float64) / 144
    assert torch.allclose(table["mask_fraction"], expected)
    assert table["has_mask"].dtype == torch.bool
    for name, values in table.items():
        if name != "has_mask":
            assert values.dtype == torch.float64, name  # the maps' dtype, tolerance included
    assert table["tolerance"].tolist() == [1.0, 1.0, 1.0]


def test_summary_keys_and_all_excluded() -> None:
    masks = _square_masks()
    table = loc.localization_table(masks.float(), masks)
    summary = loc.summarize_table(table)
    assert set(summary) == {"n_scored", "n_excluded", "mask_fraction", "tolerance", *METRICS}
    assert summary["mask_fraction"] == pytest.approx((16 + 20 + 24) / 3 / 144)
    empty = loc.summarize_table(loc.localization_table(masks.float(), torch.zeros_like(masks)))
    assert empty["n_scored"] == 0 and empty["n_excluded"] == 3
    for name in ("mask_fraction", "tolerance", *METRICS):
        assert math.isnan(empty[name]), name


def test_baseline_maps_seeded_dtype_and_named_errors() -> None:
    like = torch.zeros(2, 5, 6, dtype=torch.float64)
    got = loc.baseline_maps(like, "random", torch.Generator().manual_seed(4))
    expected = torch.rand(
        (2, 5, 6), generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    assert torch.equal(got, expected)  # drawn from the caller's generator, in the maps' dtype
    assert loc.baseline_maps(like, "uniform").dtype == torch.float64
    with pytest.raises(InputError, match=r"^like must have shape"):
        loc.baseline_maps(torch.zeros(5, 6), "uniform")


def test_pointing_any_tie_rule_misses_when_no_tied_maximum_hits() -> None:
    masks = torch.zeros(1, 6, 6, dtype=torch.bool)
    masks[0, 3, 3] = True
    maps = torch.zeros(1, 6, 6)
    maps[0, 0, 0] = maps[0, 5, 5] = 1.0  # two tied maxima, both outside the mask
    assert loc.pointing_game(maps, masks, ties="any").item() == 0.0
    assert loc.pointing_game(maps, masks).item() == 0.0


def test_relevance_mass_of_a_map_with_little_mass() -> None:
    """The share is mass inside / total mass, whatever the total's size (here 0.5)."""
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 0] = True
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3] = 0.3, 0.2
    assert loc.relevance_mass(maps, masks).item() == pytest.approx(0.6)
    assert loc.localization_table(maps, masks)["relevance_mass"].item() == pytest.approx(0.6)


def test_rank_accuracy_of_a_mask_covering_the_field() -> None:
    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(2, 5, 4, generator=gen)
    masks = torch.ones(2, 5, 4, dtype=torch.bool)  # K = P: every voxel is in the top K
    assert loc.relevance_rank_accuracy(maps, masks).tolist() == [1.0, 1.0]
    # No negatives: AUROC is undefined. One negative, the lowest voxel: AUROC 1.
    assert torch.isnan(loc.auroc(maps, masks)).all()
    flat = maps.flatten(1)
    masks.view(2, -1)[torch.arange(2), flat.argmin(1)] = False
    assert loc.auroc(maps, masks).tolist() == [1.0, 1.0]


def test_tolerance_zone_of_one_voxel_and_larger_than_the_field() -> None:
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[0, 2, 2] = True
    # tolerance 1: the voxel and its 4 face neighbours (diagonals are √2 away)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[2, 1:4] = expected[1:4, 2] = True
    zone = loc.tolerance_zone(masks, 1.0)
    assert torch.equal(zone[0], expected) and not zone[1].any()
    # A tolerance beyond the field: all of sample 0, still nothing in sample 1 (no mask there).
    zone = loc.tolerance_zone(masks, 30.0)
    assert zone[0].all() and not zone[1].any()


def test_fixed_point_ceiling_is_the_best_shared_voxel() -> None:
    """Masks at one place: 1; at N disjoint places: 1/N; two of three sharing a voxel: 2/3, and
    a map pointing there scores it exactly (the bound is reached); empty masks are left out."""
    same = torch.zeros(4, 8, 8, dtype=torch.bool)
    same[:, 2:4, 2:4] = True
    assert loc.fixed_point_ceiling(same) == 1.0
    apart = torch.zeros(4, 8, 8, dtype=torch.bool)
    for i in range(4):
        apart[i, 2 * i, 2 * i] = True
    assert loc.fixed_point_ceiling(apart) == pytest.approx(0.25)
    three = torch.zeros(4, 8, 8, dtype=torch.bool)
    three[0, 1:3, 1:3] = True
    three[1, 2:4, 2:4] = True
    three[2, 6, 6] = True  # three[3] stays empty: not counted
    assert loc.fixed_point_ceiling(three) == pytest.approx(2 / 3)
    pointer = torch.zeros(4, 8, 8)
    pointer[:, 2, 2] = 1.0
    scores = loc.pointing_game(pointer, three)
    assert torch.nanmean(scores).item() == pytest.approx(2 / 3)
    # within 3 voxels (Euclidean) every mask is reached from (4, 4), 2.8 from (2, 2) and (6, 6)
    assert loc.fixed_point_ceiling(three, tolerance=3.0) == 1.0
    assert math.isnan(loc.fixed_point_ceiling(torch.zeros(2, 4, 4, dtype=torch.bool)))


def test_fixed_point_ceiling_in_3d() -> None:
    masks = torch.zeros(3, 5, 5, 5, dtype=torch.bool)
    masks[0, 1, 1, 1] = masks[1, 1, 1, 1] = masks[2, 3, 3, 3] = True
    assert loc.fixed_point_ceiling(masks) == pytest.approx(2 / 3)
    with pytest.raises(InputError):
        loc.fixed_point_ceiling(masks, tolerance=-1.0)


def test_support_ranks_only_the_defined_voxels() -> None:
    """A map perfect where it is defined but 0 on half the mask (voxels no slice passed
    through): over its support AUROC and rank accuracy are 1; over every voxel the undefined
    mask voxels tie with the background and cap both. The inverted map is the control: 0 over
    the support. The support of every voxel equals no support; an empty support is NaN."""
    metrics = require("sklearn.metrics")
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, 2:6, 2:6] = True
    support = torch.ones_like(masks)
    support[0, 4:, :] = False  # rows 4.. undefined: half the mask
    perfect = (masks & support).float() + 0.1 * support.float()
    full = loc.localization_table(perfect, masks)
    within = loc.localization_table(perfect, masks, support=support)
    assert within["auroc"].item() == pytest.approx(1.0)
    assert within["relevance_rank_accuracy"].item() == pytest.approx(1.0)
    assert full["auroc"].item() < 0.9 and full["relevance_rank_accuracy"].item() < 0.75
    keep = support[0].flatten().numpy()
    truth, score = masks[0].flatten().numpy()[keep], perfect[0].flatten().numpy()[keep]
    ref = metrics.roc_auc_score(truth, score)
    assert within["auroc"].item() == pytest.approx(ref)
    inverted = loc.localization_table(1.0 - perfect, masks, support=support)
    assert inverted["auroc"].item() == pytest.approx(0.0)
    # the support does not change the other metrics
    for key in ("pointing_game", "relevance_mass", "iou_threshold"):
        assert within[key].item() == pytest.approx(full[key].item())
    everything = loc.localization_table(perfect, masks, support=torch.ones_like(masks))
    assert everything["auroc"].item() == pytest.approx(full["auroc"].item())
    none = loc.localization_table(perfect, masks, support=torch.zeros_like(masks))
    assert math.isnan(none["auroc"].item()) and math.isnan(none["relevance_rank_accuracy"].item())
    with pytest.raises(InputError, match="support"):
        loc.localization_table(perfect, masks, support=support[:, :5])
