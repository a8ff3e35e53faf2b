"""The dMRI study's perturbation check, redesigned so that it can say yes and no.

The study added Gaussian noise to the CAM-localized region and saw accuracy fall. Strong noise
(σ = 1 in z-scored units) takes a slice off the data distribution: the model then answers one
class for everything and the check cannot conclude. braincam instead *removes* the information
in a region while staying in distribution, and asks whether removing it where the map points
costs the model more than removing it in random places of the same size:

- **Perturbation: noisy linear imputation** (ROAD, Rong et al. 2022). Each voxel of the region
  is replaced by the weighted mean of its neighbours (a discrete Laplace equation with the
  surrounding tissue as boundary), plus a little Gaussian noise. The region becomes a smooth
  continuation of the tissue around it: no new edges or intensities the model never saw, and
  no hole-shaped signal. Only voxels of the region's *support* (the brain, for brain regions)
  are changed and only support voxels feed the mean, so the background never bleeds in.
- **Dose–response.** ``strength`` α blends the image towards its imputed copy,
  ``x + α·(impute(x) − x)``; the verdict is read at α = 1.
- **Baseline: area-matched random regions.** The same region shape, moved by ``n_random`` (≥ 20)
  random offsets that keep it in the field and cover at least as many brain voxels; every image
  gets its own placements, so the baseline has one mean per image of the comparison.
- **Statistic.** Per image, ``d = drop(region) − mean drop(random placements)`` where drop is the
  fall of the target-class softmax probability. Effect size: the mean of ``d`` (probability
  points), with Cohen's d_z = mean/sd; a 95 % percentile bootstrap interval stratified by true
  class; a one-sided Wilcoxon signed-rank p-value for information. **Rule:** the region hurts
  more than random regions when the interval's lower bound is above 0. Figures are also given
  per true class.
- **Controls.** Positive: the synthetic ground-truth region (where the effect was planted) must
  hurt more than random brain regions of its shape. Negative: a region of the same area outside
  the brain (the background voxels farthest from it) must not.

Random placement is batched: brain coverage of the region at *every* offset is a
cross-correlation computed with zero-padded FFTs over the spatial dims (2D or 3D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, stats
from torch import Tensor, nn

from braincam.errors import InputError
from braincam.evaluate.faithfulness import (
    check_images,
    eval_mode,
    gaussian_blur,
    target_probabilities,
)
from braincam.evaluate.localization import (
    Connectivity,
    bounding_boxes,
    box_masks,
    boxes_from_regions,
    check_maps,
    check_masks,
    seeded_rand,
)

__all__ = [
    "DEFAULT_STRENGTHS",
    "compare_drops",
    "control_checks",
    "default_brain_masks",
    "impute",
    "outside_regions",
    "perturbation_check",
    "random_placements",
    "region_drops",
    "translate",
]

#: Perturbation strengths of the dose–response (fraction of the way to the imputed image).
DEFAULT_STRENGTHS = (0.25, 0.5, 0.75, 1.0)
#: Random placements per image; the baseline of each image is their mean.
DEFAULT_N_RANDOM = 20
RULE = (
    "a region hurts more than random regions when the lower bound of the 95 % bootstrap interval "
    "(stratified by true class) of the mean paired difference drop(region) − mean drop(random "
    "regions of the same shape inside the brain) is above 0, at full strength"
)


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


# ----------------------------------------------------------------------------- imputation


def _neighbour_kernel(d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Weights 1/|offset|² over the 3^d neighbourhood, centre 0 (2D: ROAD's 1/6 and 1/12)."""
    grids = torch.meshgrid(*(torch.arange(-1, 2, dtype=dtype) for _ in range(d)), indexing="ij")
    dist2 = sum(g**2 for g in grids)
    kernel = torch.where(dist2 > 0, 1.0 / dist2.clamp_min(1), torch.zeros_like(dist2))
    return (kernel / kernel.sum()).to(device).view(1, 1, *([3] * d))


def impute(
    images: Tensor,
    regions: Tensor,
    support: Tensor | None = None,
    *,
    noise_std: float = 0.0,
    iterations: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noisy linear imputation of ``regions`` (ROAD): each voxel the mean of its neighbours.

    ``images`` (N, C, *spatial); ``regions`` and ``support`` (N, *spatial) bool. Voxels in
    ``regions & support`` are unknown; the other ``support`` voxels are the boundary. The linear
    system is solved by Jacobi iterations started from a normalized convolution (a Gaussian-
    weighted mean of the known support voxels), then ``noise_std`` Gaussian noise is added to
    the imputed voxels. Voxels outside ``support`` never change and never feed the mean.
    """
    n, c, *spatial = images.shape
    d = len(spatial)
    if support is None:
        support = torch.ones_like(regions)
    hole = (regions & support)[:, None].expand(n, c, *spatial).reshape(n * c, 1, *spatial)
    tissue = support[:, None].expand(n, c, *spatial).reshape(n * c, 1, *spatial).to(images.dtype)
    x = images.reshape(n * c, 1, *spatial).clone()
    known = tissue * (~hole).to(images.dtype)
    # Start: a Gaussian-weighted mean of the known tissue (falls back to its mean far away).
    sigma = max(1.0, max(spatial) / 16)
    num, den = gaussian_blur(x * known, sigma), gaussian_blur(known, sigma)
    flat_known = known.flatten(1)
    mean = (x.flatten(1) * flat_known).sum(1) / flat_known.sum(1).clamp_min(1)
    fallback = mean.view(-1, *([1] * (d + 1))).expand_as(x)
    x = torch.where(hole, torch.where(den > 1e-3, num / den.clamp_min(1e-3), fallback), x)
    conv = {2: F.conv2d, 3: F.conv3d}[d]
    kernel = _neighbour_kernel(d, images.dtype, images.device)
    weight = conv(tissue, kernel, padding=1)
    update = hole & (weight > 0)
    for _ in range(iterations):
        x = torch.where(update, conv(x * tissue, kernel, padding=1) / weight.clamp_min(1e-12), x)
    if noise_std > 0:
        noise = seeded_rand(tuple(x.shape), generator, x.device, normal=True) * noise_std
        x = x + noise * hole
    return x.reshape(images.shape)


# ----------------------------------------------------------------------------- placements


def _shift(regions: Tensor, offsets: list[Tensor]) -> Tensor:
    """``moved[i](x) = regions[i](x − offsets[:, i])`` (zero where the source is outside)."""
    n, spatial = regions.shape[0], tuple(regions.shape[1:])
    d = len(spatial)
    flat_src = torch.zeros((n, *spatial), dtype=torch.long, device=regions.device)
    valid = torch.ones((n, *spatial), dtype=torch.bool, device=regions.device)
    stride = 1
    for axis in reversed(range(d)):
        size = spatial[axis]
        src = torch.arange(size, device=regions.device)[None] - offsets[axis][:, None]
        view = [n] + [1] * d
        view[axis + 1] = size
        valid &= ((src >= 0) & (src < size)).view(view)
        flat_src = flat_src + (src.clamp(0, size - 1) * stride).view(view)
        stride *= size
    return regions.flatten(1).gather(1, flat_src.flatten(1)).view_as(regions) & valid


def random_placements(
    regions: Tensor,
    brain: Tensor,
    n_random: int = DEFAULT_N_RANDOM,
    generator: torch.Generator | None = None,
    max_elements: int = 2**24,
) -> tuple[Tensor, Tensor]:
    """``n_random`` random translates of each region inside the brain → ``(N, n_random, *S)``.

    Eligible offsets keep the region in the field and cover at least as many brain voxels as the
    region itself (so the random regions perturb at least as much brain). They are drawn
    uniformly with replacement among the eligible ones, the zero offset excluded unless it is the
    only one (a region as large as the brain can only stay where it is: its difference is then
    0, an honest "cannot tell"). Also returns the share of each placement's brain voxels inside
    the original region ``(N, n_random)``.
    """
    if n_random < 1:
        raise InputError("n_random must be ≥ 1", value=n_random)
    grid = math.prod(2 * s for s in regions.shape[1:])
    chunk = max(1, max_elements // grid)
    moved, overlap = [], []
    for i in range(0, regions.shape[0], chunk):
        m, o = _place_chunk(regions[i : i + chunk], brain[i : i + chunk], n_random, generator)
        moved.append(m)
        overlap.append(o)
    return torch.cat(moved), torch.cat(overlap)


def _place_chunk(
    regions: Tensor, brain: Tensor, n_random: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    n, spatial = regions.shape[0], tuple(regions.shape[1:])
    d = len(spatial)
    r, b = regions.double(), brain.double()
    coverage = _correlate(r, b).round()
    own = (r * b).flatten(1).sum(1).view([n] + [1] * d)
    boxes = boxes_from_regions(regions)
    eligible = coverage >= own
    offsets_per_axis = []
    for axis, size in enumerate(spatial):
        idx = torch.arange(2 * size, device=regions.device)
        off = torch.where(idx < size, idx, idx - 2 * size)  # circular index → signed offset
        offsets_per_axis.append(off)
        ok = (off >= -boxes[:, axis, None]) & (off <= size - boxes[:, d + axis, None])
        view = [n] + [1] * d
        view[axis + 1] = 2 * size
        eligible &= ok.view(view)
    weights = eligible.flatten(1).double()
    others = weights[:, 1:].sum(1) > 0
    weights[:, 0] = torch.where(others, 0.0, 1.0)  # index 0 is the zero offset
    gen_device = generator.device if generator is not None else torch.device("cpu")
    picks = torch.multinomial(
        weights.to(gen_device), n_random, replacement=True, generator=generator
    ).to(regions.device)  # (n, n_random)
    chosen = []
    rest = picks.flatten()
    for axis in reversed(range(d)):
        size2 = 2 * spatial[axis]
        chosen.append(offsets_per_axis[axis][rest % size2])
        rest = rest // size2
    chosen.reverse()
    repeated = regions.repeat_interleave(n_random, 0)
    moved = _shift(repeated, chosen).view(n, n_random, *spatial)
    inside = (moved & regions[:, None] & brain[:, None]).flatten(2).sum(2).double()
    total = (moved & brain[:, None]).flatten(2).sum(2).double()
    overlap = torch.where(total > 0, inside / total.clamp_min(1), torch.zeros_like(total))
    return moved, overlap


def outside_regions(
    brain: Tensor, sizes: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Per image the ``sizes[i]`` background voxels farthest from the brain (ties at random).

    The negative control's region: as many voxels as the region it is matched to, where no
    brain is. An image with fewer background voxels gets all of them.
    """
    background = (~brain).cpu().numpy()
    # One distance transform for the batch: the batch axis is made longer than any distance.
    far = float(sum(s * s for s in brain.shape[1:]) + 1)
    dist = ndimage.distance_transform_edt(background, sampling=(far,) + (1.0,) * (brain.ndim - 1))
    dist = torch.from_numpy(np.where(background, dist, -1.0)).to(brain.device).flatten(1)
    jitter = seeded_rand(tuple(dist.shape), generator, brain.device).double() * 1e-3
    order = torch.argsort(dist + jitter, dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=brain.device).expand_as(order))
    chosen = (rank < sizes.to(brain.device)[:, None]) & (dist >= 0)
    return chosen.view_as(brain)


# ---------------------------------------------------------------------------- model drops


def region_drops(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    regions: Tensor,
    support: Tensor,
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    noise_std: float = 0.05,
    iterations: int = 100,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    chunk: int = 256,
) -> dict[str, Tensor]:
    """Target-class probability and correctness with each region imputed, at each strength.

    ``regions`` (N, R, *spatial): R regions per image; ``support`` (N, *spatial). Returns
    ``original`` (N,) probabilities, ``probability`` and ``correct`` (N, R, len(strengths)), and
    ``drop`` = original − probability. The model must be in eval mode.
    """
    n, r = regions.shape[:2]
    spatial = tuple(images.shape[2:])
    p0, _ = target_probabilities(model, images, targets, batch_size)
    prob = torch.empty((n, r, len(strengths)), dtype=torch.float64, device=images.device)
    correct = torch.empty((n, r, len(strengths)), dtype=torch.bool, device=images.device)
    flat_regions = regions.reshape(n * r, *spatial)
    owner = torch.arange(n, device=images.device).repeat_interleave(r)
    for start in range(0, n * r, chunk):
        idx = owner[start : start + chunk]
        x = images[idx]
        filled = impute(
            x,
            flat_regions[start : start + chunk],
            support[idx],
            noise_std=noise_std,
            iterations=iterations,
            generator=generator,
        )
        for k, alpha in enumerate(strengths):
            p, pred = target_probabilities(
                model, x + alpha * (filled - x), targets[idx], batch_size
            )
            prob.view(n * r, -1)[start : start + chunk, k] = p.double()
            correct.view(n * r, -1)[start : start + chunk, k] = pred == targets[idx]
    return {
        "original": p0.double(),
        "probability": prob,
        "correct": correct,
        "drop": p0.double()[:, None, None] - prob,
    }


# ------------------------------------------------------------------------------ statistics


def _bootstrap_means(
    diff: Tensor, strata: Tensor, n_bootstrap: int, generator: torch.Generator | None
) -> Tensor:
    """Means of ``n_bootstrap`` resamples of ``diff`` drawn within each stratum (class)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    total = torch.zeros(n_bootstrap, dtype=torch.float64)
    for value in torch.unique(strata):
        part = diff[strata == value].cpu()
        idx = torch.randint(
            0, part.numel(), (n_bootstrap, part.numel()), generator=generator, device=gen_device
        ).cpu()
        total += part[idx].sum(1)
    return total / diff.numel()


def _stats(
    region: Tensor,
    random: Tensor,
    strata: Tensor,
    n_bootstrap: int,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """Paired comparison of ``region`` (N,) drops with the mean of ``random`` (N, R) drops."""
    n, r = random.shape
    empty = {
        "n_images": int(n),
        "n_random_per_image": int(r),
        "n_random": int(n * r),
        "region_drop": None,
        "random_drop": None,
        "mean_difference": None,
        "ci_low": None,
        "ci_high": None,
        "effect_size": None,
        "p_value": None,
        "hurts_more": False,
    }
    if n == 0:
        return empty
    diff = region.double() - random.double().mean(1)
    means = _bootstrap_means(diff, strata, n_bootstrap, generator)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype)).tolist()
    mean = float(diff.mean())
    sd = float(diff.std()) if n > 1 else 0.0
    if bool((diff == 0).all()):
        p = 1.0
    else:
        p = float(stats.wilcoxon(diff.cpu().numpy(), alternative="greater").pvalue)
    return {
        **empty,
        "region_drop": float(region.double().mean()),
        "random_drop": float(random.double().mean()),
        "mean_difference": mean,
        "ci_low": lo,
        "ci_high": hi,
        "effect_size": mean / sd if sd > 0 else None,
        "p_value": p,
        "hurts_more": bool(lo > 0),
    }


def compare_drops(
    region: Tensor,
    random: Tensor,
    labels: Tensor,
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    class_names: Sequence[str] | None = None,
    n_bootstrap: int = 2000,
    generator: torch.Generator | None = None,
    name: str = "region",
) -> dict[str, Any]:
    """The verdict, per-class figures and dose–response of one region family.

    ``region`` (N, S) and ``random`` (N, R, S) drops at each of the S ``strengths`` (the last is
    the verdict's); ``labels`` (N,) true classes. See :data:`RULE`.
    """
    last = len(strengths) - 1
    overall = _stats(region[:, last], random[:, :, last], labels, n_bootstrap, generator)
    per_class = {}
    for value in torch.unique(labels).tolist():
        keep = labels == value
        key = class_names[value] if class_names is not None else str(value)
        per_class[key] = _stats(
            region[keep, last], random[keep][:, :, last], labels[keep], n_bootstrap, generator
        )
    dose = []
    for k, alpha in enumerate(strengths):
        s = _stats(region[:, k], random[:, :, k], labels, n_bootstrap, generator)
        dose.append(
            {
                "strength": float(alpha),
                **{
                    key: s[key]
                    for key in (
                        "region_drop",
                        "random_drop",
                        "mean_difference",
                        "ci_low",
                        "ci_high",
                    )
                },
            }
        )
    return {"region": name, "comparison": overall, "per_class": per_class, "dose_response": dose}


# ------------------------------------------------------------------------------- checks


def _check_strengths(strengths: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(s) for s in strengths)
    if not values or any(not 0 < s <= 1 for s in values) or list(values) != sorted(values):
        raise InputError("strengths must be increasing values in (0, 1]", value=strengths)
    return values


def perturbation_check(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    n_random: int = DEFAULT_N_RANDOM,
    noise_std: float = 0.05,
    iterations: int = 100,
    threshold: float = 0.2,
    region: Literal["box", "component"] = "box",
    shift: Sequence[int] | None = None,
    brain_masks: Tensor | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    n_bootstrap: int = 2000,
    connectivity: Connectivity = "full",
) -> dict[str, Any]:
    """Imputing the CAM region vs ``n_random`` random regions of its shape, and translation.

    ``images`` (N, C, *spatial), ``maps`` (N, *spatial) at input resolution, ``targets`` (N,)
    the explained classes, ``labels`` (N,) the true classes (default: ``targets``) for the
    per-class figures. ``noise_std`` is the imputation noise in image units. ``shift`` (the
    study's translation, reported for comparison) defaults to 1/16 of each side.

    Returns a JSON-ready dict (see :func:`compare_drops`) with ``hurts_more_than_random``,
    ``random_overlap_mean``, ``translation`` (accuracy, confidence, drop) and ``conditions``
    (accuracy, confidence, drop and n per condition and strength), plus ``per_image`` tensors
    for figures — drop that key before writing JSON.
    """
    maps = check_maps(maps)
    images, targets = check_images(images, maps, targets)
    maps, targets = maps.to(images.device), targets.to(images.device)
    labels = targets if labels is None else torch.as_tensor(labels).long().to(images.device)
    strengths = _check_strengths(strengths)
    if not noise_std >= 0:
        raise InputError("noise_std must be ≥ 0 (image units)", value=noise_std)
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
    cam_region = (box_masks(boxes, spatial) if region == "box" else component) & brain
    moved, overlap = random_placements(cam_region, brain, n_random, generator)
    with eval_mode(model):
        res = region_drops(
            model,
            images,
            targets,
            torch.cat([cam_region[:, None], moved], 1),
            brain,
            strengths=strengths,
            noise_std=noise_std,
            iterations=iterations,
            generator=generator,
            batch_size=batch_size,
        )
        p_shift, pred_shift = target_probabilities(
            model, translate(images, shift), targets, batch_size
        )
        _, pred0 = target_probabilities(model, images, targets, batch_size)
    drop = res["drop"]
    out = compare_drops(
        drop[:, 0],
        drop[:, 1:],
        labels,
        strengths=strengths,
        class_names=class_names,
        n_bootstrap=n_bootstrap,
        generator=generator,
        name=f"CAM {region} at {threshold:g} of the maximum",
    )
    p0 = res["original"]
    conditions = [
        {
            "condition": "original",
            "strength": None,
            "accuracy": float((pred0 == targets).double().mean()),
            "confidence": float(p0.mean()),
            "drop": 0.0,
            "n": len(images),
        },
        {
            "condition": "translation",
            "strength": None,
            "accuracy": float((pred_shift == targets).double().mean()),
            "confidence": float(p_shift.double().mean()),
            "drop": float((p0 - p_shift.double()).mean()),
            "n": len(images),
        },
    ]
    for k, alpha in enumerate(strengths):
        for name, sl in (("cam_region", slice(0, 1)), ("random_regions", slice(1, None))):
            conditions.append(
                {
                    "condition": name,
                    "strength": float(alpha),
                    "accuracy": float(res["correct"][:, sl, k].double().mean()),
                    "confidence": float(res["probability"][:, sl, k].mean()),
                    "drop": float(drop[:, sl, k].mean()),
                    "n": int(res["probability"][:, sl, k].numel()),
                }
            )
    return {
        **out,
        "hurts_more_than_random": out["comparison"]["hurts_more"],
        "random_overlap_mean": float(overlap.mean()) if overlap.numel() else None,
        "translation": {k: conditions[1][k] for k in ("accuracy", "confidence", "drop")},
        "conditions": conditions,
        "settings": {
            "perturbation": "noisy linear imputation (ROAD)",
            "noise_std": float(noise_std),
            "iterations": int(iterations),
            "strengths": list(strengths),
            "n_random": int(n_random),
            "threshold": float(threshold),
            "region": region,
            "shift": list(shift),
            "n_bootstrap": int(n_bootstrap),
        },
        "per_image": {"drop": drop, "cam_region": cam_region, "random_regions": moved},
    }


def control_checks(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    truth: Tensor,
    *,
    brain_masks: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    n_random: int = DEFAULT_N_RANDOM,
    noise_std: float = 0.05,
    iterations: int = 100,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    n_bootstrap: int = 2000,
) -> dict[str, Any]:
    """Positive and negative controls of the perturbation test on images with a known region.

    ``truth`` (N, *spatial): the planted effect region (images without one are left out).
    Positive: imputing the region must drop the true class's probability more than imputing
    ``n_random`` random brain regions of its shape. Negative: imputing as many background voxels
    (farthest from the brain; imputed from the background) must not. Both against the same
    random regions, with the rule of :func:`compare_drops`. ``labels`` are the true classes,
    also the targets.
    """
    truth = check_masks(truth, images[:, 0], "truth")
    images, labels = check_images(images, truth.float(), labels)
    strengths = _check_strengths(strengths)
    brain = default_brain_masks(images) if brain_masks is None else brain_masks.bool()
    positive = truth & brain
    keep = positive.flatten(1).any(1)
    images, labels, positive, brain = images[keep], labels[keep], positive[keep], brain[keep]
    moved, _ = random_placements(positive, brain, n_random, generator)
    outside = outside_regions(brain, positive.flatten(1).sum(1), generator)
    kw = dict(
        strengths=strengths,
        noise_std=noise_std,
        iterations=iterations,
        generator=generator,
        batch_size=batch_size,
    )
    with eval_mode(model):
        inside = region_drops(
            model, images, labels, torch.cat([positive[:, None], moved], 1), brain, **kw
        )
        away = region_drops(model, images, labels, outside[:, None], ~brain, **kw)
    random = inside["drop"][:, 1:]
    common = dict(
        strengths=strengths, class_names=class_names, n_bootstrap=n_bootstrap, generator=generator
    )
    pos = compare_drops(inside["drop"][:, 0], random, labels, name="ground-truth region", **common)
    neg = compare_drops(away["drop"][:, 0], random, labels, name="outside the brain", **common)
    return {
        "positive_control": pos["comparison"]["hurts_more"] if len(images) else None,
        "negative_control": neg["comparison"]["hurts_more"] if len(images) else None,
        "controls": {"positive": pos, "negative": neg} if len(images) else {},
    }
