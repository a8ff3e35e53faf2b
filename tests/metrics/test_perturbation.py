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


# ---------------------------------------------------------------- settings reach every step


class FieldModel(nn.Module):
    """An unsaturated model that sees a region and the whole field, background included.

    Its probabilities move with small changes anywhere (a few more imputation steps, the
    background's imputation noise), where :class:`BlobModel`'s saturated softmax would not.
    """

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = (x[:, 0] * self.region).flatten(1).sum(1) / self.region.sum()
        logit = mean - 1.2 + x[:, 0].flatten(1).mean(1)
        return torch.stack([-logit, logit], 1)


def _big_region() -> torch.Tensor:
    """A region large enough that 100 Jacobi steps have not converged in float32."""
    big = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    big[6:18, 7:15] = True
    return big


class CountingModel(nn.Module):
    """A :class:`BlobModel` (or ``inner``) that records the batch sizes it is called with."""

    def __init__(self, region: torch.Tensor, inner: nn.Module | None = None) -> None:
        super().__init__()
        self.inner = BlobModel(region) if inner is None else inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return self.inner(x)


def _graded_maps(n: int) -> torch.Tensor:
    """A map whose box depends on the threshold and on the connectivity.

    A core at 1 on the blob, a diagonal-only neighbour at 1 (kept with ``full`` connectivity,
    not ``face``) and a faint strip at 0.25 (above a 0.2 threshold, below 0.3).
    """
    maps = torch.zeros(n, SIZE, SIZE)
    maps[:, 8:12, 9:13] = 1.0
    maps[:, 12, 13] = 1.0
    maps[:, 8:12, 13:17] = 0.25
    return maps


def test_perturbation_check_settings_reach_every_step() -> None:
    """The result equals the steps run by hand with the same settings and generator stream."""
    from braincam.metrics.boxes import bounding_boxes, box_masks
    from braincam.metrics.faithfulness import eval_mode, target_probabilities

    _, images, labels, region, _ = _case(n=6)
    model = CountingModel(region)
    # a brain smaller than the non-zero area (which the default masks would take)
    brain = torch.zeros(6, SIZE, SIZE, dtype=torch.bool)
    brain[:, 3:20, 4:21] = True
    # explained classes that differ from the true ones (labels 0, 1, 0, 1, 0, 1)
    targets = torch.tensor([1, 1, 1, 1, 1, 0])
    maps = _graded_maps(6)
    kw = dict(strengths=(0.5, 1.0), noise_std=0.1, iterations=7)
    res = pc.perturbation_check(
        model,
        images,
        targets,
        maps,
        labels=labels.tolist(),
        class_names=["a", "b"],
        n_random=21,
        threshold=0.3,
        shift=(1, 2),
        brain_masks=brain,
        generator=torch.Generator().manual_seed(5),
        batch_size=5,
        n_bootstrap=50,
        connectivity="face",
        **kw,
    )
    assert max(model.batches) == 5
    boxes, _ = bounding_boxes(maps, 0.3, connectivity="face")
    assert boxes[0].tolist() == [8, 9, 12, 13]  # neither the diagonal voxel nor the faint strip
    cam_region = box_masks(boxes, (SIZE, SIZE)) & brain
    gen = torch.Generator().manual_seed(5)
    moved, overlap = pc.random_placements(cam_region, brain, 21, gen)
    with eval_mode(model):
        drops = pc.region_drops(
            model,
            images,
            targets,
            torch.cat([cam_region[:, None], moved], 1),
            brain,
            generator=gen,
            batch_size=5,
            **kw,
        )
        p_shift, pred_shift = target_probabilities(model, pc.translate(images, (1, 2)), targets, 5)
        _, pred0 = target_probabilities(model, images, targets, 5)
    drop = drops["drop"]
    want = pc.compare_drops(
        drop[:, 0],
        drop[:, 1:],
        labels,
        strengths=(0.5, 1.0),
        class_names=["a", "b"],
        n_bootstrap=50,
        generator=gen,
        name="CAM box at 0.3 of the maximum",
    )
    for key in ("region", "comparison", "per_class", "dose_response"):
        assert res[key] == want[key], key
    assert res["region"] == "CAM box at 0.3 of the maximum"
    assert set(res["per_class"]) == {"a", "b"}  # the true classes, not the explained one
    assert res["per_class"]["a"]["n_images"] == 3
    assert res["hurts_more_than_random"] is want["comparison"]["hurts_more"]
    assert res["random_overlap_mean"] == float(overlap.mean())
    assert torch.equal(res["per_image"]["cam_region"], cam_region)
    assert torch.equal(res["per_image"]["random_regions"], moved)
    assert torch.equal(res["per_image"]["drop"], drop)
    p0 = drops["original"]
    original, translation, *regions = res["conditions"]
    assert original["accuracy"] == pytest.approx(2 / 6)  # the model is right where label = target
    assert original == {
        "condition": "original",
        "strength": None,
        "accuracy": float((pred0 == targets).double().mean()),
        "confidence": float(p0.mean()),
        "drop": 0.0,
        "n": 6,
    }
    assert translation == {
        "condition": "translation",
        "strength": None,
        "accuracy": float((pred_shift == targets).double().mean()),
        "confidence": float(p_shift.double().mean()),
        "drop": float((p0 - p_shift.double()).mean()),
        "n": 6,
    }
    assert res["translation"] == {k: translation[k] for k in ("accuracy", "confidence", "drop")}
    assert [(c["condition"], c["strength"], c["n"]) for c in regions] == [
        ("cam_region", 0.5, 6),
        ("random_regions", 0.5, 6 * 21),
        ("cam_region", 1.0, 6),
        ("random_regions", 1.0, 6 * 21),
    ]
    for c, (k, sl) in zip(regions, [(0, 0), (0, 1), (1, 0), (1, 1)], strict=True):
        part = slice(0, 1) if sl == 0 else slice(1, None)
        assert c["drop"] == float(drop[:, part, k].mean())
        assert c["confidence"] == float(drops["probability"][:, part, k].mean())
        assert c["accuracy"] == float(drops["correct"][:, part, k].double().mean())
    assert res["settings"] == {
        "perturbation": "noisy linear imputation (ROAD)",
        "noise_std": 0.1,
        "iterations": 7,
        "strengths": [0.5, 1.0],
        "n_random": 21,
        "threshold": 0.3,
        "region": "box",
        "shift": [1, 2],
        "n_bootstrap": 50,
    }


def test_perturbation_check_defaults() -> None:
    """The documented defaults, and the shift of 1/16 of each side (at least one voxel)."""
    _, images, labels, region, brain = _case(n=4, depth=3)
    model = CountingModel(region)
    maps = region.float().expand(4, *region.shape).clone()
    res = pc.perturbation_check(
        model, images, labels, maps, brain_masks=brain, generator=torch.Generator().manual_seed(0)
    )
    assert res["settings"] == {
        "perturbation": "noisy linear imputation (ROAD)",
        "noise_std": 0.05,
        "iterations": 100,
        "strengths": [0.25, 0.5, 0.75, 1.0],
        "n_random": 20,
        "threshold": 0.2,
        "region": "box",
        "shift": [1, 2, 2],  # depth 3 → round(3/16) = 0 → at least 1; 24/16 = 1.5 → 2
        "n_bootstrap": 2000,
    }
    assert res["region"] == "CAM box at 0.2 of the maximum"
    assert max(model.batches) == 64  # 4 images x 21 regions, in batches of 64
    # no brain masks: the non-background voxels, as default_brain_masks takes them
    again = pc.perturbation_check(
        model, images, labels, maps, generator=torch.Generator().manual_seed(0)
    )
    explicit = pc.perturbation_check(
        model,
        images,
        labels,
        maps,
        brain_masks=pc.default_brain_masks(images),
        generator=torch.Generator().manual_seed(0),
    )
    assert again["comparison"] == explicit["comparison"]
    assert torch.equal(
        again["per_image"]["random_regions"], explicit["per_image"]["random_regions"]
    )


def test_perturbation_check_component_region_and_zero_noise() -> None:
    """``region='component'`` imputes the thresholded component itself, not its box."""
    _, images, labels, region, brain = _case(n=4)
    model = BlobModel(region)
    maps = _graded_maps(4)
    gen = torch.Generator().manual_seed(0)
    kw = dict(brain_masks=brain, iterations=3, n_bootstrap=20, noise_std=0.0)
    comp = pc.perturbation_check(
        model, images, labels, maps, region="component", generator=gen, **kw
    )
    box = pc.perturbation_check(model, images, labels, maps, generator=gen, **kw)
    assert comp["region"] == "CAM component at 0.2 of the maximum"
    want = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    want[8:12, 9:17] = True  # the core and the faint strip ...
    want[12, 13] = True  # ... and the diagonal neighbour (full connectivity)
    assert torch.equal(comp["per_image"]["cam_region"], want.expand(4, SIZE, SIZE))
    boxed = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    boxed[8:13, 9:17] = True
    assert torch.equal(box["per_image"]["cam_region"], boxed.expand(4, SIZE, SIZE))
    assert comp["settings"]["noise_std"] == 0.0 and comp["settings"]["region"] == "component"


def test_seeded_runs_repeat() -> None:
    """Every random draw (placements, imputation noise, bootstrap) comes from ``generator``."""
    model, images, labels, region, brain = _case(n=4)
    maps = region.float().expand(4, *region.shape).clone()
    kw = dict(brain_masks=brain, iterations=3, n_bootstrap=20)
    runs = [
        pc.perturbation_check(
            model, images, labels, maps, generator=torch.Generator().manual_seed(1), **kw
        )
        for _ in range(2)
    ]
    torch.manual_seed(0)  # the global stream moves between the runs: it must not matter
    assert runs[0]["comparison"] == runs[1]["comparison"]
    assert runs[0]["dose_response"] == runs[1]["dose_response"]
    for key in ("drop", "random_regions"):
        assert torch.equal(runs[0]["per_image"][key], runs[1]["per_image"][key])
    truth = region.expand(4, *region.shape) & (labels == 1)[:, None, None]
    controls = [
        pc.control_checks(
            model, images, labels, truth, generator=torch.Generator().manual_seed(1), **kw
        )
        for _ in range(2)
    ]
    assert controls[0] == controls[1]


def test_control_checks_settings_reach_every_step() -> None:
    """The controls equal the steps run by hand with the same settings and generator stream."""
    from braincam.metrics.faithfulness import eval_mode

    model, images, labels, region, brain = _case(n=6)
    model = CountingModel(region)
    truth = region.expand(6, *region.shape) & (labels == 1)[:, None, None]
    kw = dict(strengths=(0.5, 1.0), noise_std=0.1, iterations=7)
    res = pc.control_checks(
        model,
        images,
        labels,
        truth,
        brain_masks=brain,
        class_names=["a", "b"],
        n_random=21,
        generator=torch.Generator().manual_seed(3),
        batch_size=5,
        n_bootstrap=50,
        **kw,
    )
    assert max(model.batches) == 5
    keep = labels == 1
    gen = torch.Generator().manual_seed(3)
    positive = truth[keep]
    moved, _ = pc.random_placements(positive, brain[keep], 21, gen)
    outside = pc.outside_regions(brain[keep], positive.flatten(1).sum(1), gen)
    assert not (outside & brain[keep]).any() and (outside.flatten(1).sum(1) == 16).all()
    with eval_mode(model):
        inside = pc.region_drops(
            model,
            images[keep],
            labels[keep],
            torch.cat([positive[:, None], moved], 1),
            brain[keep],
            generator=gen,
            batch_size=5,
            **kw,
        )
        away = pc.region_drops(
            model,
            images[keep],
            labels[keep],
            outside[:, None],
            ~brain[keep],
            generator=gen,
            batch_size=5,
            **kw,
        )
    common = dict(strengths=(0.5, 1.0), class_names=["a", "b"], n_bootstrap=50, generator=gen)
    random = inside["drop"][:, 1:]
    pos = pc.compare_drops(
        inside["drop"][:, 0], random, labels[keep], name="ground-truth region", **common
    )
    neg = pc.compare_drops(
        away["drop"][:, 0], random, labels[keep], name="outside the brain", **common
    )
    assert res == {
        "positive_control": pos["comparison"]["hurts_more"],
        "negative_control": neg["comparison"]["hurts_more"],
        "controls": {"positive": pos, "negative": neg},
    }
    assert set(pos["per_class"]) == {"b"} and len(pos["dose_response"]) == 2
    assert res["positive_control"] is True and res["negative_control"] is False


def test_control_checks_defaults() -> None:
    """The documented defaults: noise 0.05, 100 iterations, 2000 resamples, batches of 64.

    A large planted region (100 imputation steps have not converged), twelve images (a nearly
    continuous bootstrap distribution) and a model that sees small changes: 101 steps or 2001
    resamples give other figures, so the equality below pins each default.
    """
    _, images, labels, _, brain = _case(n=24)
    big = _big_region()
    truth = big.expand(24, SIZE, SIZE) & (labels == 1)[:, None, None]
    model = CountingModel(big, FieldModel(big))
    res = pc.control_checks(
        model, images, labels, truth, brain_masks=brain, generator=torch.Generator().manual_seed(0)
    )
    assert max(model.batches) == 64  # 12 images x 21 regions, in batches of 64
    explicit = {
        k: pc.control_checks(
            model,
            images,
            labels,
            truth,
            brain_masks=brain,
            generator=torch.Generator().manual_seed(0),
            strengths=(0.25, 0.5, 0.75, 1.0),
            n_random=20,
            noise_std=0.05,
            iterations=100 + (k == "iterations"),
            n_bootstrap=2000 + (k == "n_bootstrap"),
        )
        for k in ("none", "iterations", "n_bootstrap")
    }
    assert res == explicit["none"]
    for k in ("iterations", "n_bootstrap"):
        assert res["controls"]["positive"] != explicit[k]["controls"]["positive"], k
    assert res["controls"]["positive"]["comparison"]["n_random"] == 12 * 20
    # the background is imputed from the background, with noise this model sees: imputing it
    # with the brain as support would change nothing (a drop of exactly 0)
    assert res["controls"]["negative"]["comparison"]["region_drop"] != 0.0
    assert res["positive_control"] is True and res["negative_control"] is False
    # no brain masks: the non-background voxels, as default_brain_masks takes them
    implicit = pc.control_checks(
        model, images, labels, truth, generator=torch.Generator().manual_seed(0)
    )
    with_default = pc.control_checks(
        model,
        images,
        labels,
        truth,
        brain_masks=pc.default_brain_masks(images),
        generator=torch.Generator().manual_seed(0),
    )
    assert implicit == with_default


def test_control_checks_without_a_region_in_the_brain() -> None:
    """No planted region inside the brain: no verdicts (this used to crash in the placements)."""
    model, images, labels, region, brain = _case(n=4)
    truth = region.expand(4, *region.shape) & (labels == 1)[:, None, None]
    elsewhere = torch.zeros_like(brain)
    elsewhere[:, 14:20, 14:20] = True  # a brain mask that misses the planted region
    res = pc.control_checks(model, images, labels, truth, brain_masks=elsewhere, iterations=2)
    assert res == {"positive_control": None, "negative_control": None, "controls": {}}
    none = pc.control_checks(model, images, labels, torch.zeros_like(truth), iterations=2)
    assert none == res


def test_mask_errors_name_the_argument() -> None:
    model, images, labels, region, brain = _case(n=2)
    maps = region.float().expand(2, *region.shape).clone()
    with pytest.raises(InputError, match="brain_masks must have the maps' shape"):
        pc.perturbation_check(model, images, labels, maps, brain_masks=brain[:, :-1])
    with pytest.raises(InputError, match="truth must have the maps' shape"):
        pc.control_checks(model, images, labels, brain[:, :-1])


# ------------------------------------------------------------------- drops and statistics


def test_region_drops_values_per_region_and_strength() -> None:
    """Each entry is the model on its own image blended towards its own imputed copy."""
    from braincam.metrics.faithfulness import eval_mode, target_probabilities

    _, images, labels, region, brain = _case(n=3)
    model = CountingModel(region)
    regions = torch.zeros(3, 2, SIZE, SIZE, dtype=torch.bool)
    regions[:, 0] = region  # the blob: class b loses its evidence
    regions[:, 1, 15:19, 14:18] = True  # tissue the model does not use
    regions[2, 1] = region  # one image gets the blob in both
    # across the brain's edge into the blob: the background part must neither change nor feed
    # the mean (without the brain as support, the zeros around it would pull the blob down)
    regions[0, 1, 0:10, 9:13] = True
    strengths = (0.5, 1.0)
    with eval_mode(model):
        # chunks of 4 rows split the 6 (image, region) rows across image boundaries
        res = pc.region_drops(
            model,
            images,
            labels,
            regions,
            brain,
            strengths=strengths,
            noise_std=0.0,
            iterations=5,
            batch_size=2,
            chunk=4,
        )
        assert max(model.batches) == 2
        p0, _ = target_probabilities(model, images, labels, 3)
        assert torch.equal(res["original"], p0.double())
        for i in range(3):
            for j in range(2):
                filled = pc.impute(
                    images[i : i + 1], regions[i, j][None], brain[i : i + 1], iterations=5
                )
                for k, alpha in enumerate(strengths):
                    x = images[i : i + 1] + alpha * (filled - images[i : i + 1])
                    p, pred = target_probabilities(model, x, labels[i : i + 1], 1)
                    assert res["probability"][i, j, k] == p.double()[0]
                    assert res["correct"][i, j, k] == bool(pred[0] == labels[i])
    assert res["probability"].dtype == torch.float64 and res["correct"].dtype == torch.bool
    assert torch.equal(res["drop"], p0.double()[:, None, None] - res["probability"])
    # image 1 (class b) loses its blob: a large drop, and the model turns to class a
    assert res["drop"][1, 0, 1] > 0.5 and not res["correct"][1, 0, 1] and res["correct"][1, 1, 1]
    # noise_std reaches the imputation: seeded noise moves the blob's probabilities
    with eval_mode(model):
        noisy = [
            pc.region_drops(
                model,
                images,
                labels,
                regions,
                brain,
                strengths=strengths,
                noise_std=0.5,
                iterations=5,
                generator=torch.Generator().manual_seed(1),
            )["probability"]
            for _ in range(2)
        ]
    assert torch.equal(noisy[0], noisy[1])
    assert not torch.equal(noisy[0][:, 0], res["probability"][:, 0])


def test_region_drops_defaults() -> None:
    """Defaults: noise 0.05, 100 iterations, strengths 0.25…1, batches of 64, chunks of 256.

    Half the regions are large (100 imputation steps have not converged) and the model sees
    small changes, so 101 steps give other probabilities; the chunks show in the batches.
    """
    from braincam.metrics.faithfulness import eval_mode

    _, images, labels, region, brain = _case(n=13)
    big = _big_region()
    model = CountingModel(big, FieldModel(big))
    regions = region.expand(13, 20, SIZE, SIZE).clone()  # 260 rows: two chunks of 256 and 4
    regions[:, 10:] = big
    with eval_mode(model):
        default = pc.region_drops(
            model, images, labels, regions, brain, generator=torch.Generator().manual_seed(0)
        )
        # the 13 originals, then per chunk one pass per strength in batches of at most 64
        assert model.batches == [13] + [64, 64, 64, 64] * 4 + [4] * 4
        explicit, longer = (
            pc.region_drops(
                model,
                images,
                labels,
                regions,
                brain,
                strengths=(0.25, 0.5, 0.75, 1.0),
                noise_std=0.05,
                iterations=steps,
                generator=torch.Generator().manual_seed(0),
                batch_size=64,
                chunk=256,
            )
            for steps in (100, 101)
        )
    for key in ("original", "probability", "correct", "drop"):
        assert torch.equal(default[key], explicit[key]), key
    assert not torch.equal(default["probability"], longer["probability"])
    assert default["probability"].shape == (13, 20, 4)


def test_bootstrap_is_stratified_by_class() -> None:
    """Resampling within each class keeps the class mix: constant classes give one mean."""
    diff = torch.tensor([1.0, 1.0, 1.0, 3.0, 3.0], dtype=torch.float64)
    strata = torch.tensor([0, 0, 0, 1, 1])
    means = pc._bootstrap_means(diff, strata, 50, torch.Generator().manual_seed(0))
    assert means.shape == (50,) and means.dtype == torch.float64
    assert torch.equal(means, torch.full((50,), 1.8, dtype=torch.float64))  # (3·1 + 2·3) / 5
    # within a class the draws are uniform with replacement: every value can appear, never others
    spread = pc._bootstrap_means(
        torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1]), 400, None
    )
    assert set((spread * 4).round().tolist()) == {0.0, 1.0, 2.0}


def test_statistics_against_hand_computation() -> None:
    """Means, the interval's quantiles, Cohen's d_z and the one-sided Wilcoxon p-value."""
    from scipy import stats

    region = torch.tensor([[0.3, 0.6], [0.1, 0.5], [0.4, 0.25], [0.2, 0.9], [0.5, 0.7]])
    random = torch.zeros(5, 3, 2)
    random[:, :, 1] = torch.tensor([0.1, 0.2, 0.3])  # mean 0.2 at the last strength
    random[:, 0, 0] = 0.3
    labels = torch.tensor([0, 1, 0, 1, 0])
    res = pc.compare_drops(
        region,
        random,
        labels,
        strengths=(0.5, 1.0),
        class_names=["a", "b"],
        n_bootstrap=100,
        generator=torch.Generator().manual_seed(2),
    )
    assert res["region"] == "region"
    diff = region[:, 1].double() - random[:, :, 1].double().mean(1)
    gen = torch.Generator().manual_seed(2)
    means = pc._bootstrap_means(diff, labels, 100, gen)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    own = pc._bootstrap_means(region[:, 1].double(), labels, 100, gen)  # the same stream, next
    c = res["comparison"]
    assert c == {
        "n_images": 5,
        "n_random_per_image": 3,
        "n_random": 15,
        "region_drop": pytest.approx(0.59),
        "random_drop": pytest.approx(0.2),
        "mean_difference": pytest.approx(0.39),
        "ci_low": lo,
        "ci_high": hi,
        "effect_size": pytest.approx(0.39 / diff.std().item()),
        "p_value": stats.wilcoxon(diff.numpy(), alternative="greater").pvalue,
        "region_ci_low": float(torch.quantile(own, 0.025)),
        "hurts_more": True,
    }
    assert 0 < lo < 0.39 < hi and c["region_ci_low"] > 0
    assert c["p_value"] == pytest.approx(1 / 32)  # all five differences positive: (1/2)^5
    # the dose-response: one entry per strength, each from its own column
    assert [d["strength"] for d in res["dose_response"]] == [0.5, 1.0]
    first = res["dose_response"][0]
    assert set(first) == {
        "strength",
        "region_drop",
        "random_drop",
        "mean_difference",
        "ci_low",
        "ci_high",
    }
    assert first["region_drop"] == pytest.approx(0.3) and first["random_drop"] == pytest.approx(0.1)
    assert first["mean_difference"] == pytest.approx(0.2)
    last = res["dose_response"][1]
    assert last["mean_difference"] == pytest.approx(0.39) and last["ci_low"] != first["ci_low"]
    # per class: the class's own images, named through class_names
    assert res["per_class"]["a"]["n_images"] == 3 and res["per_class"]["b"]["n_images"] == 2
    assert res["per_class"]["a"]["region_drop"] == pytest.approx((0.6 + 0.25 + 0.7) / 3)
    assert res["per_class"]["b"]["random_drop"] == pytest.approx(0.2)


def test_statistics_edge_cases() -> None:
    """No images, one image, no difference at all, and the defaults."""
    none = pc.compare_drops(
        torch.zeros(0, 1), torch.zeros(0, 20, 1), torch.zeros(0), strengths=(1.0,)
    )
    assert none["comparison"] == {
        "n_images": 0,
        "n_random_per_image": 20,
        "n_random": 0,
        "region_drop": None,
        "random_drop": None,
        "mean_difference": None,
        "ci_low": None,
        "ci_high": None,
        "effect_size": None,
        "p_value": None,
        "region_ci_low": None,
        "hurts_more": False,
    }
    assert none["per_class"] == {}
    one = pc.compare_drops(
        torch.tensor([[0.4]]), torch.zeros(1, 2, 1), torch.tensor([1]), strengths=(1.0,)
    )
    assert one["comparison"]["effect_size"] is None  # no spread with one image
    assert one["comparison"]["ci_low"] == pytest.approx(0.4) and one["comparison"]["hurts_more"]
    assert set(one["per_class"]) == {"1"}
    # identical drops: the interval is [0, 0], p = 1, and 0 is not "above 0"
    same = pc.compare_drops(
        torch.full((4, 1), 0.2),
        torch.full((4, 3, 1), 0.2),
        torch.tensor([0, 0, 1, 1]),
        strengths=(1.0,),
    )
    c = same["comparison"]
    assert (c["ci_low"], c["ci_high"], c["p_value"], c["hurts_more"]) == (0.0, 0.0, 1.0, False)
    assert c["effect_size"] is None
    # defaults: the four strengths (verdict at the last) and 2000 resamples; twelve distinct
    # differences make the bootstrap nearly continuous, so 2001 resamples move the interval
    region = torch.zeros(12, 4)
    region[:, 3] = torch.linspace(0.1, 0.4, 12) ** 2  # no zero, no tie: SciPy's fast exact p
    labels = torch.arange(12) % 2
    random = torch.zeros(12, 2, 4)
    default = pc.compare_drops(region, random, labels, generator=torch.Generator().manual_seed(0))
    explicit, more = (
        pc.compare_drops(
            region,
            random,
            labels,
            strengths=(0.25, 0.5, 0.75, 1.0),
            n_bootstrap=n,
            generator=torch.Generator().manual_seed(0),
        )
        for n in (2000, 2001)
    )
    assert default == explicit and default["comparison"] != more["comparison"]
    assert [d["strength"] for d in default["dose_response"]] == [0.25, 0.5, 0.75, 1.0]
    assert default["comparison"]["mean_difference"] == pytest.approx(float(region[:, 3].mean()))


def test_strengths_are_checked() -> None:
    model, images, labels, region, brain = _case(n=2)
    maps = region.float().expand(2, *region.shape).clone()
    for bad in [(), (0.0, 1.0), (0.5, 1.5), (-0.5,), (1.0, 0.5)]:
        with pytest.raises(InputError, match="strengths"):
            pc.perturbation_check(model, images, labels, maps, strengths=bad)
        with pytest.raises(InputError, match="strengths"):
            pc.control_checks(model, images, labels, brain, strengths=bad)
    res = pc.perturbation_check(
        model, images, labels, maps, strengths=[1], brain_masks=brain, iterations=1, n_bootstrap=10
    )
    assert res["settings"]["strengths"] == [1.0] and isinstance(
        res["settings"]["strengths"][0], float
    )


def test_statistics_pair_each_image_with_its_own_random_regions() -> None:
    """``d`` subtracts each image's own random mean, not the mean over every image."""
    region = torch.full((3, 1), 0.5)
    random = torch.zeros(3, 2, 1)
    random[:, :, 0] = torch.tensor([[0.4, 0.4], [0.0, 0.0], [0.1, 0.3]])  # means 0.4, 0, 0.2
    res = pc.compare_drops(region, random, torch.zeros(3), strengths=(1.0,), n_bootstrap=10)
    diff = torch.tensor([0.1, 0.5, 0.3], dtype=torch.float64)
    c = res["comparison"]
    assert c["mean_difference"] == pytest.approx(0.3)
    # a common random mean (0.2) would leave no spread: d = 0.3 for every image
    assert c["effect_size"] == pytest.approx(0.3 / diff.std().item())
    assert c["ci_low"] < c["ci_high"]


def test_statistics_of_two_images_and_of_constant_differences() -> None:
    """Two images have a spread; the p-value is computed unless every difference is 0."""
    from scipy import stats

    two = pc.compare_drops(
        torch.tensor([[0.5], [0.3]]), torch.zeros(2, 3, 1), torch.tensor([0, 1]), strengths=(1.0,)
    )
    sd = torch.tensor([0.5, 0.3], dtype=torch.float64).std().item()
    assert two["comparison"]["effect_size"] == pytest.approx(0.4 / sd)
    # every difference 1 (not 0): the one-sided test of five positive differences, (1/2)^5
    ones = pc.compare_drops(
        torch.ones(5, 1), torch.zeros(5, 2, 1), torch.zeros(5), strengths=(1.0,), n_bootstrap=10
    )
    want = stats.wilcoxon([1.0] * 5, alternative="greater").pvalue
    assert ones["comparison"]["p_value"] == pytest.approx(want) == pytest.approx(1 / 32)


def test_statistics_of_degenerate_cases_do_not_warn() -> None:
    """One image (no standard deviation) and all-zero differences (no Wilcoxon test) are
    handled before torch or SciPy would warn about them."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = pc.compare_drops(
            torch.tensor([[0.4]]), torch.zeros(1, 2, 1), torch.tensor([1]), strengths=(1.0,)
        )
        zero = pc.compare_drops(
            torch.full((3, 1), 0.2), torch.full((3, 2, 1), 0.2), torch.zeros(3), strengths=(1.0,)
        )
    assert one["comparison"]["effect_size"] is None and one["comparison"]["p_value"] == 0.5
    assert zero["comparison"]["p_value"] == 1.0 and zero["comparison"]["effect_size"] is None


def test_a_region_that_changes_nothing_does_not_hurt_where_random_regions_help() -> None:
    """Random regions that *raise* the target probability (negative drops) must not make a
    no-op region "hurt more": the region's own drop must be above 0 too (the demo's negative
    control, background voxels imputed from the background, said yes before this rule). Control:
    a region that does lower the probability still hurts more than the same random regions."""
    n = 32
    labels = torch.arange(n) % 2
    helping = -0.01 - 0.01 * torch.rand(n, 20, 1, generator=torch.Generator().manual_seed(0))
    noop = pc.compare_drops(torch.zeros(n, 1), helping, labels, strengths=(1.0,))
    c = noop["comparison"]
    assert c["ci_low"] > 0  # the paired difference alone would have said "hurts more"
    assert c["region_ci_low"] == 0.0 and not c["hurts_more"]
    hurting = torch.full((n, 1), 0.05)
    real = pc.compare_drops(hurting, helping, labels, strengths=(1.0,))["comparison"]
    assert real["region_ci_low"] == pytest.approx(0.05) and real["hurts_more"]
