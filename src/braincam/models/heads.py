"""The CAM head of the dMRI study: conv 3×3 → ReLU → global pooling → dropout → linear.

The added conv block's output (after its ReLU) is the class activation map's feature map, and
the final ``nn.Linear`` holds the per-class channel weights CAM multiplies it with. The same head
serves volumes (``spatial_dims=3``: conv3d, 3-D global pooling), so CAM stays exact in 3-D.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Pooling = Literal["gap", "gmp"]
SpatialDims = Literal[2, 3]

_CONV: dict[int, type[nn.Conv2d] | type[nn.Conv3d]] = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL: dict[tuple[int, str], type[nn.Module]] = {
    (2, "gap"): nn.AdaptiveAvgPool2d,
    (2, "gmp"): nn.AdaptiveMaxPool2d,
    (3, "gap"): nn.AdaptiveAvgPool3d,
    (3, "gmp"): nn.AdaptiveMaxPool3d,
}


class CamHead(nn.Module):
    """``conv`` (k×k, stride 1, same padding, ``width`` channels, ReLU) → pool → ``dropout`` →
    ``fc``; ``spatial_dims=3`` for volumes (conv3d, 3-D pooling), ``kernel_size`` 3 or 1."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        width: int = 1024,
        pool: Pooling = "gap",
        dropout: float = 0.5,
        spatial_dims: SpatialDims = 2,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or kernel_size % 2 != 1:
            raise ValueError(
                f"CamHead takes spatial_dims 2 or 3 and an odd kernel_size, "
                f"got {spatial_dims!r} and {kernel_size!r}"
            )
        self.spatial_dims = spatial_dims
        # Not in-place: CAM/Grad-CAM hooks read this block's output, and an in-place ReLU would
        # alias it with the conv output that autograd still needs.
        self.conv = nn.Sequential(
            _CONV[spatial_dims](
                in_channels, width, kernel_size=kernel_size, stride=1, padding=kernel_size // 2
            ),
            nn.ReLU(inplace=False),
        )
        self.pool: nn.Module = _POOL[spatial_dims, pool](1)
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
