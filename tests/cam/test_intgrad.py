"""Integrated Gradients from a reference (``intgrad``): the closed form of a linear model,
completeness, Captum's implementation, and a known-yes / known-no localization control."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braincam.cam import compute_cams, make_method
from braincam.errors import InputError
from braincam.metrics.localization import pointing_game
from builders.reference import require


class _Linear(nn.Module):
    """conv 1×1 → GAP → linear: every class score is linear in the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1)
        self.fc = nn.Linear(4, 3)
        self.cam_layer = "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def _relu_net(dims: int = 2) -> nn.Module:
    conv, pool = (
        (nn.Conv2d, nn.AdaptiveAvgPool2d) if dims == 2 else (nn.Conv3d, nn.AdaptiveAvgPool3d)
    )
    net = nn.Sequential(
        conv(1, 4, 3, padding=1),
        nn.ReLU(),
        conv(4, 4, 3, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    net.cam_layer = "2"  # type: ignore[assignment]
    return net.eval()


def test_a_linear_model_gives_weights_times_the_difference() -> None:
    """S linear: IG = (x − r) ⊙ ∂S/∂x for any number of steps (the path's gradient is constant)."""
    torch.manual_seed(0)
    model = _Linear().eval()
    x, ref = torch.randn(3, 2, 5, 6), torch.randn(2, 5, 6)
    target = 1
    grad = (model.fc.weight[target] @ model.conv.weight[:, :, 0, 0]) / 30  # ∂S/∂x per channel
    expected = ((x - ref) * grad.view(1, 2, 1, 1)).sum(1)
    for steps in (1, 7):
        res = make_method(model, "intgrad", reference=ref, steps=steps, smooth=0)(
            x, target, normalize=False, relu=False
        )
        assert torch.allclose(res.raw, expected, atol=1e-6)
    # the default reference is zeros (Captum's default baseline)
    res = make_method(model, "intgrad", smooth=0)(x, target, normalize=False, relu=False)
    assert torch.allclose(res.raw, (x * grad.view(1, 2, 1, 1)).sum(1), atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_attributions_sum_to_the_score_difference(dims: int) -> None:
    """Completeness: Σ IG = S(x) − S(r) as the steps grow; few steps are off by more."""
    torch.manual_seed(1)
    model = _relu_net(dims)
    shape = (2, 1, *([6] * dims))
    x, ref = torch.randn(shape), torch.randn(shape)
    with torch.no_grad():
        gap = model(x)[:, 0] - model(ref)[:, 0]
    fine = make_method(model, "intgrad", reference=ref, steps=512, smooth=0)(
        x, 0, normalize=False, relu=False
    )
    assert torch.allclose(fine.raw.flatten(1).sum(1), gap, rtol=1e-3, atol=1e-4)
    coarse = make_method(model, "intgrad", reference=ref, steps=1, smooth=0)(
        x, 0, normalize=False, relu=False
    )
    assert not torch.allclose(coarse.raw.flatten(1).sum(1), gap, rtol=1e-3, atol=1e-4)


def test_matches_captum() -> None:
    captum_attr = require("captum.attr")
    torch.manual_seed(2)
    model = _relu_net(2)
    x, ref = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    ig = captum_attr.IntegratedGradients(model)
    theirs = ig.attribute(x, baselines=ref, target=1, n_steps=16, method="riemann_middle")
    ours = make_method(model, "intgrad", reference=ref, steps=16, smooth=0)(
        x, 1, normalize=False, relu=False
    )
    assert torch.allclose(ours.raw, theirs.sum(1), atol=1e-5)


def test_it_points_at_the_changed_voxels_and_not_at_an_unchanged_image() -> None:
    """Known yes: the score is the mean darkening of a square, the image is the reference with
    the square darkened → the map's maximum is in the square. Known no: the image *is* the
    reference → a constant map, whose pointing game is chance (the square's share)."""
    square = torch.zeros(16, 16, dtype=torch.bool)
    square[4:8, 9:13] = True
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 2)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[1] = -square.flatten().float()
    model.cam_layer = "1"  # type: ignore[assignment]
    ref = 1.0 + 0.1 * torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    ill = ref.clone()
    ill[:, 0][:, square] -= 0.5
    masks = square.expand(4, 16, 16)
    yes = compute_cams(model, ill, "intgrad", targets=1, reference=ref)
    assert pointing_game(yes, masks).mean().item() == 1.0
    no = compute_cams(model, ref, "intgrad", targets=1, reference=ref)
    assert pointing_game(no, masks).mean().item() == pytest.approx(square.float().mean().item())


def test_smooth_blurs_the_rectified_map() -> None:
    """The default map is the rectified attribution blurred by σ = ½ voxel (edges replicated:
    a depth-1 volume keeps its 2-D map)."""
    from braincam.imaging.filters import gaussian_blur

    torch.manual_seed(4)
    model = _relu_net(2)
    x, ref = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    plain = make_method(model, "intgrad", reference=ref, smooth=0)(x, 0, normalize=False).raw
    assert (plain == 0).any()  # the ReLU left ties at zero
    smoothed = make_method(model, "intgrad", reference=ref)(x, 0, normalize=False).raw
    expected = gaussian_blur(plain[:, None], [0.5, 0.5])[:, 0]
    assert torch.allclose(smoothed, expected, atol=1e-7)
    assert not torch.allclose(smoothed, plain)


def test_bad_options_are_named() -> None:
    model = _relu_net(2)
    with pytest.raises(InputError, match="steps"):
        make_method(model, "intgrad", steps=0)
    with pytest.raises(InputError, match="reference"):
        make_method(model, "intgrad", reference=[0.0])
    with pytest.raises(InputError, match="smooth"):
        make_method(model, "intgrad", smooth=-1.0)
    cam = make_method(model, "intgrad", reference=torch.zeros(1, 5, 5))
    with pytest.raises(InputError, match="reference must be shaped"):
        cam(torch.zeros(2, 1, 6, 6), 0)
