"""The redesigned perturbation check (ROAD imputation, random-region baseline, controls)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braincam.errors import InputError
from braincam.metrics import perturbation as pc

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
