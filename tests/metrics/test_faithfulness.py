"""Deletion/insertion curves on toy models (the perturbation check: test_eval_perturbation)."""

from __future__ import annotations

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
    with pytest.raises(InputError, match="steps"):
        fa.deletion_insertion(Quadrant(), images, targets, good, steps=0)
