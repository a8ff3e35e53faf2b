"""``bench_localization.py`` with the spatial-prior variants of issue 14 registered (not in the
zoo): no blur, gain 30 and/or a Gaussian blur of 1–2 cells on ``priorcnn-gap``'s softmax
prior, and a parametric blob (learned centre and width) instead of the softmax map.
BENCHMARKS.md, "Blurring the prior":

    cd benchmarks && python bench_prior_variants.py run OUT --config ../configs/fast-cpu.yaml \\
        --seeds 3 4 5 --placements cortical deep --sizes 64 \\
        --models priorcnn-b1-gap priorcnn-b2-gap priorcnn-g30-gap priorcnn-g30b1-gap blob-gap
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import bench_localization
import torch
from torch import nn

from braincam.models import backbones as bb
from braincam.models.registry import register_model

GRID = (32, 32)  # input/2 at the fast config's 64²
PRIORS = {
    "priorcnn-b0-gap": dict(blur=0.0),  # priorcnn-gap before its blur (its first table)
    "priorcnn-g30-gap": dict(gain=30.0),
    "priorcnn-b1-gap": dict(blur=1.0),
    "priorcnn-g30b1-gap": dict(gain=30.0, blur=1.0),
    "priorcnn-b2-gap": dict(blur=2.0),
}


class BlobPrior(nn.Module):
    """A Gaussian weight map whose centre and width (in [-1, 1] grid units) are learned; it
    averages 1 over the grid. ``gain`` scales the parameters' Adam steps, as in SpatialPrior."""

    def __init__(self, dims: int, gain: float = 10.0, sigma0: float = 0.5) -> None:
        super().__init__()
        self.gain = gain
        self.centre = nn.Parameter(torch.zeros(dims))
        self.log_sigma = nn.Parameter(torch.full((dims,), math.log(sigma0) / gain))

    def weights(self, size: Sequence[int]) -> torch.Tensor:
        mu, sigma = self.centre * self.gain, torch.exp(self.log_sigma * self.gain)
        log_w: Any = 0.0
        for d, s in enumerate(size):
            shape = [1] * len(size)
            shape[d] = s
            c = torch.linspace(-1, 1, s, device=mu.device)
            log_w = log_w + (-((c - mu[d]) ** 2) / (2 * sigma[d] ** 2)).view(shape)
        return (torch.softmax(log_w.flatten(), 0) * math.prod(size)).view(1, 1, *size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x.shape[2:])


def build_blob(
    *, in_channels: int, num_classes: int, dropout: float, sigma0: float = 0.5
) -> bb.Built:
    """priorcnn-gap with a :class:`BlobPrior` in place of the softmax map."""
    features = bb.small_cnn_features(in_channels, (16, 16), pools=0)
    backbone = nn.Sequential(
        OrderedDict(stem=nn.AvgPool2d(2), features=features, prior=BlobPrior(2, sigma0=sigma0))
    )
    head = dict(pool="gap", dropout=dropout, spatial_dims=2, kernel_size=1)
    return bb._from_scratch(backbone, 16, num_classes, 16, **head), None


def register() -> None:
    meta = dict(cam_layer="head.conv", classifier="head.fc", feature_size=GRID, input_size=64)
    for name, kw in PRIORS.items():
        builder = partial(bb.build_prior_cnn, (16, 16), 16, grid=GRID, **kw)
        register_model(name, builder, family="priorcnn", **meta)
    register_model("blob-gap", build_blob, family="priorcnn", **meta)
    register_model("blob-s1-gap", partial(build_blob, sigma0=1.0), family="priorcnn", **meta)


if __name__ == "__main__":
    register()
    bench_localization.main()
