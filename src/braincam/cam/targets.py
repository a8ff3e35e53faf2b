"""What each sample is explained for: a class per sample, the predicted class, or a callable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from braincam.errors import InputError, ModelError

__all__ = ["ResolvedTargets", "TargetSpec", "resolve_targets"]

#: ``None`` (predicted class), one int for every sample, one int per sample (sequence or 1-D
#: tensor), or a callable mapping model outputs (M, ...) to per-row scores (M,).
TargetSpec = int | Sequence[int] | Tensor | Callable[[Tensor], Tensor] | None


@dataclass(frozen=True)
class ResolvedTargets:
    """Targets for one batch: ``classes`` (N,) long, or ``fn`` for a callable target."""

    classes: Tensor | None
    fn: Callable[[Tensor], Tensor] | None = None

    def scores(self, outputs: Tensor, rows: Tensor | None = None) -> Tensor:
        """Per-row scores (M,). ``rows[m]`` is the sample row m belongs to (Score-CAM chunks)."""
        if self.fn is not None:
            scores = self.fn(outputs)
            if not isinstance(scores, Tensor) or scores.shape != (outputs.shape[0],):
                shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
                raise InputError(
                    f"a callable target must return one score per sample, shape "
                    f"({outputs.shape[0]},)",
                    value=shape,
                )
            return scores
        if self.classes is None:  # pragma: no cover - constructed only by resolve_targets
            raise ModelError("targets hold neither classes nor a callable")
        classes = self.classes if rows is None else self.classes[rows]
        return outputs.gather(1, classes.unsqueeze(1)).squeeze(1)


def _check_logits(outputs: Tensor) -> None:
    if outputs.ndim != 2:
        raise ModelError(
            f"class-index targets need model outputs of shape (N, classes), got "
            f"{tuple(outputs.shape)}; pass a callable target instead"
        )


def resolve_targets(targets: TargetSpec, outputs: Tensor) -> ResolvedTargets:
    """Turn a user's target spec into per-sample classes (or a callable) for ``outputs``."""
    n = outputs.shape[0]
    if callable(targets) and not isinstance(targets, Tensor):
        return ResolvedTargets(classes=None, fn=targets)
    _check_logits(outputs)
    num_classes = outputs.shape[1]
    if targets is None:
        return ResolvedTargets(classes=outputs.detach().argmax(dim=1))
    if isinstance(targets, bool):
        raise InputError("targets must be class indices, not a bool", value=targets)
    if isinstance(targets, int):
        classes = torch.full((n,), targets, dtype=torch.long, device=outputs.device)
    elif isinstance(targets, Tensor):
        if targets.ndim == 0:
            targets = targets.expand(n)
        if targets.ndim != 1 or targets.is_floating_point() or targets.dtype == torch.bool:
            raise InputError(
                "a targets tensor must be 1-D integer, one class per sample",
                value=f"{targets.dtype} {tuple(targets.shape)}",
            )
        classes = targets.to(device=outputs.device, dtype=torch.long)
    elif isinstance(targets, Sequence) and not isinstance(targets, str):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
            raise InputError("targets must be integers, one class per sample", value=targets)
        classes = torch.tensor(list(targets), dtype=torch.long, device=outputs.device)
    else:
        raise InputError(
            "targets must be None, an int, a sequence/tensor of ints or a callable",
            value=type(targets).__name__,
        )
    if classes.shape != (n,):
        raise InputError(
            f"need one target per sample ({n} samples)", value=f"{classes.numel()} targets"
        )
    bad = (classes < 0) | (classes >= num_classes)
    if bool(bad.any()):
        raise InputError(
            f"target class out of range for a model with {num_classes} outputs",
            value=classes[bad].tolist(),
        )
    return ResolvedTargets(classes=classes)
