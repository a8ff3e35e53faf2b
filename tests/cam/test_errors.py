"""Clear errors and warnings: gradient methods inside ``torch.inference_mode()``, a detached
callable target, a model built in inference mode, CAM on a head where it is not Grad-CAM."""

from __future__ import annotations

import warnings

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
