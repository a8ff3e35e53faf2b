"""The CAM head of the dMRI study: conv 3×3 → ReLU → global pooling → dropout → linear.

The added conv block's output (after its ReLU) is the class activation map's feature map, and
the final ``nn.Linear`` holds the per-class channel weights CAM multiplies it with.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Pooling = Literal["gap", "gmp"]


class CamHead(nn.Module):
    """``conv`` (3×3, stride 1, pad 1, ``width`` channels, ReLU) → pool → ``dropout`` → ``fc``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        width: int = 1024,
        pool: Pooling = "gap",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        # Not in-place: CAM/Grad-CAM hooks read this block's output, and an in-place ReLU would
        # alias it with the conv output that autograd still needs.
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=False),
        )
        self.pool: nn.Module = nn.AdaptiveAvgPool2d(1) if pool == "gap" else nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init for the conv (it feeds a ReLU), small normal weights for the classifier."""
        conv = self.conv[0]
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.conv(x)).flatten(1)
        return self.fc(self.dropout(pooled))


class CamNet(nn.Module):
    """A (cut) backbone followed by a :class:`CamHead`.

    Parameter names are ``backbone.<torchvision name>`` and ``head.*``, so ImageNet weights map
    onto the backbone by stripping the prefix.
    """

    def __init__(self, backbone: nn.Module, head: CamHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
