"""Faithfulness: deletion and insertion curves (Petsiuk et al., RISE, 2018), batched, 2D and 3D.

Deletion starts from the image and replaces voxels with a baseline in heatmap order (most
important first); a faithful map makes the target-class probability fall fast (low AUC).
Insertion starts from the baseline and reveals the image's voxels in heatmap order; a faithful
map makes it rise fast (high AUC). A random order gives the chance curve for both.

All steps of a chunk of images go through the model as one batch: the perturbed inputs of every
step are built at once from each voxel's rank (``rank < count_k`` ⇒ perturbed at step k), so the
only Python loop is over chunks of ``batch_size`` model inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from braincam.cam.base import model_device
from braincam.errors import InputError
from braincam.imaging.filters import gaussian_blur
from braincam.metrics.maps import check_maps, seeded_rand

__all__ = [
    "baseline_images",
    "check_images",
    "deletion_insertion",
    "eval_mode",
    "gaussian_blur",
    "order_ranks",
    "summarize_faithfulness",
    "target_probabilities",
]

Baseline = Literal["blur", "zero", "mean"]


# --------------------------------------------------------------------------- shared helpers


def check_images(images: object, maps: Tensor, targets: object) -> tuple[Tensor, Tensor]:
    """Validate ``images`` (N, C, *spatial) against ``maps`` (N, *spatial) and ``targets`` (N,)."""
    if not isinstance(images, Tensor):
        raise InputError("images must be a torch.Tensor", value=type(images).__name__)
    if images.ndim != maps.ndim + 1 or images.shape[0] != maps.shape[0]:
        raise InputError(
            f"images must have shape (N, C, *spatial) matching maps {tuple(maps.shape)}",
            value=tuple(images.shape),
        )
    if tuple(images.shape[2:]) != tuple(maps.shape[1:]):
        raise InputError(
            f"images' spatial shape must equal the maps' {tuple(maps.shape[1:])}; upsample the "
            "maps to the input size first",
            value=tuple(images.shape[2:]),
        )
    if not images.is_floating_point():
        images = images.float()
    if not isinstance(targets, Tensor):
        targets = torch.as_tensor(targets)
    if targets.shape != (images.shape[0],) or targets.is_floating_point() or targets.is_complex():
        raise InputError(
            f"targets must be an integer tensor of shape ({images.shape[0]},)",
            value=(tuple(targets.shape), str(targets.dtype)),
        )
    return images, targets.long()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode, then restore each module's own ``training`` flag.

    The dMRI study's published code left the model in train mode (dropout, batch statistics)
    while scoring; evaluation must be deterministic.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def target_probabilities(
    model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int
) -> tuple[Tensor, Tensor]:
    """Softmax probability of ``targets`` and the predicted class, in chunks → ``(N,), (N,)``.

    The model must already be in eval mode (see :func:`eval_mode`); no graph is built.
    """
    if batch_size < 1:
        raise InputError("batch_size must be ≥ 1", value=batch_size)
    device = model_device(model, inputs.device)
    probs, preds = [], []
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            logits = model(inputs[start : start + batch_size].to(device))
            if logits.ndim != 2:
                raise InputError(
                    "the model must return logits of shape (batch, classes)",
                    value=tuple(logits.shape),
                )
            t = targets[start : start + batch_size].to(logits.device)
            if int(t.max()) >= logits.shape[1] or int(t.min()) < 0:
                raise InputError(
                    f"targets must be class indices in [0, {logits.shape[1]})",
                    value=t.tolist(),
                )
            p = logits.float().softmax(1)
            probs.append(p.gather(1, t[:, None])[:, 0])
            preds.append(p.argmax(1))
    return torch.cat(probs).to(inputs.device), torch.cat(preds).to(inputs.device)


def baseline_images(images: Tensor, kind: Baseline, blur_sigma: float | None = None) -> Tensor:
    """The image a voxel turns into when deleted: blurred, zero, or the per-channel mean.

    ``blur_sigma`` defaults to RISE's 5 px at 224², scaled to the largest spatial side.
    """
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        dims = tuple(range(2, images.ndim))
        return images.mean(dim=dims, keepdim=True).expand_as(images).clone()
    if kind == "blur":
        if blur_sigma is None:
            blur_sigma = 5.0 * max(images.shape[2:]) / 224.0
        return gaussian_blur(images, float(blur_sigma))
    raise InputError("baseline must be 'blur', 'zero' or 'mean'", value=kind)


def order_ranks(maps: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Rank of every voxel in descending map order → long ``(N, M)``, 0 = most important.

    Ties are broken at random (a shuffle, then a stable sort), so a constant map gives a random
    order instead of raster order, which would favour whatever sits in the top rows.
    """
    flat = maps.flatten(1)
    perm = seeded_rand(tuple(flat.shape), generator, flat.device).argsort(1)
    idx = flat.gather(1, perm).argsort(dim=1, descending=True, stable=True)
    order = perm.gather(1, idx)
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def _interior_curve(
    model: nn.Module,
    start: Tensor,
    end: Tensor,
    ranks: Tensor,
    counts: Tensor,
    targets: Tensor,
    batch_size: int,
) -> Tensor:
    """Probabilities when the ``counts[k]`` first-ranked voxels of ``start`` come from ``end``."""
    n, steps = start.shape[0], counts.numel()
    out = torch.empty(n, steps, device=start.device)
    if steps == 0:
        return out
    per_chunk = max(1, batch_size // steps)  # images whose every step fits in one forward
    for lo in range(0, n, per_chunk):
        hi = min(n, lo + per_chunk)
        # (B, S, 1, *spatial): True where voxel is already switched at step k.
        switched = ranks[lo:hi, None, :] < counts.view(1, steps, 1)
        switched = switched.view(hi - lo, steps, 1, *start.shape[2:])
        x = torch.where(switched, end[lo:hi, None], start[lo:hi, None])
        x = x.view((hi - lo) * steps, *start.shape[1:])
        t = targets[lo:hi].repeat_interleave(steps)
        p, _ = target_probabilities(model, x, t, batch_size)
        out[lo:hi] = p.view(hi - lo, steps)
    return out


def deletion_insertion(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    steps: int = 20,
    baseline: Baseline = "blur",
    blur_sigma: float | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    random_order: bool = True,
) -> dict[str, Tensor]:
    """Deletion and insertion curves of the target-class probability, with their AUCs.

    ``images`` (N, C, *spatial), ``maps`` (N, *spatial) at the input resolution, ``targets`` (N,).
    At step k of ``steps`` the ``round(k·M/steps)`` highest-ranked of the M voxel positions (all
    channels) are replaced by the ``baseline`` image (deletion) or revealed on it (insertion).

    Returns ``fractions`` (steps+1,), ``deletion`` and ``insertion`` (N, steps+1) probabilities,
    ``deletion_auc`` and ``insertion_auc`` (N,) (trapezoid over the fraction 0..1), and, with
    ``random_order``, the same four for a random voxel order (``random_deletion`` ...).
    ``batch_size`` caps the number of inputs per forward pass.
    """
    maps = check_maps(maps)
    images, targets = check_images(images, maps, targets)
    if steps < 1:
        raise InputError("steps must be ≥ 1", value=steps)
    if batch_size < 1:
        raise InputError("batch_size must be ≥ 1", value=batch_size)
    maps = maps.to(images.device)
    targets = targets.to(images.device)
    base = baseline_images(images, baseline, blur_sigma)
    m = maps[0].numel()
    counts_all = torch.round(torch.arange(steps + 1, device=images.device) * m / steps).long()
    fractions = counts_all.double() / m
    interior = counts_all[1:-1]
    orders = {"": order_ranks(maps, generator)}
    if random_order:
        random_maps = seeded_rand(tuple(maps.shape), generator, maps.device)
        orders["random_"] = order_ranks(random_maps, generator)
    out: dict[str, Tensor] = {"fractions": fractions}
    with eval_mode(model):
        # The two end points are the same for every order: evaluate them once.
        p_image, _ = target_probabilities(model, images, targets, batch_size)
        p_base, _ = target_probabilities(model, base, targets, batch_size)
        for prefix, ranks in orders.items():
            deleted = _interior_curve(model, images, base, ranks, interior, targets, batch_size)
            inserted = _interior_curve(model, base, images, ranks, interior, targets, batch_size)
            deletion = torch.cat([p_image[:, None], deleted, p_base[:, None]], 1)
            insertion = torch.cat([p_base[:, None], inserted, p_image[:, None]], 1)
            out[f"{prefix}deletion"] = deletion
            out[f"{prefix}insertion"] = insertion
            x = fractions.to(deletion.dtype)
            out[f"{prefix}deletion_auc"] = torch.trapezoid(deletion, x, dim=1)
            out[f"{prefix}insertion_auc"] = torch.trapezoid(insertion, x, dim=1)
    return out


def summarize_faithfulness(result: dict[str, Tensor]) -> dict[str, float | list[float]]:
    """JSON-ready summary: mean AUC per curve over images, mean curves and their fractions."""
    out: dict[str, float | list[float]] = {}
    for name, values in result.items():
        if name.endswith("_auc"):
            out[name] = float(values.double().mean())
        elif name == "fractions":
            out[name] = values.double().tolist()
        else:
            out[f"mean_{name}"] = values.double().mean(0).tolist()
    return out
