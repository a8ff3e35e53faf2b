"""Batched training-time augmentations on tensors (on whatever device the batch lives).

Geometric transforms (random resized crop; rotation, translation, scaling) are folded into one
affine matrix per image and applied with a single ``grid_sample`` call, so a batch costs one
resampling whatever is enabled. They run *before* z-scoring, where zero padding equals the
background of an FA map; noise and erasing run *after* it, so their values are in units of the
normalized input (erasing to 0 = the train-split mean).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from braincam.config import AugmentConfig


def _uniform(n: int, low: float, high: float, like: Tensor, gen: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, device=like.device, dtype=like.dtype, generator=gen)


def _log_uniform(
    n: int, low: float, high: float, like: Tensor, gen: torch.Generator | None
) -> Tensor:
    return torch.exp(_uniform(n, math.log(low), math.log(high), like, gen))


def _chosen(n: int, p: float, like: Tensor, gen: torch.Generator | None) -> Tensor:
    """Boolean mask (n,) of the images a transform with probability ``p`` applies to."""
    return torch.rand(n, device=like.device, generator=gen) < p


def hflip(x: Tensor, p: float, gen: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right with probability ``p``."""
    if p <= 0:
        return x
    mask = _chosen(x.shape[0], p, x, gen).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def gaussian_noise(x: Tensor, p: float, std: float, gen: torch.Generator | None = None) -> Tensor:
    """Add N(0, std²) noise to each image with probability ``p``."""
    if p <= 0 or std <= 0:
        return x
    mask = _chosen(x.shape[0], p, x, gen).view(-1, 1, 1, 1).to(x.dtype)
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=gen)
    return x + mask * std * noise


def random_erasing(
    x: Tensor,
    p: float,
    scale: tuple[float, float] = (0.02, 0.2),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
    gen: torch.Generator | None = None,
) -> Tensor:
    """Set one random rectangle per chosen image to ``value`` (all channels)."""
    if p <= 0:
        return x
    n, _, h, w = x.shape
    area = _uniform(n, *scale, x, gen) * h * w
    aspect = _log_uniform(n, *ratio, x, gen)
    eh = torch.sqrt(area / aspect).round().clamp(1, h)
    ew = torch.sqrt(area * aspect).round().clamp(1, w)
    top = (torch.rand(n, device=x.device, generator=gen, dtype=x.dtype) * (h - eh + 1)).floor()
    left = (torch.rand(n, device=x.device, generator=gen, dtype=x.dtype) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h)
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, w)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    chosen = _chosen(n, p, x, gen).view(n, 1, 1)
    mask = in_rows[:, :, None] & in_cols[:, None, :] & chosen
    return x.masked_fill(mask[:, None], value)


def geometric(x: Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> Tensor:
    """Random resized crop and rotation/translation/scaling as one resampling per batch.

    The matrix maps output to input coordinates (``affine_grid`` convention, [-1, 1]); images
    for which no transform was drawn keep the identity and are returned untouched.
    """
    crop, aff = cfg.resized_crop, cfg.affine
    use_crop = crop.p > 0
    use_aff = aff.p > 0 and (aff.degrees > 0 or aff.translate > 0 or aff.scale != (1.0, 1.0))
    if not (use_crop or use_aff):
        return x
    n = x.shape[0]
    dtype = x.dtype
    eye = torch.eye(2, device=x.device, dtype=dtype).expand(n, 2, 2)
    lin = eye.clone()
    shift = torch.zeros(n, 2, device=x.device, dtype=dtype)
    applied = torch.zeros(n, dtype=torch.bool, device=x.device)

    if use_aff:
        chosen = _chosen(n, aff.p, x, gen)
        angle = _uniform(n, -aff.degrees, aff.degrees, x, gen) * (math.pi / 180)
        zoom = _uniform(n, *aff.scale, x, gen)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        move = _uniform(2 * n, -2 * aff.translate, 2 * aff.translate, x, gen).view(n, 2)
        lin = torch.where(chosen.view(n, 1, 1), rot, lin)
        shift = torch.where(chosen.view(n, 1), move, shift)
        applied |= chosen

    if use_crop:
        chosen = _chosen(n, crop.p, x, gen)
        area = _uniform(n, *crop.scale, x, gen)
        aspect = _log_uniform(n, *crop.ratio, x, gen)
        # Box size as a fraction of the image; clamped (not rejected) to stay batched.
        bw = torch.sqrt(area * aspect).clamp(max=1.0)
        bh = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = _uniform(n, -1, 1, x, gen) * (1 - bw)
        cy = _uniform(n, -1, 1, x, gen) * (1 - bh)
        box = torch.diag_embed(torch.stack([bw, bh], -1))
        box = torch.where(chosen.view(n, 1, 1), box, eye)
        centre = torch.where(chosen.view(n, 1), torch.stack([cx, cy], -1), torch.zeros_like(shift))
        # Crop after the affine: x_in = B (L x + t) + c.
        lin = box @ lin
        shift = (box @ shift.unsqueeze(-1)).squeeze(-1) + centre
        applied |= chosen

    if not bool(applied.any()):
        return x
    theta = torch.cat([lin, shift.unsqueeze(-1)], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where(applied.view(n, 1, 1, 1), out, x)


class Augmenter:
    """The configured augmentations, split around normalization (see the module docstring)."""

    def __init__(self, cfg: AugmentConfig, generator: torch.Generator | None = None) -> None:
        self.cfg = cfg
        self.generator = generator

    @property
    def enabled(self) -> bool:
        """Whether any augmentation can fire."""
        c = self.cfg
        return any(t.p > 0 for t in (c.hflip, c.noise, c.resized_crop, c.erasing, c.affine))

    def before_normalize(self, x: Tensor) -> Tensor:
        """Flip and geometric transforms on raw intensities."""
        x = hflip(x, self.cfg.hflip.p, self.generator)
        return geometric(x, self.cfg, self.generator)

    def after_normalize(self, x: Tensor) -> Tensor:
        """Noise and erasing on z-scored intensities."""
        c = self.cfg
        x = gaussian_noise(x, c.noise.p, c.noise.std, self.generator)
        return random_erasing(
            x, c.erasing.p, c.erasing.scale, c.erasing.ratio, c.erasing.value, self.generator
        )
