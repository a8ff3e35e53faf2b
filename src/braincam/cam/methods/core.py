"""The base of every method: :class:`CAMMethod` runs the hooked forward over one or several
layers, fuses them, applies the options shared by all methods, and returns a :class:`CAMResult`.

Notation: A (N, K, *s) is a target layer's activation (channels-first, see
:mod:`braincam.cam.layout`), g = ∂score/∂A its gradient for each sample's own target, Σ sums over
the spatial positions s. Every formula works for 2-D and 3-D activations alike (everything is
flattened over the spatial dimensions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from braincam.cam.base import HookSession, check_inputs, model_device, resolve_layers
from braincam.cam.fusion import FUSIONS, fuse_maps, fusion_grid
from braincam.cam.layout import LAYOUTS
from braincam.cam.postprocess import normalize_maps, upsample_maps
from braincam.cam.smoothing import Augmentation, resolve_augmentations
from braincam.cam.targets import ResolvedTargets, TargetSpec, resolve_targets
from braincam.errors import InputError, ModelError

__all__ = ["CAMMethod", "CAMResult", "LayerSpec", "principal_map"]

#: ``layer=``: a name, a module, or a list of them (several layers, fused).
LayerSpec = str | nn.Module | Sequence[str | nn.Module] | None


@dataclass(frozen=True)
class CAMResult:
    """Output of one call.

    ``maps``: (N, *input spatial) — upsampled (unless ``upsample=False``, then feature
    resolution; for several layers the largest layer grid) and min-max normalized (unless
    ``normalize=False``).
    ``raw``: for one layer, (N, *feature spatial) at the layer's resolution, ReLU applied if
    ``relu``, never normalized; for several layers, the fused map (see
    :mod:`braincam.cam.fusion`) on the maps' grid before the final normalization; with
    ``aug_smooth``, the mean of the views' normalized maps at the input's resolution.
    ``outputs``: the model's outputs for the batch. ``classes``: (N,) the class each sample was
    explained for (None for callable targets and class-agnostic methods). ``layers``: each
    layer's raw map at its own resolution (one entry for a single layer).
    """

    maps: Tensor
    raw: Tensor
    outputs: Tensor
    classes: Tensor | None
    layers: tuple[Tensor, ...] = ()


def _per_channel(x: Tensor) -> Tensor:
    """Sum over spatial positions: (N, K, *s) → (N, K)."""
    return x.flatten(2).sum(dim=-1)


def _expand(w: Tensor, ndim: int) -> Tensor:
    """(N, K) → (N, K, 1, …) broadcastable against an activation of rank ``ndim``."""
    return w.reshape(*w.shape, *([1] * (ndim - 2)))


def _weighted(weights: Tensor, act: Tensor) -> Tensor:
    """The per-channel terms w_k A_k: (N, K) and (N, K, *s) → (N, K, *s)."""
    return _expand(weights, act.ndim) * act


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den == 0 (the papers' 0/0 := 0 convention, no epsilon bias)."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, 1.0, den))


def _first_component(mat: Tensor) -> Tensor:
    """Projection (N, P) of centred data (N, P, K) on its first principal axis, sign arbitrary.

    Computed from the smaller Gram matrix G (P×P or K×K, float64) with a symmetric
    eigendecomposition run single-threaded: multi-threaded LAPACK collapses on an oversubscribed
    CPU (measured: seconds for 16 SVDs of 196×1024 that take milliseconds single-threaded), and
    the power iteration used before needed thousands of steps when the two leading eigenvalues
    were close (g ⊙ A of a random network). A zero G gives a zero projection, never NaN.
    """
    mat = mat.float()
    by_rows = mat.shape[1] <= mat.shape[2]
    gram = (mat @ mat.transpose(1, 2) if by_rows else mat.transpose(1, 2) @ mat).double()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        values, vectors = torch.linalg.eigh(gram)
    finally:
        torch.set_num_threads(threads)
    vec = vectors[..., -1:]  # the eigenvector of the largest eigenvalue
    if by_rows:  # vec = u₁ (left singular vector): X v₁ = σ₁ u₁, σ₁² = λ₁
        return (vec * values[..., -1:].clamp_min(0).sqrt().unsqueeze(1)).squeeze(-1)
    return (mat.double() @ vec).squeeze(-1)


def principal_map(terms: Tensor) -> Tensor:
    """First-principal-component map of per-channel terms (N, K, *s) → (N, *s).

    Per sample the terms form a (positions × channels) matrix; it is centred per channel and
    projected on its first right singular vector. The SVD's sign is arbitrary: it is oriented to
    correlate positively with the channel sum of the terms (so, for EigenCAM, strongly activated
    positions come out high; for ``eigen_smooth``, the map agrees with the unsmoothed one).
    """
    spatial = terms.shape[2:]
    mat = terms.flatten(2).transpose(1, 2)  # (N, P, K)
    mat = torch.nan_to_num(mat - mat.mean(dim=1, keepdim=True))
    proj = _first_component(mat)
    sign = torch.sign((proj * mat.mean(dim=2)).sum(dim=1, keepdim=True))
    proj = proj * torch.where(sign == 0, torch.ones_like(sign), sign)
    return proj.to(terms.dtype).reshape(terms.shape[0], *spatial)


class CAMMethod:
    """Base of every method: resolve the layer(s) once, then ``__call__`` per batch.

    ``CAMMethod(model, layer=None, *, layout="auto", reshape=None, fusion="layercam",
    aug_smooth=False, eigen_smooth=False)``. ``layer``: a name for ``model.get_submodule``, the
    module itself, or a list of them (each layer's map is computed — one forward and, for gradient
    methods, one backward for all — and the maps are fused by ``fusion``, see
    :mod:`braincam.cam.fusion`); default ``model.cam_layer``. ``layout`` / ``reshape``: how the
    layers' outputs are laid out (:mod:`braincam.cam.layout`). ``aug_smooth``: test-time
    augmentation (True: the left-right flip and ±2-voxel shifts, or a sequence of
    :mod:`braincam.cam.smoothing` views). ``eigen_smooth``: replace the sum over channels by the
    first principal component of the per-channel terms (for methods that sum channel terms).
    The model is never changed permanently.
    """

    name: ClassVar[str] = ""
    needs_grad: ClassVar[bool] = False
    uses_targets: ClassVar[bool] = True
    #: whether the map is a sum of per-channel terms (so ``eigen_smooth`` applies)
    sums_channels: ClassVar[bool] = True
    #: whether the method compares each input with a ``reference=`` input (the pipeline gives
    #: it the other classes' mean image: :class:`braincam.data.references.ClassReferences`)
    needs_reference: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        layout: str = "auto",
        reshape: Callable[[Tensor], Tensor] | None = None,
        fusion: str = "layercam",
        aug_smooth: bool | Sequence[Augmentation] = False,
        eigen_smooth: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if layout not in LAYOUTS:
            raise ModelError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if reshape is not None and not callable(reshape):
            raise ModelError(f"reshape must be a callable, got {type(reshape).__name__}")
        if fusion not in FUSIONS:
            raise ModelError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if not isinstance(eigen_smooth, bool):
            raise InputError("eigen_smooth must be True or False", value=eigen_smooth)
        if eigen_smooth and not self.sums_channels:
            raise ModelError(f"eigen_smooth does not apply to {self.name!r}")
        resolve_augmentations(aug_smooth, None)  # the spec now, the offsets once the rank is known
        self.model = model
        self.layers = resolve_layers(model, layer)
        self.layer_name, self.layer = self.layers[0]
        self.layout = layout
        self.reshape = reshape
        self.fusion = fusion
        self.aug_smooth = aug_smooth
        self.eigen_smooth = eigen_smooth

    def __repr__(self) -> str:
        names = [name for name, _ in self.layers]
        return f"{type(self).__name__}(layer={names[0] if len(names) == 1 else names!r})"

    def _session(self, **options: bool) -> HookSession:
        return HookSession(
            self.model,
            [module for _, module in self.layers],
            [name for name, _ in self.layers],
            need_grad=self.needs_grad,
            layout=self.layout,
            reshape=self.reshape,
            **options,
        )

    def _reduce(self, terms: Tensor) -> Tensor:
        """Per-channel terms (N, K, *s) → the map: their sum, or with ``eigen_smooth`` their first
        principal component."""
        return principal_map(terms) if self.eigen_smooth else terms.sum(dim=1)

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
        # Gradients cannot be taken in inference mode: leave it for the call (a tensor created in
        # inference mode is copied to a normal one first).
        with torch.inference_mode(False):
            # Detached: no graph is ever built through the input.
            x = inputs.detach().to(device)
            if x.is_inference():
                x = x.clone()
            views = resolve_augmentations(self.aug_smooth, x.ndim - 2)
            try:
                if views:
                    return self._smoothed(x, targets, views, upsample, normalize, relu)
                return self._run(x, targets, upsample=upsample, normalize=normalize, relu=relu)
            except RuntimeError as err:
                if "inference tensor" in str(err).lower():
                    raise ModelError(
                        "the model holds tensors created under torch.inference_mode() (its "
                        "parameters or buffers), which autograd cannot use; build or load the "
                        "model outside inference mode (or clone its state_dict)"
                    ) from err
                raise

    def _run(
        self, x: Tensor, targets: TargetSpec, *, upsample: bool, normalize: bool, relu: bool
    ) -> CAMResult:
        with self._session() as session:
            outputs = session.forward(x)
            resolved = resolve_targets(targets, outputs) if self.uses_targets else None
            raws = [r.detach() for r in self._compute_all(session, x, outputs, resolved)]
        if relu:
            raws = [r.clamp_min(0) for r in raws]
        if len(raws) == 1:
            raw = raws[0]
            maps = upsample_maps(raw, x.shape[2:]) if upsample else raw
        else:
            grid = tuple(x.shape[2:]) if upsample else fusion_grid(raws)
            raw = fuse_maps(raws, grid, self.fusion)
            maps = raw
        if normalize:
            maps = normalize_maps(maps)
        classes = None if resolved is None else resolved.classes
        return CAMResult(maps, raw, outputs.detach(), classes, tuple(raws))

    def _smoothed(
        self,
        x: Tensor,
        targets: TargetSpec,
        views: Sequence[Augmentation],
        upsample: bool,
        normalize: bool,
        relu: bool,
    ) -> CAMResult:
        """``aug_smooth``: the mean of the views' normalized maps, mapped back. The targets are
        resolved once, on the unaugmented input, so every view explains the same class."""
        if not upsample:
            raise InputError("aug_smooth maps views back at the input's resolution: upsample=True")
        clean = self._run(x, targets, upsample=True, normalize=True, relu=relu)
        fixed = targets if clean.classes is None else clean.classes
        total = torch.zeros_like(clean.maps)
        for view in views:
            if type(view) is Augmentation:  # the identity view: already computed
                total += clean.maps
                continue
            res = self._run(view.apply(x), fixed, upsample=True, normalize=True, relu=relu)
            total += view.invert(res.maps)
        raw = total / len(views)
        maps = normalize_maps(raw) if normalize else raw
        return CAMResult(maps, raw, clean.outputs, clean.classes, clean.layers)

    def _compute_all(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> list[Tensor]:
        """One map per hooked layer (N, *s_l), before ReLU: :meth:`_compute` for each layer."""
        maps = []
        for i in range(len(session.layers)):
            session.select(i)
            maps.append(self._compute(session, x, outputs, targets))
        return maps

    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        """The map at the selected layer's resolution (N, *s), before ReLU."""
        raise NotImplementedError
