"""Deletion/insertion curves on toy models (the perturbation check: test_eval_perturbation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from braincam.errors import InputError
from braincam.metrics import faithfulness as fa


class Quadrant(nn.Module):
    """Logits (4q, -4q) with q the mean of the top-left quadrant of the last two axes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        q = x[..., :h, :w].mean(dim=tuple(range(1, x.ndim)))
        return torch.stack([4 * q, -4 * q], 1)


class RegionModel(nn.Module):
    """Class 0 while a fixed region is smooth (all ones); noise there flips the decision."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())
        self.drop = nn.Dropout(0.5)  # would make results random if left in train mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = ((x[:, 0] - 1) ** 2 * self.region).flatten(1).sum(1) / self.region.sum()
        logits = torch.stack([-8 * dev, 8 * (dev - 0.25)], 1)
        return self.drop(logits)


def _quadrant_case(n: int = 3, size: int = 12):
    gen = torch.Generator().manual_seed(0)
    images = 1 + 0.2 * torch.rand(n, 1, size, size, generator=gen)
    good = torch.zeros(n, size, size)
    good[:, : size // 2, : size // 2] = 1.0
    good += 0.01 * torch.rand(n, size, size, generator=gen)  # distinct values inside
    return images, torch.zeros(n, dtype=torch.long), good


def test_quadrant_first_beats_reverse_and_random() -> None:
    images, targets, good = _quadrant_case()
    kw = {"steps": 8, "baseline": "zero", "batch_size": 16}
    ours = fa.deletion_insertion(
        Quadrant(), images, targets, good, generator=torch.Generator().manual_seed(1), **kw
    )
    rev = fa.deletion_insertion(
        Quadrant(), images, targets, -good, generator=torch.Generator().manual_seed(1), **kw
    )
    assert torch.all(ours["deletion_auc"] < ours["random_deletion_auc"])
    assert torch.all(ours["random_deletion_auc"] < rev["deletion_auc"])
    assert torch.all(ours["insertion_auc"] > ours["random_insertion_auc"])
    assert torch.all(ours["random_insertion_auc"] > rev["insertion_auc"])
    # Once the quadrant is gone (a quarter of the voxels) the model sits at chance (0.5).
    quarter = int((ours["fractions"] >= 0.25).nonzero()[0])
    assert torch.allclose(
        ours["deletion"][:, quarter:], torch.full_like(ours["deletion"][:, quarter:], 0.5)
    )


def test_curve_end_points_and_auc() -> None:
    images, targets, good = _quadrant_case()
    res = fa.deletion_insertion(Quadrant(), images, targets, good, steps=4, baseline="zero")
    p_image = torch.sigmoid(8 * images[:, 0, :6, :6].mean((1, 2)))
    assert torch.allclose(res["fractions"], torch.linspace(0, 1, 5, dtype=torch.float64))
    assert torch.allclose(res["deletion"][:, 0], p_image)
    assert torch.allclose(res["insertion"][:, -1], p_image)
    assert torch.allclose(res["deletion"][:, -1], torch.full((3,), 0.5))
    assert torch.allclose(res["insertion"][:, 0], torch.full((3,), 0.5))
    expected = torch.trapezoid(res["deletion"], torch.linspace(0, 1, 5), dim=1)
    assert torch.allclose(res["deletion_auc"], expected)
    assert res["deletion"].shape == (3, 5) and res["random_insertion"].shape == (3, 5)
    summary = fa.summarize_faithfulness(res)
    assert summary["deletion_auc"] == pytest.approx(float(res["deletion_auc"].mean()))
    assert summary["mean_insertion"] == pytest.approx(res["insertion"].mean(0).tolist())
    assert summary["fractions"] == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_batching_and_2d_3d_agree() -> None:
    images, targets, good = _quadrant_case()

    def run(x: torch.Tensor, m: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        return fa.deletion_insertion(
            Quadrant(),
            x,
            targets,
            m,
            steps=5,
            baseline="blur",
            batch_size=batch_size,
            generator=torch.Generator().manual_seed(7),
        )

    a = run(images, good, 64)
    b = run(images, good, 1)
    c = run(images[:, :, None], good[:, None], 7)
    for key in ("deletion", "insertion", "random_deletion", "random_insertion"):
        assert torch.allclose(a[key], b[key]), key
        assert torch.allclose(a[key], c[key], atol=1e-6), key


def test_baselines() -> None:
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 10, 12, generator=gen)
    assert torch.equal(fa.baseline_images(images, "zero"), torch.zeros_like(images))
    mean = fa.baseline_images(images, "mean")
    assert torch.allclose(mean[:, :, 4, 5], images.mean((2, 3)))
    blurred = fa.baseline_images(images, "blur", blur_sigma=1.5)
    assert blurred.shape == images.shape
    assert blurred.std() < images.std()  # smoother
    const = torch.full((1, 1, 5, 6, 7), 3.0)  # 3D, constant: blur leaves it unchanged
    assert torch.allclose(fa.gaussian_blur(const, 2.0), const)
    with pytest.raises(InputError, match="baseline"):
        fa.baseline_images(images, "noise")  # type: ignore[arg-type]


def test_order_ranks_breaks_ties_at_random() -> None:
    flat = torch.zeros(2, 50)
    flat[:, 10] = 1.0
    ranks = fa.order_ranks(flat, torch.Generator().manual_seed(0))
    assert torch.equal(ranks[:, 10], torch.zeros(2, dtype=torch.long))
    assert torch.equal(ranks.sort(1).values, torch.arange(50).expand(2, 50))
    assert not torch.equal(ranks[0], ranks[1])  # the 49 ties are ordered differently


def test_model_state_restored_and_eval_used() -> None:
    region = torch.zeros(8, 8)
    region[2:5, 2:5] = 1
    model = RegionModel(region).train()
    images = torch.ones(4, 1, 8, 8)
    maps = region.expand(4, 8, 8).clone()
    targets = torch.zeros(4, dtype=torch.long)
    r1 = fa.deletion_insertion(
        model,
        images,
        targets,
        maps,
        steps=3,
        baseline="zero",
        generator=torch.Generator().manual_seed(0),
    )
    r2 = fa.deletion_insertion(
        model,
        images,
        targets,
        maps,
        steps=3,
        baseline="zero",
        generator=torch.Generator().manual_seed(0),
    )
    assert model.training and model.drop.training
    assert torch.equal(r1["deletion"], r2["deletion"])  # dropout was off


def test_bad_inputs() -> None:
    images, targets, good = _quadrant_case()
    with pytest.raises(InputError, match="spatial shape"):
        fa.deletion_insertion(Quadrant(), images, targets, good[:, :6])
    with pytest.raises(InputError, match="targets"):
        fa.deletion_insertion(Quadrant(), images, targets.float(), good)
    with pytest.raises(InputError, match="class indices"):
        fa.deletion_insertion(Quadrant(), images, targets + 5, good)
    with pytest.raises(InputError, match="class indices"):  # 2 classes: index 2 is one too far
        fa.deletion_insertion(Quadrant(), images, targets + 2, good)
    with pytest.raises(InputError, match="matching maps"):  # 2 images for 3 maps
        fa.deletion_insertion(Quadrant(), images[:2], targets[:2], good)
    with pytest.raises(InputError, match="steps"):
        fa.deletion_insertion(Quadrant(), images, targets, good, steps=0)


@pytest.mark.parametrize("sigma", [1 / 3, 1.0, 1.5])
@pytest.mark.parametrize("shape", [(2, 2, 9, 11), (1, 2, 5, 6, 7)])
def test_gaussian_blur_matches_scipy(sigma: float, shape: tuple[int, ...]) -> None:
    """SciPy's Gaussian filter with the same radius, max(1, ⌈3σ⌉), and edges replicated
    ("nearest"), over the spatial axes only."""
    from scipy import ndimage

    images = torch.rand(shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    radius = max(1, math.ceil(3 * sigma))
    spatial = len(shape) - 2
    expected = ndimage.gaussian_filter(
        images.numpy(),
        sigma=(0, 0) + (sigma,) * spatial,
        mode="nearest",
        radius=(0, 0) + (radius,) * spatial,
    )
    got = fa.gaussian_blur(images, sigma)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_gaussian_blur_of_zero_sigma_is_a_copy() -> None:
    images = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(12))
    same = fa.gaussian_blur(images, 0.0)
    assert torch.equal(same, images) and same.data_ptr() != images.data_ptr()


def test_two_steps_middle_point() -> None:
    """steps=2: one interior point, half the voxels switched (the quadrant and 36 others)."""
    images, targets, good = _quadrant_case()
    res = fa.deletion_insertion(Quadrant(), images, targets, good, steps=2, baseline="zero")
    p_image = torch.sigmoid(8 * images[:, 0, :6, :6].mean((1, 2)))
    assert res["fractions"].tolist() == [0.0, 0.5, 1.0]
    # deleted: the quadrant is zero, q = 0, p = 0.5; inserted: the quadrant is back, p = p_image
    assert torch.allclose(res["deletion"][:, 1], torch.full((3,), 0.5))
    assert torch.allclose(res["insertion"][:, 1], p_image)


class MeanModel(nn.Module):
    """Logits (4m, -4m) with m the image mean: p(class 0) = sigmoid(8m) counts the voxels left."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        return torch.stack([4 * m, -4 * m], 1)


@pytest.mark.parametrize("channels", [1, 2])
def test_curve_counts_are_rounded_fractions_of_the_voxels(channels: int) -> None:
    """Ones on a zero baseline, M = 100, steps = 3: round(k·100/3) = 0, 33, 67, 100 deleted
    (every channel of a voxel position at once)."""
    images = torch.ones(2, channels, 10, 10)
    maps = torch.rand(2, 10, 10, generator=torch.Generator().manual_seed(13))
    res = fa.deletion_insertion(
        MeanModel(), images, torch.zeros(2, dtype=torch.long), maps, steps=3, baseline="zero"
    )
    left = torch.tensor([100, 67, 33, 0]) / 100
    assert torch.allclose(res["deletion"], torch.sigmoid(8 * left).expand(2, 4))
    assert torch.allclose(res["insertion"], torch.sigmoid(8 * left.flip(0)).expand(2, 4))
    assert torch.allclose(res["random_deletion"], res["deletion"])  # the order does not matter
    x = [0.0, 0.33, 0.67, 1.0]  # the fractions actually switched
    y = torch.sigmoid(8 * left.flip(0)).tolist()
    auc = sum((y[i] + y[i + 1]) / 2 * (x[i + 1] - x[i]) for i in range(3))
    assert torch.allclose(res["insertion_auc"], torch.full((2,), auc))


class BatchRecorder(MeanModel):
    """MeanModel that records the size of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return super().forward(x)


def test_defaults_one_step_and_accepted_input_types() -> None:
    images = torch.ones(65, 1, 4, 4)
    maps = torch.rand(65, 4, 4, generator=torch.Generator().manual_seed(14))
    model = BatchRecorder()
    res = fa.deletion_insertion(model, images, [0] * 65, maps, steps=1, random_order=False)
    assert max(model.sizes) == 64  # the default batch_size caps every forward pass
    assert res["fractions"].tolist() == [0.0, 1.0]  # one step: the two end points
    assert torch.allclose(res["deletion"][:, 0], torch.sigmoid(torch.tensor(8.0)))
    # integer images and a list of targets: converted, same curves as float images
    ints = fa.deletion_insertion(MeanModel(), images[:2].long(), [0, 0], maps[:2], baseline="zero")
    floats = fa.deletion_insertion(
        MeanModel(), images[:2], torch.zeros(2, dtype=torch.long), maps[:2], baseline="zero"
    )
    assert len(ints["fractions"]) == 21  # 20 steps by default
    for key in ("deletion", "insertion"):
        assert torch.allclose(ints[key], floats[key]), key


def test_seeded_orders_blur_baseline_and_a_single_image() -> None:
    images = torch.zeros(1, 1, 12, 12)
    images[..., :6, :6] = 1.0  # a sharp edge: blurring lowers the quadrant's mean
    targets = torch.zeros(1, dtype=torch.long)
    flat = torch.ones(1, 12, 12)  # every voxel tied: the order is the generator's shuffle

    def run(seed: int) -> dict[str, torch.Tensor]:
        return fa.deletion_insertion(
            Quadrant(),
            images,
            targets,
            flat,
            steps=6,
            blur_sigma=2.0,
            generator=torch.Generator().manual_seed(seed),
        )

    a, b, c = run(0), run(0), run(1)
    for key in ("deletion", "insertion", "random_deletion", "random_insertion"):
        assert torch.equal(a[key], b[key]), key  # reproducible from the caller's generator
        assert not torch.equal(a[key], c[key]), key
    # the blur baseline with the caller's σ: the last deletion point is the blurred image's
    blurred = fa.gaussian_blur(images, 2.0)
    p_base = torch.sigmoid(8 * blurred[:, 0, :6, :6].mean((1, 2)))
    assert torch.allclose(a["deletion"][:, -1], p_base)
    assert torch.allclose(a["insertion"][:, 0], p_base)
    assert not torch.allclose(p_base, torch.sigmoid(torch.tensor([8.0])), atol=1e-3)


def test_blur_baseline_default_sigma_scales_rise_to_the_largest_side() -> None:
    """RISE's 5 px at 224², here 5 · 40 / 224 for a 40 × 20 image."""
    images = torch.rand(
        1, 1, 40, 20, generator=torch.Generator().manual_seed(15), dtype=torch.float64
    )
    expected = fa.gaussian_blur(images, 5.0 * 40 / 224)
    assert torch.equal(fa.baseline_images(images, "blur"), expected)
