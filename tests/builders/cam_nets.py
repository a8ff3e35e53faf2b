"""Small networks and batches for the CAM tests (random weights, seeded)."""

from __future__ import annotations

import torch
from torch import nn


def gap_net(dim: int = 2, seed: int = 0, in_ch: int = 1, classes: int = 3) -> nn.Sequential:
    """conv → ReLU → conv(stride 2) → BN → ReLU → GAP → linear, 2-D or 3-D."""
    torch.manual_seed(seed)
    conv = nn.Conv2d if dim == 2 else nn.Conv3d
    bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d
    pool = nn.AdaptiveAvgPool2d if dim == 2 else nn.AdaptiveAvgPool3d
    net = nn.Sequential(
        conv(in_ch, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        conv(4, 6, 3, padding=1, stride=2),
        bn(6),
        nn.ReLU(inplace=True),
        pool(1),
        nn.Flatten(),
        nn.Linear(6, classes),
    )
    with torch.no_grad():
        net[3].running_mean.uniform_(-0.2, 0.2)
        net[3].running_var.uniform_(0.5, 1.5)
        net[3].weight.uniform_(0.5, 1.5)
    net.cam_layer = "4"  # type: ignore[assignment]
    net.classifier_layer = "7"  # type: ignore[assignment]
    return net


def same_res_net(seed: int = 0, classes: int = 3, gain: float = 3e4) -> nn.Sequential:
    """The target layer ("3") keeps the input size; more convs after it make g vary in space."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(6, 5, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, classes),
    )
    with torch.no_grad():
        net[8].weight.mul_(gain)
    return net


def images(n: int = 4, size: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


#: Options that keep the sampling methods quick in the tests that run every method (the
#: formulas are checked with these and other counts in test_new_methods.py).
FAST: dict[str, dict[str, object]] = {
    "sscam": {"num_samples": 3},
    "iscam": {"num_samples": 3},
    "smoothgradcampp": {"num_samples": 2},
}
