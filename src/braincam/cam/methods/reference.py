"""Integrated Gradients (Sundararajan et al. 2017) from a reference input: an attribution at the
input's own resolution, for effects that are an *absence* (an FA drop) that the layer methods
place where the network pools rather than where the voxels changed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from braincam.cam.base import HookSession
from braincam.cam.methods.core import CAMMethod, CAMResult, LayerSpec
from braincam.cam.postprocess import normalize_maps
from braincam.cam.targets import TargetSpec, resolve_targets
from braincam.errors import InputError
from braincam.imaging.filters import gaussian_blur

__all__ = ["IntegratedGradients"]


class IntegratedGradients(CAMMethod):
    """Integrated Gradients: ``(x − r) ⊙ mean_k ∇_x S(r + α_k (x − r))``, summed over the input
    channels, with ``α_k = (k + ½) / steps`` (the midpoint rule; Captum's ``riemann_middle``).

    ``reference`` ``r``: a tensor shaped like the batch, or like one input (broadcast); default
    zeros (Captum's default baseline). The pipeline gives each image the mean training image of
    the *other* classes at the same place (:class:`braincam.data.references.ClassReferences`), so
    the map says where this image differs from the other group in a way that moves its score:
    for a group whose FA dropped in a sphere the sphere's voxels, where ``x`` and ``∇_x S`` are
    both small, which gradient × input misses. The attributions sum to ``S(x) − S(r)`` as
    ``steps`` grows (completeness). ``layer`` is not used: the input is the layer. The map is at
    the input's resolution (``upsample`` changes nothing); ``relu`` keeps the voxels that raise
    the score. ``smooth`` (voxels, default ½; 0 = the paper's map): a Gaussian blur of the map,
    as the layer maps are smoothed by their upsampling — a per-voxel attribution is noisy, and
    its many exact zeros tie (on the random-sphere cohorts σ = ½ raised the voxel AUROC from
    0.84 to 0.99 and kept the pointing game).
    """

    name = "intgrad"
    needs_grad = True
    sums_channels = False
    needs_reference = True

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        reference: Tensor | None = None,
        steps: int = 16,
        smooth: float = 0.5,
        **options: object,
    ) -> None:
        # the input is the layer: the model itself stands in for CAMMethod's layer bookkeeping
        super().__init__(model, model, **options)  # type: ignore[arg-type]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError("steps must be a positive integer", value=steps)
        if reference is not None and not isinstance(reference, Tensor):
            raise InputError("reference must be a tensor", value=type(reference).__name__)
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0:
            raise InputError("smooth must be a non-negative number (voxels)", value=smooth)
        self.reference = reference
        self.steps = steps
        self.smooth = float(smooth)

    def _reference(self, x: Tensor) -> Tensor:
        if self.reference is None:
            return torch.zeros_like(x)
        ref = self.reference.detach().to(x)
        if ref.ndim == x.ndim - 1:
            ref = ref.unsqueeze(0)
        if ref.ndim != x.ndim or ref.shape[1:] != x.shape[1:] or ref.shape[0] not in (1, len(x)):
            raise InputError(
                f"reference must be shaped like the batch {tuple(x.shape)} or one input "
                f"{tuple(x.shape[1:])}",
                value=tuple(self.reference.shape),
            )
        return ref.expand_as(x)

    def _run(
        self, x: Tensor, targets: TargetSpec, *, upsample: bool, normalize: bool, relu: bool
    ) -> CAMResult:
        ref = self._reference(x)
        # eval mode and no parameter gradients while explaining, restored after (no hooks)
        with HookSession(self.model, [], [], need_grad=True):
            with torch.no_grad():
                outputs = self.model(x)
            resolved = resolve_targets(targets, outputs)
            delta = x - ref
            total = torch.zeros_like(x)
            for k in range(self.steps):
                point = (ref + (k + 0.5) / self.steps * delta).requires_grad_(True)
                with torch.enable_grad():
                    score = resolved.scores(self.model(point)).sum()
                    (grad,) = torch.autograd.grad(score, point)
                total += grad
        raw = (delta * total / self.steps).sum(dim=1).detach()
        if relu:  # as for every method, ``raw`` is the map before scaling, after the ReLU
            raw = raw.clamp_min(0)
        if self.smooth > 0:
            raw = gaussian_blur(raw[:, None], [self.smooth] * (raw.ndim - 1))[:, 0]
        maps = normalize_maps(raw) if normalize else raw
        return CAMResult(maps, raw, outputs.detach(), resolved.classes, (raw,))
