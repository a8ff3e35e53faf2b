"""Heatmap mass outside the brain: the shortcut alarm.

A classifier can separate groups by something outside the brain — scalp thickness, head size, a
skull-stripping artefact, the field of view. Its heatmaps then put mass on the skull and scalp.
For each map this module measures the share of its mass outside the brain mask and in the rim of
the head (the band up to ``rim`` pixels outside the brain, where skull and scalp lie), next to
the area baseline: the share of the slice those pixels cover, which is what a uniform map puts
there. The alarm fires when a method's maps put significantly more than their area's share
outside the brain or in the rim (:data:`RULE`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from braincam.errors import InputError

__all__ = ["RULE", "outside_brain_shares", "rim_band", "shortcut_alarm"]

#: The alarm's rule, as the report states it.
RULE = (
    "fires when the mean share of the map's mass outside the brain (or in the head's rim) "
    "exceeds the mean share of the slice those pixels cover by more than {margin:g}, with the "
    "95 % CI of the per-slice excess above 0"
)


def rim_band(brain: Tensor, width: int) -> Tensor:
    """Pixels at most ``width`` pixels (Euclidean) outside ``brain`` (N, H, W) bool: the band
    where skull and scalp lie."""
    if width < 1:
        raise InputError("the rim must be at least one pixel wide", value=width)
    r = torch.arange(-width, width + 1, dtype=torch.float32)
    disc = ((r[:, None] ** 2 + r[None, :] ** 2) <= width**2).float()[None, None]
    grown = F.conv2d(brain[:, None].float(), disc, padding=width)[:, 0] > 0.5
    return grown & ~brain


def outside_brain_shares(maps: Tensor, brain: Tensor, rim: Tensor) -> dict[str, Tensor]:
    """Per map (N, H, W), non-negative: the share of its mass outside the brain and in the rim,
    and the area shares of those pixels (the uniform map's). Maps without mass give NaN."""
    if maps.shape != brain.shape or rim.shape != brain.shape:
        raise InputError(
            "maps, brain masks and rims must have one shape",
            value=[tuple(maps.shape), tuple(brain.shape), tuple(rim.shape)],
        )
    m = maps.double().clamp_min(0).flatten(1)
    total = m.sum(1)
    total = torch.where(total > 0, total, torch.full_like(total, float("nan")))
    outside, band = (~brain).flatten(1), rim.flatten(1)
    return {
        "mass_outside": (m * outside).sum(1) / total,
        "area_outside": outside.double().mean(1),
        "mass_rim": (m * band).sum(1) / total,
        "area_rim": band.double().mean(1),
    }


def _excess(mass: Tensor, area: Tensor, margin: float) -> dict[str, Any]:
    """Mean excess of mass over area with a normal 95 % CI; ``fires`` per :data:`RULE`."""
    keep = ~torch.isnan(mass)
    diff = (mass - area)[keep]
    n = int(diff.numel())
    if n == 0:
        return {
            "mass": None,
            "area": None,
            "excess": None,
            "ci_low": None,
            "ci_high": None,
            "fires": None,
        }
    mean = float(diff.mean())
    se = float(diff.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("inf")
    low, high = mean - 1.96 * se, mean + 1.96 * se
    return {
        "mass": float(mass[keep].mean()),
        "area": float(area[keep].mean()),
        "excess": mean,
        "ci_low": low,
        "ci_high": high,
        "fires": bool(mean > margin and low > 0),
    }


def shortcut_alarm(
    maps: Tensor, brain: Tensor, rim_width: int, *, margin: float = 0.02
) -> dict[str, Any]:
    """The shortcut alarm of one method's maps (N, H, W) against brain masks (N, H, W).

    Returns the outside-brain and rim figures (mean map mass share, mean area share, mean
    excess and its CI's lower bound, whether each fires), ``alarm`` (either fires), the number
    of maps scored and the rule.
    """
    brain = brain.bool()
    shares = outside_brain_shares(maps, brain, rim_band(brain, rim_width))
    outside = _excess(shares["mass_outside"], shares["area_outside"], margin)
    rim = _excess(shares["mass_rim"], shares["area_rim"], margin)
    fired = [f for f in (outside["fires"], rim["fires"]) if f is not None]
    return {
        "outside_brain": outside,
        "rim": rim,
        "alarm": None if not fired else any(fired),
        "n_maps": int((~torch.isnan(shares["mass_outside"])).sum()),
        "rim_pixels": int(rim_width),
        "rule": RULE.format(margin=margin),
    }
