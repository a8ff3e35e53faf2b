"""The model after a layer (braincam.cam.tail) and Ablation-CAM run through it."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import braincam.cam.methods.perturbation as perturbation
from braincam.cam import compute_cams
from braincam.cam.tail import model_tail
from braincam.models import build_model


def output_from_layer(model: nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(the model's output, the layer's output) of one forward."""
    seen: list[torch.Tensor] = []
    layer = dict(model.named_modules())[name]
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with torch.no_grad():
            return model(x), seen[0]
    finally:
        handle.remove()


class Looped(nn.Module):
    """A forward whose control flow depends on the data: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        if a.sum() > 0:
            a = a * 2
        return self.fc(a.mean(dim=(2, 3)))


class Twice(nn.Module):
    """The same layer called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.conv(self.stem(x))).mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (torchvision.models.resnet18(num_classes=3), "layer4"),  # a container kept whole
        (torchvision.models.resnet18(num_classes=3), "layer3"),  # the tail holds layer4
        (torchvision.models.densenet121(num_classes=3), "features.denseblock4"),
        (build_model("tinycnn-gap", num_classes=2, in_channels=3), "head.conv"),
    ],
)
def test_the_tail_reproduces_the_model_from_the_layer_output(model: nn.Module, name: str) -> None:
    torch.manual_seed(0)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    expected, activation = output_from_layer(model, name, x)
    tail = model_tail(model, name)
    assert tail is not None
    with torch.no_grad():
        torch.testing.assert_close(tail(activation), expected, rtol=0, atol=1e-6)
        # and it is a function of that output: another activation gives another output
        assert not torch.allclose(tail(activation * 0.5), expected, atol=1e-3)
    # it shares the model's parameters (no copy), so it follows later weight changes
    shared = {p.data_ptr() for p in model.parameters()}
    assert {p.data_ptr() for p in tail.parameters()} <= shared


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (torchvision.models.resnet18(num_classes=3), "layer4.0.conv1"),  # residual around it
        (torchvision.models.resnet18(num_classes=3), "layer4.1.bn2"),  # residual around it
        (Looped(), "conv"),  # untraceable forward
        (Twice(), "conv"),  # called twice
        (Twice(), "missing"),  # not a layer of the model
    ],
)
def test_no_tail_when_the_output_is_not_a_function_of_the_layer_alone(
    model: nn.Module, name: str
) -> None:
    assert model_tail(model, name) is None


def ablation_without_tail(monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> torch.Tensor:
    with monkeypatch.context() as m:
        m.setattr(perturbation, "model_tail", lambda model, name: None)
        return compute_cams(*args, **kwargs)


@pytest.mark.parametrize("layer", ["layer4", ["layer3", "layer4"], "layer4.1.conv2"])
def test_ablationcam_through_the_tail_equals_the_whole_model(
    monkeypatch: pytest.MonkeyPatch, layer: str | list[str]
) -> None:
    """Exactly the same maps (float64, mixed targets), also when a hooked layer sits inside
    another's tail (its captures must not be overwritten) and when there is no tail."""
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=3).double()
    model.train()  # the CAM engine evaluates in eval mode and restores train mode
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    kw = {"layer": layer, "targets": [2, 0], "batch_size": 37, "normalize": False}
    fast = compute_cams(model, x, "ablationcam", **kw)
    slow = ablation_without_tail(monkeypatch, model, x, "ablationcam", **kw)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
    assert float(fast.abs().max()) > 0
    assert all(m.training for m in model.modules())  # modes restored, none reset by the tail
