"""The CAM family. :class:`CAMMethod` runs the hooked forward; each subclass supplies only its
channel weights (or its combination of activation and gradient).

Notation: A (N, K, *s) is the target layer's activation, g = ∂score/∂A its gradient for each
sample's own target, Σ sums over the spatial positions s. Every formula works for 2-D and 3-D
activations alike (everything is flattened over the spatial dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from braincam.cam.base import HookSession, check_inputs, model_device, resolve_layer, resolve_module
from braincam.cam.postprocess import normalize_maps, upsample_maps
from braincam.cam.targets import ResolvedTargets, TargetSpec, resolve_targets
from braincam.errors import InputError, ModelError

__all__ = [
    "CAM",
    "METHODS",
    "CAMMethod",
    "CAMResult",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
    "get_method",
    "register_method",
    "unregister_method",
]


@dataclass(frozen=True)
class CAMResult:
    """Output of one call.

    ``maps``: (N, *input spatial) — upsampled (unless ``upsample=False``, then feature
    resolution) and min-max normalized (unless ``normalize=False``).
    ``raw``: (N, *feature spatial) — at the layer's resolution, ReLU applied if ``relu``, never
    normalized. ``outputs``: the model's outputs for the batch. ``classes``: (N,) the class each
    sample was explained for (None for callable targets and class-agnostic methods).
    """

    maps: Tensor
    raw: Tensor
    outputs: Tensor
    classes: Tensor | None


def _per_channel(x: Tensor) -> Tensor:
    """Sum over spatial positions: (N, K, *s) → (N, K)."""
    return x.flatten(2).sum(dim=-1)


def _expand(w: Tensor, ndim: int) -> Tensor:
    """(N, K) → (N, K, 1, …) broadcastable against an activation of rank ``ndim``."""
    return w.reshape(*w.shape, *([1] * (ndim - 2)))


def _weighted_sum(weights: Tensor, act: Tensor) -> Tensor:
    """Σ_k w_k A_k: (N, K) and (N, K, *s) → (N, *s)."""
    return (_expand(weights, act.ndim) * act).sum(dim=1)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den == 0 (the papers' 0/0 := 0 convention, no epsilon bias)."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, 1.0, den))


def _first_component(mat: Tensor, max_steps: int = 2000, tol: float = 1e-12) -> Tensor:
    """Projection (N, P) of centred data (N, P, K) on its first principal axis, sign arbitrary.

    Why not ``torch.linalg.svd``/``eigh``: multi-threaded LAPACK collapses on an oversubscribed
    CPU (measured: seconds for 16 SVDs of 196×1024 that take milliseconds single-threaded),
    while matrix products stay fast. So: power iteration on the smaller Gram matrix G (P×P or
    K×K, float64), started from G's largest column and run to convergence (each step is a
    matrix-vector product). A zero G gives a zero projection, never NaN.
    """
    mat = mat.float()
    by_rows = mat.shape[1] <= mat.shape[2]
    gram = (mat @ mat.transpose(1, 2) if by_rows else mat.transpose(1, 2) @ mat).double()
    tiny = torch.finfo(torch.float64).tiny
    col = gram.norm(dim=1).argmax(dim=1)
    vec = gram.gather(2, col.view(-1, 1, 1).expand(-1, gram.shape[1], 1))
    vec = vec / vec.norm(dim=1, keepdim=True).clamp_min(tiny)
    for step in range(1, max_steps + 1):
        nxt = gram @ vec
        nxt = nxt / nxt.norm(dim=1, keepdim=True).clamp_min(tiny)
        # checking convergence costs a synchronisation: do it every 8 steps
        done = step % 8 == 0 and float((nxt - vec).abs().max()) < tol
        vec = nxt
        if done:
            break
    if by_rows:  # vec = u₁ (left singular vector): X v₁ = σ₁ u₁, σ₁² = u₁ᵀ G u₁
        sigma = (vec.transpose(1, 2) @ gram @ vec).clamp_min(0).sqrt()
        return (vec * sigma).squeeze(-1)
    return (mat.double() @ vec).squeeze(-1)


class CAMMethod:
    """Base of every method: resolve the layer once, then ``__call__`` per batch.

    ``CAMMethod(model, layer=None)``; ``layer`` is a name for ``model.get_submodule`` or the module
    itself, by default ``model.cam_layer``. The model is never changed permanently.
    """

    name: ClassVar[str] = ""
    needs_grad: ClassVar[bool] = False
    uses_targets: ClassVar[bool] = True

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layer_name, self.layer = resolve_layer(model, layer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer_name!r})"

    def _session(self) -> HookSession:
        return HookSession(self.model, self.layer, self.layer_name, need_grad=self.needs_grad)

    def __call__(
        self,
        inputs: Tensor,
        targets: TargetSpec = None,
        *,
        upsample: bool = True,
        normalize: bool = True,
        relu: bool = True,
    ) -> CAMResult:
        """Explain ``inputs`` (N, C, H, W) or (N, C, D, H, W) for ``targets``."""
        inputs = check_inputs(inputs)
        device = model_device(self.model, inputs.device)
        # Detached: no graph is ever built through the input.
        x = inputs.detach().to(device)
        with self._session() as session:
            outputs = session.forward(x)
            resolved = resolve_targets(targets, outputs) if self.uses_targets else None
            raw = self._compute(session, x, outputs, resolved).detach()
        if relu:
            raw = raw.clamp_min(0)
        maps = upsample_maps(raw, x.shape[2:]) if upsample else raw
        if normalize:
            maps = normalize_maps(maps)
        classes = None if resolved is None else resolved.classes
        return CAMResult(maps=maps, raw=raw, outputs=outputs.detach(), classes=classes)

    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        """The map at feature resolution (N, *s), before ReLU."""
        raise NotImplementedError


# -- gradient methods -------------------------------------------------------------------------
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
        if act is None or targets is None:  # pragma: no cover - HookSession.forward guarantees
            raise ModelError("no activation captured")
        # Samples are independent in eval mode, so the gradient of the summed per-sample scores
        # gives each sample the gradient of its own target score.
        with torch.enable_grad():  # the caller may be inside torch.no_grad()
            score = targets.scores(outputs).sum()
            (grad,) = torch.autograd.grad(score, act, allow_unused=True)
        if grad is None:
            raise ModelError(f"the model output does not depend on layer {self.layer_name!r}")
        return self.combine(act.detach(), grad)

    def combine(self, act: Tensor, grad: Tensor) -> Tensor:
        """Default: Σ_k w_k A_k with this method's :meth:`weights`."""
        return _weighted_sum(self.weights(act, grad), act)

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
        g3 = g2 * grad
        total = _expand(_per_channel(act), act.ndim)
        alpha = _safe_div(g2, 2 * g2 + total * g3)
        return _per_channel(alpha * grad.clamp_min(0))


class XGradCAM(_GradientMethod):
    """XGrad-CAM (Fu et al. 2020): w_k = Σ_ij (A_ij / Σ_ab A_ab) · g_ij."""

    name = "xgradcam"

    def weights(self, act: Tensor, grad: Tensor) -> Tensor:
        return _safe_div(_per_channel(act * grad), _per_channel(act))


class LayerCAM(_GradientMethod):
    """LayerCAM (Jiang et al. 2021): Σ_k relu(g_k) ⊙ A_k, position by position."""

    name = "layercam"

    def combine(self, act: Tensor, grad: Tensor) -> Tensor:
        return (grad.clamp_min(0) * act).sum(dim=1)


class HiResCAM(_GradientMethod):
    """HiResCAM (Draelos & Carin 2020): Σ_k g_k ⊙ A_k, position by position."""

    name = "hirescam"

    def combine(self, act: Tensor, grad: Tensor) -> Tensor:
        return (grad * act).sum(dim=1)


# -- gradient-free methods --------------------------------------------------------------------
class CAM(CAMMethod):
    """CAM (Zhou et al. 2016): Σ_k W[c, k] A_k with the linear classifier's weights W.

    Defined for layer → global pooling → one ``nn.Linear``. The classifier is ``classifier=``
    (name or module), else ``model.classifier_layer``, else the only ``nn.Linear`` that runs after
    the layer (several, or none, is an error: CAM is not defined for an FC head).
    """

    name = "cam"

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        classifier: str | nn.Module | None = None,
    ) -> None:
        super().__init__(model, layer)
        self.classifier_name: str | None = None
        self.classifier: nn.Linear | None = None
        if classifier is None and hasattr(model, "classifier_layer"):
            classifier = model.classifier_layer
            if classifier is None:
                raise ModelError(
                    f"CAM is not defined for {type(model).__name__}: model.classifier_layer is "
                    "None (a fully connected head, not global pooling + linear); use a gradient "
                    "method such as 'gradcam'"
                )
        if classifier is not None:
            name, module = resolve_module(model, classifier, "classifier")
            self._set_classifier(name, module)

    def _set_classifier(self, name: str, module: nn.Module) -> None:
        if not isinstance(module, nn.Linear):
            raise ModelError(f"classifier {name!r} is {type(module).__name__}, not nn.Linear")
        self.classifier_name, self.classifier = name, module

    def _session(self) -> HookSession:
        return HookSession(
            self.model,
            self.layer,
            self.layer_name,
            need_grad=False,
            trace_linear=self.classifier is None,
        )

    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        act = session.activation
        if act is None or targets is None:  # pragma: no cover - HookSession.forward guarantees
            raise ModelError("no activation captured")
        if targets.classes is None:
            raise InputError("CAM needs class-index targets, not a callable")
        if self.classifier is None:
            after = session.linear_after
            if len(after) != 1:
                found = ", ".join(after) if after else "none"
                raise ModelError(
                    f"cannot choose CAM's classifier after layer {self.layer_name!r}: CAM needs "
                    f"exactly one nn.Linear after global pooling, found {found}; pass "
                    "classifier= or use a gradient method such as 'gradcam'"
                )
            self._set_classifier(after[0], self.model.get_submodule(after[0]))
        weight = self.classifier.weight.detach()  # type: ignore[union-attr]
        if weight.shape[1] != act.shape[1]:
            raise ModelError(
                f"classifier {self.classifier_name!r} takes {weight.shape[1]} features but layer "
                f"{self.layer_name!r} has {act.shape[1]} channels; CAM needs layer → global "
                "pooling → classifier"
            )
        if int(targets.classes.max()) >= weight.shape[0]:
            raise InputError(
                f"target class out of range for classifier {self.classifier_name!r} with "
                f"{weight.shape[0]} outputs",
                value=targets.classes.tolist(),
            )
        # Each sample's own features with its own class's weights (the dMRI study's code used
        # the first image's features for every image).
        return _weighted_sum(weight[targets.classes].to(act.dtype), act)


class EigenCAM(CAMMethod):
    """EigenCAM (Muhammad & Yeasin 2020): projection on the first principal component.

    Per sample, the activation is a (positions × channels) matrix; it is centred per channel and
    projected on its first right singular vector. Class-agnostic (targets are ignored). The SVD
    sign is arbitrary; we orient it so the map correlates positively with the channel-mean
    activation (strongly activated positions come out high).
    """

    name = "eigencam"
    uses_targets = False

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
        spatial = act.shape[2:]
        mat = act.flatten(2).transpose(1, 2)  # (N, P, K)
        mat = torch.nan_to_num(mat - mat.mean(dim=1, keepdim=True))
        proj = _first_component(mat)
        sign = torch.sign((proj * mat.mean(dim=2)).sum(dim=1, keepdim=True))
        proj = proj * torch.where(sign == 0, torch.ones_like(sign), sign)
        return proj.to(act.dtype).reshape(act.shape[0], *spatial)


class ScoreCAM(CAMMethod):
    """Score-CAM (Wang et al. 2020): w = softmax over channels of the target score of the input
    masked by each upsampled, min-max scaled activation channel.

    The N·K masked inputs are run ``batch_size`` at a time and built chunk by chunk, so memory is
    bounded by ``batch_size`` inputs whatever K is. (Subtracting a baseline score, as in the
    paper's "increase of confidence", would not change the softmax.)
    """

    name = "scorecam"

    def __init__(
        self, model: nn.Module, layer: str | nn.Module | None = None, *, batch_size: int = 32
    ) -> None:
        super().__init__(model, layer)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("batch_size must be a positive integer", value=batch_size)
        self.batch_size = batch_size

    @torch.no_grad()
    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        act = session.activation
        if act is None or targets is None:  # pragma: no cover - HookSession.forward guarantees
            raise ModelError("no activation captured")
        n, k = act.shape[:2]
        rows_all = torch.arange(n, device=act.device).repeat_interleave(k)
        chans_all = torch.arange(k, device=act.device).repeat(n)
        scores = torch.empty(n * k, dtype=act.dtype, device=act.device)
        for start in range(0, n * k, self.batch_size):
            rows = rows_all[start : start + self.batch_size]
            chans = chans_all[start : start + self.batch_size]
            masks = normalize_maps(upsample_maps(act[rows, chans], x.shape[2:]))
            masked = x[rows] * masks.unsqueeze(1).to(x.dtype)
            scores[start : start + rows.numel()] = targets.scores(
                session.forward_plain(masked), rows
            )
        weights = torch.softmax(scores.view(n, k), dim=1)
        return _weighted_sum(weights, act)


#: Every registered method by name (the built-in ones, then those added by register_method).
METHODS: dict[str, type[CAMMethod]] = {
    cls.name: cls
    for cls in (CAM, GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, ScoreCAM, EigenCAM)
}
_BUILTIN = frozenset(METHODS)


def _key(name: str) -> str:
    key = name.lower().replace("++", "pp")
    for ch in "-_ ":
        key = key.replace(ch, "")
    return key


def get_method(name: str) -> type[CAMMethod]:
    """Method class by name (case, '-', '_' and spaces ignored; '++' may be written 'pp')."""
    if not isinstance(name, str):
        raise ModelError(f"method must be a name, got {type(name).__name__}")
    try:
        return METHODS[_key(name)]
    except KeyError:
        raise ModelError(
            f"unknown CAM method {name!r}; valid names: {', '.join(METHODS)}"
        ) from None


def register_method(cls: type[CAMMethod] | None = None, *, name: str | None = None) -> Any:
    """Add a :class:`CAMMethod` subclass under ``name`` (default: its ``name`` attribute).

    Usable as a decorator (``@register_method`` or ``@register_method(name="mycam")``). The name
    must be lower case without '-', '_' or spaces (how :func:`get_method` looks names up); a
    name already registered is refused with :class:`ModelError`. Returns the class.
    """
    if cls is None:
        return lambda c: register_method(c, name=name)
    if not (isinstance(cls, type) and issubclass(cls, CAMMethod)):
        raise ModelError(f"a CAM method must be a CAMMethod subclass, got {cls!r}")
    name = cls.name if name is None else name
    if not isinstance(name, str) or not name or _key(name) != name:
        raise ModelError(
            f"CAM method name must be lower case without '-', '_' or spaces, got {name!r}"
        )
    if name in METHODS:
        raise ModelError(f"CAM method {name!r} is already registered ({METHODS[name].__name__})")
    if cls.name != name:
        cls.name = name
    METHODS[name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Remove a method added with :func:`register_method` (built-in methods stay)."""
    get_method(name)
    if _key(name) in _BUILTIN:
        raise ModelError(f"CAM method {name!r} is built in and cannot be unregistered")
    del METHODS[_key(name)]
