"""The redesigned perturbation check (ROAD imputation, random-region baseline, controls)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braincam.errors import InputError
from braincam.evaluate import perturbation as pc

SIZE = 24


class BlobModel(nn.Module):
    """Class 1 when a fixed region is bright (mean above 1.5), else class 0."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())
        self.drop = nn.Dropout(0.5)  # would make results random if left in train mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = (x[:, 0] * self.region).flatten(1).sum(1) / self.region.sum()
        logit = 8 * (mean - 1.5)
        return self.drop(torch.stack([-logit, logit], 1))


def _case(n: int = 12, depth: int | None = None, seed: int = 0):
    """Tissue ≈ 1 inside a brain (background 0 on a border); odd images carry the bright blob."""
    gen = torch.Generator().manual_seed(seed)
    region = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    region[8:12, 9:13] = True
    brain = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    brain[2:-2, 2:-2] = True
    images = (1 + 0.05 * torch.randn(n, 1, SIZE, SIZE, generator=gen)) * brain
    labels = torch.arange(n) % 2
    images[labels == 1, 0] += 1.0 * region
    if depth is not None:
        images = images[:, :, None].expand(n, 1, depth, SIZE, SIZE).clone()
        region = region.expand(depth, SIZE, SIZE).clone()
        brain = brain.expand(depth, SIZE, SIZE).clone()
    return BlobModel(region), images, labels, region, brain.expand(n, *brain.shape).clone()


def test_impute_continues_the_surrounding_tissue() -> None:
    # A linear ramp solves the Laplace equation: linear imputation must give it back.
    ramp = torch.linspace(0, 1, SIZE).expand(SIZE, SIZE)[None, None].clone()
    region = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    region[0, 8:14, 6:12] = True
    spoiled = ramp.clone()
    spoiled[0, 0][region[0]] = 5.0
    out = pc.impute(spoiled, region, iterations=300)
    assert torch.allclose(out, ramp, atol=1e-3)
    # Voxels outside the support neither change nor feed the mean (no background bleed).
    support = torch.ones_like(region)
    support[0, :, :8] = False  # the region's left part and everything left of it
    tissue = torch.ones(1, 1, SIZE, SIZE)
    tissue[0, 0][~support[0]] = -3.0
    tissue[0, 0][region[0]] = 9.0
    out = pc.impute(tissue, region, support, iterations=300)
    assert torch.allclose(out[0, 0][region[0] & support[0]], torch.tensor(1.0), atol=1e-3)
    assert torch.equal(
        out[0, 0][~(region[0] & support[0])], tissue[0, 0][~(region[0] & support[0])]
    )
    noisy = pc.impute(
        tissue, region, support, noise_std=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy[0, 0][~region[0]], tissue[0, 0][~region[0]])
    assert 0.03 < float((noisy - out)[0, 0][region[0] & support[0]].std()) < 0.2


@pytest.mark.parametrize("depth", [None, 3])
def test_true_region_hurts_more_than_random_regions(depth: int | None) -> None:
    model, images, labels, region, brain = _case(depth=depth)
    maps = region.float().expand(len(images), *region.shape).clone()
    res = pc.perturbation_check(
        model,
        images,
        labels,
        maps,
        brain_masks=brain,
        class_names=["a", "b"],
        shift=(0,) * (region.ndim - 2) + (1, 1),
        generator=torch.Generator().manual_seed(0),
        n_bootstrap=200,
    )
    comp = res["comparison"]
    assert res["hurts_more_than_random"] and comp["hurts_more"] and comp["ci_low"] > 0
    assert comp["n_images"] == 12 and comp["n_random"] == 12 * pc.DEFAULT_N_RANDOM
    assert comp["n_random"] >= comp["n_images"]
    # per true class: only class b carries the evidence in the region
    assert res["per_class"]["b"]["hurts_more"] and res["per_class"]["b"]["region_drop"] > 0.5
    assert abs(res["per_class"]["a"]["mean_difference"]) < 0.05
    drops = [p["region_drop"] for p in res["dose_response"]]
    assert drops == sorted(drops) and drops[-1] > drops[0]  # more imputation, larger drop
    assert model.training  # restored


def test_wrong_map_does_not_hurt_more() -> None:
    model, images, labels, _, brain = _case()
    maps = torch.zeros(len(images), SIZE, SIZE)
    maps[:, 15:19, 14:18] = 1.0  # tissue the model does not use
    res = pc.perturbation_check(
        model,
        images,
        labels,
        maps,
        brain_masks=brain,
        generator=torch.Generator().manual_seed(0),
        n_bootstrap=200,
    )
    assert not res["hurts_more_than_random"]
    assert res["comparison"]["ci_low"] <= 0


@pytest.mark.parametrize("shape", [(6, 20, 24), (4, 8, 10, 12)])
def test_random_placements_are_translates_inside_the_brain(shape: tuple[int, ...]) -> None:
    regions = torch.zeros(shape, dtype=torch.bool)
    regions[(slice(None),) + (slice(3, 6),) * (len(shape) - 1)] = True
    brain = torch.ones(shape, dtype=torch.bool)
    brain[(slice(None), slice(0, 2))] = False
    moved, overlap = pc.random_placements(regions, brain, 20, torch.Generator().manual_seed(0))
    assert moved.shape == (shape[0], 20, *shape[1:]) and overlap.shape == (shape[0], 20)
    own = (regions & brain).flatten(1).sum(1)
    assert torch.equal(moved.flatten(2).sum(2), regions.flatten(1).sum(1)[:, None].expand(-1, 20))
    assert ((moved & brain[:, None]).flatten(2).sum(2) >= own[:, None]).all()
    assert not (moved == regions[:, None]).flatten(2).all(2).any()  # never left in place
    assert len({tuple(m.nonzero()[0].tolist()) for m in moved[0]}) > 5  # spread, not one spot
    assert ((overlap >= 0) & (overlap <= 1)).all()
    again, _ = pc.random_placements(regions, brain, 20, torch.Generator().manual_seed(0))
    assert torch.equal(again, moved)  # seeded
    # A region covering the whole brain can only stay where it is.
    full = brain.clone()
    stay, _ = pc.random_placements(full[:1], brain[:1], 3)
    assert torch.equal(stay[0], full[:1].expand(3, *shape[1:]))


def test_outside_regions_are_background_far_from_the_brain() -> None:
    brain = torch.zeros(2, 16, 16, dtype=torch.bool)
    brain[:, 4:12, 4:12] = True
    brain[1, :, :] = True
    brain[1, 0, 0] = False  # a single background voxel: all of it is taken
    out = pc.outside_regions(brain, torch.tensor([4, 4]))
    assert out[0].sum() == 4 and not (out[0] & brain[0]).any()
    assert out[0][[0, 0, 15, 15], [0, 15, 0, 15]].all()  # the four corners are farthest
    assert out[1].sum() == 1 and out[1, 0, 0]


def test_controls_say_yes_and_no() -> None:
    model, images, labels, region, brain = _case()
    truth = region.expand(len(images), *region.shape) & (labels == 1)[:, None, None]
    res = pc.control_checks(
        model,
        images,
        labels,
        truth,
        brain_masks=brain,
        class_names=["a", "b"],
        generator=torch.Generator().manual_seed(0),
        n_bootstrap=200,
    )
    assert res["positive_control"] is True and res["negative_control"] is False
    pos, neg = res["controls"]["positive"]["comparison"], res["controls"]["negative"]["comparison"]
    assert pos["n_images"] == 6 and pos["n_random"] == 6 * pc.DEFAULT_N_RANDOM
    assert pos["ci_low"] > 0 and neg["ci_low"] <= 0
    assert abs(neg["region_drop"]) < 0.02


def test_compare_drops_rule_and_effect_size() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1])
    region = torch.tensor([[0.3], [0.3], [0.5], [0.1]])
    random = torch.zeros(4, 20, 1)
    res = pc.compare_drops(region, random, labels, strengths=(1.0,), generator=gen)
    c = res["comparison"]
    assert c["hurts_more"] and c["mean_difference"] == pytest.approx(0.3)
    assert c["effect_size"] == pytest.approx(0.3 / torch.tensor([0.3, 0.3, 0.5, 0.1]).std().item())
    assert c["ci_low"] > 0 and c["n_random"] == 80
    assert set(res["per_class"]) == {"0", "1"}
    flat = pc.compare_drops(
        torch.tensor([[0.1], [-0.1], [0.2], [-0.2]]),
        random,
        labels,
        strengths=(1.0,),
        generator=gen,
    )
    assert not flat["comparison"]["hurts_more"] and flat["comparison"]["ci_low"] < 0


def test_translate_pads_with_background() -> None:
    images = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    out = pc.translate(images, (1, -1))
    assert torch.equal(out[0, 0, 0], torch.ones(4))  # vacated top row → minimum (1)
    assert torch.equal(out[0, 0, :, 3], torch.ones(4))  # vacated right column
    assert torch.equal(out[0, 0, 1:, :3], images[0, 0, :3, 1:])


def test_bad_inputs() -> None:
    model, images, labels, region, _ = _case(n=2)
    maps = region.float().expand(2, *region.shape).clone()
    with pytest.raises(InputError, match="noise_std"):
        pc.perturbation_check(model, images, labels, maps, noise_std=-1.0)
    with pytest.raises(InputError, match="shift"):
        pc.perturbation_check(model, images, labels, maps, shift=(1,))
    with pytest.raises(InputError, match="strengths"):
        pc.perturbation_check(model, images, labels, maps, strengths=(1.0, 0.5))
    with pytest.raises(InputError, match="n_random"):
        pc.random_placements(region[None], region[None], 0)
