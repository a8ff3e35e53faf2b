"""Clear errors and warnings: gradient methods inside ``torch.inference_mode()``, a detached
callable target, a model built in inference mode, CAM on a head where it is not Grad-CAM."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from braincam.cam import CAMHeadWarning, compute_cams
from braincam.errors import ModelError
from builders.cam_nets import gap_net, images

GRADIENT = [
    "gradcam",
    "gradcampp",
    "xgradcam",
    "layercam",
    "hirescam",
    "eigengradcam",
    "smoothgradcampp",
    "fullgrad",
]


def flags(model: nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("method", GRADIENT)
def test_gradient_methods_run_inside_inference_mode(method: str) -> None:
    """The call leaves inference mode for itself: same maps as outside, model untouched."""
    model, x = gap_net(), images(3)
    model.train()
    before = flags(model)
    expected = compute_cams(model, x, method, targets=[0, 1, 2])
    with torch.inference_mode():
        inside = compute_cams(model, x.clone(), method, targets=[0, 1, 2])
    torch.testing.assert_close(inside, expected)
    assert flags(model) == before


def test_model_built_in_inference_mode_is_a_model_error() -> None:
    with torch.inference_mode():
        model = gap_net()
    with pytest.raises(ModelError, match=r"created under torch.inference_mode\(\)"):
        compute_cams(model, images(), "gradcam")
    # gradient-free methods need no autograd: they still work
    assert compute_cams(model, images(), "scorecam", batch_size=8).shape == (4, 12, 12)


@pytest.mark.parametrize("method", GRADIENT)
def test_detached_callable_target_is_a_model_error(method: str) -> None:
    model = gap_net()
    model.train()
    before = flags(model)
    with pytest.raises(ModelError, match=r"does not require grad.*must not detach"):
        compute_cams(model, images(), method, targets=lambda o: o[:, 0].detach())
    assert flags(model) == before


# -- CAM's head ---------------------------------------------------------------------------------
def test_cam_on_a_gap_linear_head_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_cams(gap_net(), images(), "cam")
        compute_cams(gap_net(dim=3), torch.randn(2, 1, 6, 8, 4), "cam")


def test_cam_warns_on_convnext_pooling_layernorm_linear() -> None:
    convnext = pytest.importorskip("torchvision.models.convnext")
    torch.manual_seed(0)
    # convnext_tiny's architecture, narrower and shallower: avgpool → LayerNorm2d → Linear
    setting = [convnext.CNBlockConfig(16, 32, 1), convnext.CNBlockConfig(32, 48, 1)]
    setting += [convnext.CNBlockConfig(48, 64, 1), convnext.CNBlockConfig(64, None, 1)]
    model = convnext.ConvNeXt(setting, num_classes=3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with pytest.warns(CAMHeadWarning, match=r"layer 'features.7'.*classifier 'classifier.2'"):
        cam = compute_cams(model, x, "cam", layer="features.7", classifier="classifier.2")
    assert cam.shape == (2, 64, 64)  # still computed: a warning, not an error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_cams(model, x, "gradcam", layer="features.7")  # Grad-CAM is defined there


def test_cam_warns_on_densenet_functional_relu_before_pooling() -> None:
    densenet = pytest.importorskip("torchvision.models.densenet")
    torch.manual_seed(0)
    # densenet121's forward (norm5 → F.relu → pooling → classifier), a few narrow blocks
    model = densenet.DenseNet(8, (2, 2, 2, 2), num_init_features=16, num_classes=3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with pytest.warns(CAMHeadWarning, match="ReLU"):
        compute_cams(model, x, "cam", layer="features.norm5")


def test_cam_warns_on_global_max_pooling() -> None:
    model = gap_net()
    model[5] = nn.AdaptiveMaxPool2d(1)
    with pytest.warns(CAMHeadWarning, match="max pooling"):
        compute_cams(model, images(), "cam")


class _Offset(nn.Module):
    """Adds a constant to the logits: a head that is GAP + linear up to exactly ``delta``."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta


def _dyadic_head(weight: list[float], bias: float | None, delta: float = 0.0) -> nn.Sequential:
    """Identity layer → GAP → Linear(2, 1) (→ + delta), float64. With the dyadic activations
    below every product and sum is exact, so the gap the check sees is exactly ``delta``."""
    linear = nn.Linear(2, 1, bias=bias is not None).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([weight], dtype=torch.float64))
        if bias is not None:
            linear.bias.fill_(bias)
    return nn.Sequential(
        nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear, _Offset(delta)
    )


def _dyadic_act(scale: float = 1.0) -> torch.Tensor:
    """(1, 2, 2, 2): channel means 1 and 4 (times ``scale``), all exact in float64."""
    a = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[2.0, 6.0], [4.0, 4.0]]], dtype=torch.float64)
    return (a * scale).unsqueeze(0)


def test_cam_exact_heads_do_not_warn_whatever_their_bias_and_size() -> None:
    """No bias (nothing added), a large bias (|logit| ≫ 1) and large weights that cancel
    (Σ|W|·mean|A| ≫ |logit|): logit = W·mean(A) + b exactly, so no warning."""
    x = _dyadic_act()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for weight, bias in (([4.0, -1.0], None), ([1.0, 0.5], 64.0), ([64.0, -16.0], None)):
            compute_cams(_dyadic_head(weight, bias), x, "cam", layer="0", targets=0)
            compute_cams(_dyadic_head(weight, bias).float(), x.float(), "cam", layer="0", targets=0)
    with pytest.warns(CAMHeadWarning, match="for sample 0 the logit is 0.5 but W·mean"):
        compute_cams(_dyadic_head([4.0, -1.0], None, 0.5), x, "cam", layer="0", targets=0)


def test_cam_head_tolerance_is_1e3_eps_of_the_logit_scale() -> None:
    """The head check warns when |logit − (W·mean(A) + b)| exceeds
    1e3·eps·(1 + |logit| + Σ_k |W[c, k]|·mean|A_k|): a gap exactly at the tolerance passes, the
    next float above it warns. Here W·mean(A) + b = 1 − 1.5 + 0.5 = 0, so logit = gap = delta,
    and Σ|W|·mean|A| = 1·1 + 0.375·4 = 2.5."""
    eps = torch.finfo(torch.float64).eps
    spread = torch.tensor([2.5], dtype=torch.float64)

    def tolerance(delta: float) -> float:
        logit = torch.tensor([delta], dtype=torch.float64)
        return float(1e3 * eps * (1 + logit.abs() + spread))

    delta = tolerance(0.0)
    for _ in range(5):  # the tolerance depends on the logit (= delta) itself: its fixed point
        delta = tolerance(delta)
    assert tolerance(delta) == delta and 0 < delta < 1e-12
    x = _dyadic_act()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_cams(_dyadic_head([1.0, -0.375], 0.5, delta), x, "cam", layer="0", targets=0)
    above = float(np.nextafter(delta, 1.0))
    with pytest.warns(CAMHeadWarning, match="for sample 0"):
        compute_cams(_dyadic_head([1.0, -0.375], 0.5, above), x, "cam", layer="0", targets=0)


def test_cam_head_tolerance_is_each_samples_own() -> None:
    """Two samples, the first with activations 16× the second's: a gap 1.5× the second's
    tolerance but below the first's warns, and names the second sample."""
    eps = torch.finfo(torch.float64).eps
    x = torch.cat([_dyadic_act(16.0), _dyadic_act()])
    # W = (1, −0.25): W·mean(A) = 0 for both; Σ|W|·mean|A| = 32 and 2
    delta = 1.5 * 1e3 * eps * (1 + 2)
    assert delta < 1e3 * eps * (1 + 32)
    with pytest.warns(CAMHeadWarning, match="for sample 1") as record:
        compute_cams(_dyadic_head([1.0, -0.25], None, delta), x, "cam", layer="0", targets=0)
    assert len(record) == 1
