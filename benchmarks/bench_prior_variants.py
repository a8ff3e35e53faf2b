"""``bench_localization.py`` with the spatial-prior variants of issue 14 registered (not in the
zoo): no blur, gain 30 and/or a Gaussian blur of 1–2 cells on ``priorcnn-gap``'s softmax
prior, and a parametric blob (learned centre and width) instead of the softmax map
(BENCHMARKS.md, "Blurring the prior"); attention pooling computed from the features, the
softmax prior stepped by normalized gradient descent instead of Adam, and a mixture of movable
blobs (BENCHMARKS.md, "The fixed-point ceiling"):

    cd benchmarks && python bench_prior_variants.py run OUT --config ../configs/fast-cpu.yaml \\
        --seeds 3 4 5 --placements cortical deep --sizes 64 \\
        --models priorcnn-b1-gap priorcnn-b2-gap priorcnn-g30-gap priorcnn-g30b1-gap blob-gap
    ... --models attn-gap attn-nc-gap ngd-b1-gap ngd-b0-gap mix4-gap mix4-g30-gap
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


class EvidenceAttention(nn.Module):
    """Attention pooling computed from the features (attention MIL, Ilse et al. 2018): weights
    ``N · softmax(gain · v·tanh(U·[features; coordinates]))`` per image, so the map follows the
    local evidence; the coordinates let it prefer a place. Starts uniform (``v`` = 0)."""

    def __init__(self, channels: int, hidden: int = 8, gain: float = 10.0, coords: bool = True):
        super().__init__()
        self.gain, self.coords = gain, coords
        self.hidden = nn.Conv2d(channels + (2 if coords else 0), hidden, 1)
        self.score = nn.Conv2d(hidden, 1, 1)

    def reset(self) -> None:
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        inp = x
        if self.coords:
            h, w = x.shape[2:]
            yy, xx = torch.meshgrid(
                torch.linspace(-1, 1, h, device=x.device),
                torch.linspace(-1, 1, w, device=x.device),
                indexing="ij",
            )
            grid = torch.stack([yy, xx])[None].expand(x.shape[0], -1, -1, -1)
            inp = torch.cat([x, grid], 1)
        logits = self.gain * self.score(torch.tanh(self.hidden(inp)))
        n = math.prod(x.shape[2:])
        return torch.softmax(logits.flatten(2), -1).view_as(logits) * n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


def build_attention(*, in_channels: int, num_classes: int, dropout: float, **kw: Any) -> bb.Built:
    """priorcnn-gap with :class:`EvidenceAttention` in place of the softmax map."""
    features = bb.small_cnn_features(in_channels, (16, 16), pools=0)
    attention = EvidenceAttention(16, **kw)
    backbone = nn.Sequential(OrderedDict(stem=nn.AvgPool2d(2), features=features, prior=attention))
    head = dict(pool="gap", dropout=dropout, spatial_dims=2, kernel_size=1)
    net = bb._from_scratch(backbone, 16, num_classes, 16, **head)
    attention.reset()
    return net, None


class NormalizedStepPrior(bb.SpatialPrior):
    """SpatialPrior whose logits skip Adam: each backward step moves them by ``-step · g / max|g|``
    (one step for the whole map), so a cell with more evidence moves faster than one with less;
    Adam's per-element normalization moves every cell by about ``lr`` whatever its gradient."""

    def __init__(self, grid: Sequence[int], step: float = 0.1, **kw: Any) -> None:
        super().__init__(grid, gain=1.0, **kw)
        self.step = step
        self.logits.register_hook(self._descend)

    def _descend(self, grad: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.logits -= self.step * grad / grad.abs().max().clamp_min(1e-30)
        return torch.zeros_like(grad)  # Adam sees no gradient: its moments stay 0


def build_ngd(*, in_channels: int, num_classes: int, dropout: float, **kw: Any) -> bb.Built:
    """priorcnn-gap with :class:`NormalizedStepPrior`."""
    features = bb.small_cnn_features(in_channels, (16, 16), pools=0)
    prior = NormalizedStepPrior(GRID, **kw)
    backbone = nn.Sequential(OrderedDict(stem=nn.AvgPool2d(2), features=features, prior=prior))
    head = dict(pool="gap", dropout=dropout, spatial_dims=2, kernel_size=1)
    return bb._from_scratch(backbone, 16, num_classes, 16, **head), None


class MixturePrior(nn.Module):
    """A mixture of Gaussian blobs: ``k`` per axis start on a regular grid, each with a learned
    centre and width, mixed by ``softmax(gain · alpha)``; it averages 1 over the grid. Once the
    mixture picks a blob its centre still moves (a Gaussian's gradient does not vanish), where a
    saturated softmax map stays on the cell it chose."""

    def __init__(
        self, dims: int, k: int = 4, gain: float = 100.0, move: float = 10.0, sigma0: float = 0.25
    ) -> None:
        super().__init__()
        self.gain, self.move = gain, move
        ticks = torch.linspace(-1 + 1 / k, 1 - 1 / k, k)
        centres = torch.stack(torch.meshgrid(*[ticks] * dims, indexing="ij"), -1).reshape(-1, dims)
        self.centre = nn.Parameter(centres / move)  # (K, dims)
        self.log_sigma = nn.Parameter(torch.full((len(centres),), math.log(sigma0) / move))
        self.alpha = nn.Parameter(torch.zeros(len(centres)))

    def weights(self, size: Sequence[int]) -> torch.Tensor:
        axes = [torch.linspace(-1, 1, s, device=self.centre.device) for s in size]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(size))
        mu, sigma = self.centre * self.move, torch.exp(self.log_sigma * self.move)
        d2 = torch.cdist(grid, mu) ** 2  # (cells, K)
        blobs = torch.softmax(-d2 / (2 * sigma**2), 0)  # each blob sums to 1 over the grid
        mix = blobs @ torch.softmax(self.alpha * self.gain, 0)
        return (mix * math.prod(size)).view(1, 1, *size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x.shape[2:])


def build_mixture(*, in_channels: int, num_classes: int, dropout: float, **kw: Any) -> bb.Built:
    """priorcnn-gap with a :class:`MixturePrior`."""
    features = bb.small_cnn_features(in_channels, (16, 16), pools=0)
    prior = MixturePrior(2, **kw)
    backbone = nn.Sequential(OrderedDict(stem=nn.AvgPool2d(2), features=features, prior=prior))
    head = dict(pool="gap", dropout=dropout, spatial_dims=2, kernel_size=1)
    return bb._from_scratch(backbone, 16, num_classes, 16, **head), None


MIXTURES = {
    "mix4-gap": {},
    "mix4-g30-gap": dict(gain=30.0),
    "mix6-gap": dict(k=6, sigma0=0.17),
}

NGD = {
    "ngd-b1-gap": dict(blur=1.0),
    "ngd-b0-gap": dict(blur=0.0),
    "ngd-s03-b1-gap": dict(blur=1.0, step=0.3),
}

ATTENTION = {
    "attn-gap": {},
    "attn-nc-gap": dict(coords=False),
    "attn-g30-gap": dict(gain=30.0),
}


def register() -> None:
    meta = dict(cam_layer="head.conv", classifier="head.fc", feature_size=GRID, input_size=64)
    for name, kw in PRIORS.items():
        builder = partial(bb.build_prior_cnn, (16, 16), 16, grid=GRID, **kw)
        register_model(name, builder, family="priorcnn", **meta)
    register_model("blob-gap", build_blob, family="priorcnn", **meta)
    register_model("blob-s1-gap", partial(build_blob, sigma0=1.0), family="priorcnn", **meta)
    for name, kw in MIXTURES.items():
        register_model(name, partial(build_mixture, **kw), family="priorcnn", **meta)
    for name, kw in NGD.items():
        register_model(name, partial(build_ngd, **kw), family="priorcnn", **meta)
    for name, kw in ATTENTION.items():
        register_model(name, partial(build_attention, **kw), family="priorcnn", **meta)


if __name__ == "__main__":
    register()
    bench_localization.main()
