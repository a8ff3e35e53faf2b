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

The pieces live apart: the imputation in :mod:`braincam.metrics.imputation`, the random and
outside regions in :mod:`braincam.metrics.placements`; this module runs the model, computes the
statistics and the controls (their names are re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from scipy import stats
from torch import Tensor, nn

from braincam.errors import InputError
from braincam.metrics.boxes import Connectivity, bounding_boxes, box_masks
from braincam.metrics.faithfulness import check_images, eval_mode, target_probabilities
from braincam.metrics.imputation import default_brain_masks, impute, translate
from braincam.metrics.maps import check_maps, check_masks
from braincam.metrics.placements import DEFAULT_N_RANDOM, outside_regions, random_placements

__all__ = [
    "DEFAULT_N_RANDOM",
    "DEFAULT_STRENGTHS",
    "RULE",
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
RULE = (
    "a region hurts more than random regions when the lower bound of the 95 % bootstrap interval "
    "(stratified by true class) of the mean paired difference drop(region) − mean drop(random "
    "regions of the same shape inside the brain) is above 0, and so is that of the region's own "
    "mean drop (a region that changes nothing does not hurt, even where random regions help), "
    "at full strength"
)


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
        "region_ci_low": None,
        "hurts_more": False,
    }
    if n == 0:
        return empty
    diff = region.double() - random.double().mean(1)
    means = _bootstrap_means(diff, strata, n_bootstrap, generator)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype)).tolist()
    # The region must also hurt in itself: when random regions *raise* the probability (their
    # drops are negative), a region that changes nothing would otherwise "hurt more" (issue 14's
    # demo: imputing background voxels passed as hurting, the negative control said yes).
    own = _bootstrap_means(region.double(), strata, n_bootstrap, generator)
    own_lo = float(torch.quantile(own, 0.025))
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
        "region_ci_low": own_lo,
        "hurts_more": bool(lo > 0 and own_lo > 0),
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

    ``truth`` (N, *spatial): the planted effect region (images without one inside the brain are
    left out; when no image has one, both verdicts are ``None``).
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
    if not bool(keep.any()):
        # No planted region inside the brain: nothing to control (and no random placements).
        return {"positive_control": None, "negative_control": None, "controls": {}}
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
        "positive_control": pos["comparison"]["hurts_more"],
        "negative_control": neg["comparison"]["hurts_more"],
        "controls": {"positive": pos, "negative": neg},
    }
