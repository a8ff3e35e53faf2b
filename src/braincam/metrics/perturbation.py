"""The dMRI study's verification, made quantitative.

The study added Gaussian noise to the CAM-localized region and saw accuracy fall, while a
translation barely mattered. braincam measures that claim per image and adds the control the
study lacked: the same noise in a random region of the same shape placed elsewhere in the brain.
If CAM-region noise hurts no more than random-region noise, the map did not find the evidence;
noise anywhere in the brain would have hurt as much.

Per image: (a) noise inside the localized region (the paper's box, or its largest component),
(b) the image translated by ``shift`` voxels (background fills the vacated band; no wrap-around),
(c) the same noise field inside the region moved by a random offset to brain it does not already
cover, perturbing at least as many brain voxels. Noise is added only on brain voxels in (a) and
(c), so (c) perturbs at least as much brain as (a); any residual overlap with the CAM region also
makes (c) more harmful. Both make "CAM noise hurts more" a conservative finding.

Random placement is batched: the brain coverage and the fresh (non-overlapping) brain coverage of
the region at *every* offset are two cross-correlations, computed with zero-padded FFTs over the
spatial dims (2D or 3D). Large regions (a 20 %-threshold box can span half the slice) may find no
fully disjoint place; ``max_overlap`` bounds how much overlap is accepted, and images beyond it
are left out of that comparison and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from scipy import stats
from torch import Tensor, nn

from braincam.errors import InputError
from braincam.metrics.boxes import Connectivity, bounding_boxes, box_masks, boxes_from_regions
from braincam.metrics.faithfulness import check_images, eval_mode, target_probabilities
from braincam.metrics.maps import check_maps, check_masks, seeded_rand

__all__ = [
    "default_brain_masks",
    "paired_comparison",
    "perturbation_check",
    "place_random_regions",
    "translate",
]

CONDITIONS = ("original", "cam_noise", "translation", "random_noise")


def default_brain_masks(images: Tensor) -> Tensor:
    """Brain = voxels where any channel differs from that channel's minimum (the background).

    This is the non-zero area of a skull-stripped FA map, and still the brain when the image was
    z-scored (the background is then a constant negative value). Pass explicit masks otherwise.
    """
    dims = tuple(range(2, images.ndim))
    background = images.amin(dim=dims, keepdim=True)
    return (images != background).any(1)


def translate(images: Tensor, shift: Sequence[int]) -> Tensor:
    """Shift ``(N, C, *spatial)`` by ``shift`` voxels per spatial axis; fill with the background.

    The vacated band takes each channel's minimum (the background) rather than wrapping around as
    ``torch.roll`` would, which would move brain to the opposite edge.
    """
    d = images.ndim - 2
    if len(shift) != d:
        raise InputError(f"shift must give one integer per spatial axis ({d})", value=tuple(shift))
    dims = tuple(range(2, images.ndim))
    out = torch.roll(images, shifts=tuple(int(s) for s in shift), dims=dims)
    background = images.amin(dim=dims, keepdim=True).expand_as(out)
    vacated = torch.zeros(images.shape[2:], dtype=torch.bool, device=images.device)
    for axis, (s, size) in enumerate(zip(shift, images.shape[2:], strict=True)):
        coord = torch.arange(size, device=images.device)
        band = coord < s if s >= 0 else coord >= size + s
        view = [1] * d
        view[axis] = size
        vacated |= band.view(view)
    return torch.where(vacated, background, out)


def _correlate(region: Tensor, other: Tensor) -> Tensor:
    """``c[o] = Σ_y region(y)·other(y+o)`` for every offset o, as a circular (2S)^d array."""
    dims = tuple(range(1, region.ndim))
    size = tuple(2 * s for s in region.shape[1:])  # zero padding: no wrap-around aliasing
    fr = torch.fft.rfftn(region, s=size, dim=dims)
    fo = torch.fft.rfftn(other, s=size, dim=dims)
    return torch.fft.irfftn(fr.conj() * fo, s=size, dim=dims)


def place_random_regions(
    regions: Tensor,
    brain: Tensor,
    generator: torch.Generator | None = None,
    max_overlap: float = 0.25,
    max_elements: int = 2**24,
) -> tuple[Tensor, Tensor, Tensor]:
    """Move each region by a random offset to brain it does not already cover.

    Let ``own`` be the region's brain voxels. Eligible offsets keep the region in the field and
    cover at least ``own`` brain voxels (so noise there perturbs at least as much brain). Among
    them: the most *fresh* brain voxels (outside the original region, counted up to ``own``),
    then the fewest shared ones, then a random draw among ties. ``overlap`` is the share of the
    moved region's brain voxels that lie inside the original region (0 = fully disjoint).

    Returns ``(moved, placed, overlap)``: moved regions, bool ``(N,)`` (``overlap ≤
    max_overlap``; unplaced regions are returned empty) and the overlap ``(N,)``. A region too
    large to move away (e.g. a box spanning the field) is not placed. ``max_elements`` bounds
    the offset arrays of one chunk (3D volumes are processed a few at a time).
    """
    if not 0.0 <= max_overlap <= 1.0:
        raise InputError("max_overlap must be in [0, 1]", value=max_overlap)
    grid = 1
    for s in regions.shape[1:]:
        grid *= 2 * s
    chunk = max(1, max_elements // grid)
    parts = [
        _place_chunk(regions[i : i + chunk], brain[i : i + chunk], generator)
        for i in range(0, regions.shape[0], chunk)
    ]
    moved = torch.cat([p[0] for p in parts])
    overlap = torch.cat([p[1] for p in parts])
    placed = overlap <= max_overlap
    moved &= placed.view([-1] + [1] * (regions.ndim - 1))
    return moved, placed, overlap


def _place_chunk(
    regions: Tensor, brain: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    n, spatial = regions.shape[0], tuple(regions.shape[1:])
    d = len(spatial)
    r, b = regions.double(), brain.double()
    # Brain voxels covered by the moved region, and those of them outside the original region.
    coverage = _correlate(r, b).round()
    fresh = _correlate(r, b * (1 - r)).round()
    own = (r * b).flatten(1).sum(1).view([n] + [1] * d)  # coverage at offset 0
    boxes = boxes_from_regions(regions)
    fits = torch.ones_like(coverage, dtype=torch.bool)
    offsets_per_axis = []
    for axis, size in enumerate(spatial):
        idx = torch.arange(2 * size, device=regions.device)
        off = torch.where(idx < size, idx, idx - 2 * size)  # circular index → signed offset
        offsets_per_axis.append(off)
        ok = (off >= -boxes[:, axis, None]) & (off <= size - boxes[:, d + axis, None])  # (N, 2S)
        view = [n] + [1] * d
        view[axis + 1] = 2 * size
        fits &= ok.view(view)
    eligible = fits & (coverage >= own)  # offset 0 always qualifies
    # Lexicographic key on integers: most fresh brain voxels (capped at own), then fewest brain
    # voxels shared with the original region, then a random fraction < 1 to draw among ties.
    capped = torch.minimum(fresh, own)
    shared = coverage - fresh
    big = float(r[0].numel() + 1)
    jitter = seeded_rand(tuple(coverage.shape), generator, regions.device).double() * 0.5
    key = torch.where(eligible, capped * big - shared + jitter, torch.full_like(capped, -big))
    best = key.flatten(1).argmax(1)
    best_shared = shared.flatten(1).gather(1, best[:, None])[:, 0]
    best_cover = coverage.flatten(1).gather(1, best[:, None])[:, 0]
    # Share of the moved region's brain voxels that fall inside the original region.
    overlap = torch.where(best_cover > 0, best_shared / best_cover.clamp_min(1), 0.0)
    # Unravel the flat index into per-axis signed offsets.
    chosen = []
    rest = best
    for axis in reversed(range(d)):
        size2 = 2 * spatial[axis]
        chosen.append(offsets_per_axis[axis][rest % size2])
        rest = rest // size2
    chosen.reverse()
    # moved(x) = region(x - o): gather from the source coordinates, batched over samples.
    flat_src = torch.zeros((n, *spatial), dtype=torch.long, device=regions.device)
    valid = torch.ones((n, *spatial), dtype=torch.bool, device=regions.device)
    stride = 1
    for axis in reversed(range(d)):
        size = spatial[axis]
        src = torch.arange(size, device=regions.device)[None] - chosen[axis][:, None]  # (N, S)
        view = [n] + [1] * d
        view[axis + 1] = size
        valid &= ((src >= 0) & (src < size)).view(view)
        flat_src = flat_src + (src.clamp(0, size - 1) * stride).view(view)
        stride *= size
    moved = regions.flatten(1).gather(1, flat_src.flatten(1)).view_as(regions) & valid
    return moved, overlap


def paired_comparison(
    diff: Tensor,
    *,
    n_bootstrap: int = 2000,
    alpha: float = 0.05,
    generator: torch.Generator | None = None,
) -> dict[str, float | int | bool]:
    """Is ``diff`` (per image, positive = CAM noise hurt more) systematically positive?

    A one-sided paired sign test (no distributional assumption; zero differences dropped) and a
    percentile bootstrap 95 % interval of the mean difference.
    """
    diff = diff.double().flatten()
    diff = diff[~torch.isnan(diff)]
    n = diff.numel()
    if n == 0:
        return {
            "n": 0,
            "mean_difference": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "n_positive": 0,
            "n_negative": 0,
            "sign_test_p": float("nan"),
            "cam_hurts_more": False,
        }
    pos, neg = int((diff > 0).sum()), int((diff < 0).sum())
    p = stats.binomtest(pos, pos + neg, 0.5, alternative="greater").pvalue if pos + neg else 1.0
    gen_device = generator.device if generator is not None else torch.device("cpu")
    idx = torch.randint(0, n, (n_bootstrap, n), generator=generator, device=gen_device)
    means = diff.to(gen_device)[idx].mean(1)
    q = torch.tensor([0.025, 0.975], dtype=means.dtype, device=means.device)
    lo, hi = torch.quantile(means, q).tolist()
    mean = float(diff.mean())
    return {
        "n": n,
        "mean_difference": mean,
        "ci_low": lo,
        "ci_high": hi,
        "n_positive": pos,
        "n_negative": neg,
        "sign_test_p": float(p),
        "cam_hurts_more": bool(mean > 0 and p < alpha),
    }


def perturbation_check(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    noise_std: float,
    threshold: float = 0.2,
    region: Literal["box", "component"] = "box",
    shift: Sequence[int] | None = None,
    brain_masks: Tensor | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    n_bootstrap: int = 2000,
    alpha: float = 0.05,
    max_overlap: float = 0.25,
    connectivity: Connectivity = "full",
) -> dict[str, Any]:
    """Noise in the CAM region vs translation vs noise in a random region of the same shape.

    ``images`` (N, C, *spatial), ``maps`` (N, *spatial) at input resolution, ``targets`` (N,).
    ``noise_std`` is in image units. ``shift`` defaults to 1/16 of each side (6 px at 96²).

    Returns a JSON-friendly dict: ``conditions`` → {condition: {accuracy, confidence, n}} for
    original, cam_noise, translation, random_noise (mean target-class softmax probability);
    ``comparisons`` → ``cam_vs_translation`` and ``cam_vs_random`` (:func:`paired_comparison`
    of the per-image confidence differences, positive when CAM noise hurt more);
    ``cam_hurts_more_than_translation`` / ``..._random`` (bool); ``n_random_placed`` and
    ``random_overlap_mean`` (see :func:`place_random_regions`; images whose random region
    would overlap more than ``max_overlap`` are left out of the random comparison);
    ``settings``; and ``per_image`` tensors (confidence and correctness per condition, the
    region masks) for figures — drop it before writing JSON.
    """
    maps = check_maps(maps)
    images, targets = check_images(images, maps, targets)
    maps, targets = maps.to(images.device), targets.to(images.device)
    if not noise_std > 0:
        raise InputError("noise_std must be > 0 (image units)", value=noise_std)
    if region not in ("box", "component"):
        raise InputError("region must be 'box' or 'component'", value=region)
    spatial = tuple(images.shape[2:])
    if shift is None:
        shift = tuple(max(1, round(s / 16)) for s in spatial)
    shift = tuple(int(s) for s in shift)
    if len(shift) != len(spatial):
        raise InputError(
            f"shift must give one integer per spatial axis ({len(spatial)})", value=shift
        )
    brain = (
        default_brain_masks(images)
        if brain_masks is None
        else check_masks(brain_masks, maps, "brain_masks")
    )

    boxes, component = bounding_boxes(maps, threshold, connectivity=connectivity)
    cam_region = box_masks(boxes, spatial) if region == "box" else component
    random_region, placed, overlap = place_random_regions(
        cam_region, brain, generator, max_overlap=max_overlap
    )

    noise = seeded_rand(tuple(images.shape), generator, images.device, normal=True) * noise_std
    # Same noise field for (a) and (c), on brain voxels only (see module docstring).
    cam_noisy = images + noise * (cam_region & brain)[:, None]
    random_noisy = images + noise * (random_region & brain)[:, None]
    inputs = {
        "original": images,
        "cam_noise": cam_noisy,
        "translation": translate(images, shift),
        "random_noise": random_noisy,
    }
    confidence: dict[str, Tensor] = {}
    correct: dict[str, Tensor] = {}
    with eval_mode(model):
        for name, x in inputs.items():
            p, pred = target_probabilities(model, x, targets, batch_size)
            confidence[name], correct[name] = p, pred == targets
    nan = torch.tensor(float("nan"), device=images.device)
    confidence["random_noise"] = torch.where(placed, confidence["random_noise"], nan)

    conditions = {}
    for name in CONDITIONS:
        keep = placed if name == "random_noise" else torch.ones_like(placed)
        conditions[name] = {
            "accuracy": float(correct[name][keep].double().mean()) if keep.any() else float("nan"),
            "confidence": float(confidence[name][keep].double().mean())
            if keep.any()
            else float("nan"),
            "n": int(keep.sum()),
        }
    comparisons = {
        "cam_vs_translation": paired_comparison(
            confidence["translation"] - confidence["cam_noise"],
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            generator=generator,
        ),
        "cam_vs_random": paired_comparison(
            confidence["random_noise"] - confidence["cam_noise"],
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            generator=generator,
        ),
    }
    return {
        "n": int(images.shape[0]),
        "conditions": conditions,
        "comparisons": comparisons,
        "cam_hurts_more_than_translation": comparisons["cam_vs_translation"]["cam_hurts_more"],
        "cam_hurts_more_than_random": comparisons["cam_vs_random"]["cam_hurts_more"],
        "n_random_placed": int(placed.sum()),
        "random_overlap_mean": float(overlap[placed].mean()) if placed.any() else float("nan"),
        "settings": {
            "noise_std": float(noise_std),
            "threshold": float(threshold),
            "region": region,
            "shift": list(shift),
            "alpha": float(alpha),
            "max_overlap": float(max_overlap),
            "n_bootstrap": int(n_bootstrap),
        },
        "per_image": {
            "confidence": confidence,
            "correct": correct,
            "cam_region": cam_region,
            "random_region": random_region,
            "random_placed": placed,
            "random_overlap": overlap,
        },
    }
