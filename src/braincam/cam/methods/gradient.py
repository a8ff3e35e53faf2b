"""Gradient methods: maps built from A and g = ∂score/∂A, the gradient taken with respect to the
hooked activations only (one backward pass for all layers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from braincam.cam.base import HookSession
from braincam.cam.methods.core import (
    CAMMethod,
    LayerSpec,
    _expand,
    _per_channel,
    _safe_div,
    _weighted,
    principal_map,
)
from braincam.cam.targets import ResolvedTargets
from braincam.errors import InputError, ModelError

__all__ = [
    "EigenGradCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "SmoothGradCAMPlusPlus",
    "XGradCAM",
]


def layer_gradients(
    session: HookSession, outputs: Tensor, targets: ResolvedTargets | None
) -> list[Tensor]:
    """∂(Σ_n score_n)/∂A for every hooked layer. Samples are independent in eval mode, so the
    gradient of the summed per-sample scores gives each sample the gradient of its own score."""
    if targets is None:  # pragma: no cover - gradient methods use targets
        raise ModelError("gradient methods need targets")
    if not outputs.requires_grad:
        raise ModelError(
            f"the model output does not depend on layer(s) {', '.join(session.layer_names)}"
        )
    with torch.enable_grad():  # the caller may be inside torch.no_grad()
        score = targets.scores(outputs).sum()
    return session.gradients(score)


def gradcampp_weights(act: Tensor, d1: Tensor, d2: Tensor, d3: Tensor) -> Tensor:
    """Grad-CAM++ channel weights from the 1st, 2nd and 3rd derivatives:
    α = d2 / (2 d2 + Σ_ab A_ab · d3), w_k = Σ_ij α_ij · relu(d1_ij); 0/0 is 0."""
    total = _expand(_per_channel(act), act.ndim)
    alpha = _safe_div(d2, 2 * d2 + total * d3)
    return _per_channel(alpha * d1.clamp_min(0))


class _GradientMethod(CAMMethod):
    """Methods built from A and g = ∂score/∂A (taken with respect to A only)."""

    needs_grad = True

    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        act = session.activation
        if act is None:  # pragma: no cover - HookSession.forward guarantees
            raise ModelError("no activation captured")
        grad = layer_gradients(session, outputs, targets)[session.index]
        return self.combine(act, grad)

    def combine(self, act: Tensor, grad: Tensor) -> Tensor:
        """Default: Σ_k w_k A_k with this method's :meth:`weights`."""
        return self._reduce(_weighted(self.weights(act, grad), act))

    def weights(self, act: Tensor, grad: Tensor) -> Tensor:
        """Channel weights (N, K)."""
        raise NotImplementedError


class GradCAM(_GradientMethod):
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean over positions of g_k."""

    name = "gradcam"

    def weights(self, act: Tensor, grad: Tensor) -> Tensor:
        return grad.flatten(2).mean(dim=-1)


class GradCAMPlusPlus(_GradientMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018), closed form of their eq. 19.

    With the exponential score Y = exp(S) the higher derivatives are powers of g = ∂S/∂A, and
    α_ij = g² / (2 g² + Σ_ab A_ab · g³); w_k = Σ_ij α_ij · relu(g_ij). (The paper's relu(∂Y/∂A)
    carries an extra factor exp(S), one positive constant per sample, dropped as in the paper's
    code.) 0/0 is taken as 0, without an epsilon.
    """

    name = "gradcampp"

    def weights(self, act: Tensor, grad: Tensor) -> Tensor:
        g2 = grad.pow(2)
        return gradcampp_weights(act, grad, g2, g2 * grad)


class XGradCAM(_GradientMethod):
    """XGrad-CAM (Fu et al. 2020): w_k = Σ_ij (A_ij / Σ_ab A_ab) · g_ij."""

    name = "xgradcam"

    def weights(self, act: Tensor, grad: Tensor) -> Tensor:
        return _safe_div(_per_channel(act * grad), _per_channel(act))


class LayerCAM(_GradientMethod):
    """LayerCAM (Jiang et al. 2021): Σ_k relu(g_k) ⊙ A_k, position by position."""

    name = "layercam"

    def combine(self, act: Tensor, grad: Tensor) -> Tensor:
        return self._reduce(grad.clamp_min(0) * act)


class HiResCAM(_GradientMethod):
    """HiResCAM (Draelos & Carin 2020): Σ_k g_k ⊙ A_k, position by position."""

    name = "hirescam"

    def combine(self, act: Tensor, grad: Tensor) -> Tensor:
        return self._reduce(grad * act)


class EigenGradCAM(_GradientMethod):
    """EigenGrad-CAM (pytorch-grad-cam; no paper): the first principal component of g ⊙ A —
    EigenCAM made class-discriminative. Oriented to agree with Σ_k g_k ⊙ A_k (HiResCAM)."""

    name = "eigengradcam"
    sums_channels = False

    def combine(self, act: Tensor, grad: Tensor) -> Tensor:
        return principal_map(grad * act)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer", value=value)
    return value


def _check_std(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError("std must be a non-negative number", value=value)
    return float(value)


def noise_fields(
    seed: int, count: int, shape: Sequence[int], std: float, like: Tensor
) -> list[Tensor]:
    """``count`` Gaussian fields N(0, std²) of ``shape``, drawn in order from a generator seeded
    with ``seed`` on the CPU (the same numbers on every device), as ``like``'s dtype/device."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * std).to(like)
        for _ in range(count)
    ]


@dataclass(frozen=True)
class NoiseDraws:
    """The noise of the smoothed methods (Smooth Grad-CAM++, SS-CAM): ``num_samples`` Gaussian
    fields N(0, std²) drawn in order from ``seed``; checked once, here."""

    num_samples: int
    std: float
    seed: int

    def __post_init__(self) -> None:
        _check_count("num_samples", self.num_samples)
        object.__setattr__(self, "std", _check_std(self.std))
        object.__setattr__(self, "seed", int(self.seed))

    def fields(self, shape: Sequence[int], like: Tensor) -> list[Tensor]:
        """The fields of ``shape`` as ``like``'s dtype/device (see :func:`noise_fields`)."""
        return noise_fields(self.seed, self.num_samples, shape, self.std, like)


class SmoothGradCAMPlusPlus(_GradientMethod):
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with derivatives averaged over
    ``num_samples`` noisy copies of the input x + δ_m, δ_m ~ N(0, std²):

    D^p = (1/M) Σ_m g_m^p (p = 1, 2, 3; g_m = ∂S/∂A at x + δ_m, exponential score as in Grad-CAM++),
    α = D² / (2 D² + Σ_ab A_ab · D³), w_k = Σ_ij α_ij · relu(D¹_ij), A from the clean input.

    One noise field per draw, shared by the batch's samples (so a batch equals its samples one
    by one), drawn from ``seed``.
    """

    name = "smoothgradcampp"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        num_samples: int = 4,
        std: float = 0.3,
        seed: int = 0,
        **options: object,
    ) -> None:
        super().__init__(model, layer, **options)  # type: ignore[arg-type]
        self.noise = NoiseDraws(num_samples, std, seed)

    def _compute_all(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> list[Tensor]:
        clean = list(session.activations)
        sums = [[torch.zeros_like(a) for a in clean] for _ in range(3)]
        for noise in self.noise.fields(x.shape[1:], x):
            noisy_out = session.forward(x + noise)
            for i, g in enumerate(layer_gradients(session, noisy_out, targets)):
                sums[0][i] += g
                sums[1][i] += g * g
                sums[2][i] += g * g * g
        maps = []
        for i, act in enumerate(clean):
            d1, d2, d3 = (s[i] / self.noise.num_samples for s in sums)
            maps.append(self._reduce(_weighted(gradcampp_weights(act, d1, d2, d3), act)))
        return maps
