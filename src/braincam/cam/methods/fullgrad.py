"""FullGrad (Srinivas & Fleuret 2019): input-gradient and bias-gradient maps of the whole
network, not one layer's."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from braincam.cam.methods.core import CAMMethod, CAMResult, LayerSpec
from braincam.cam.postprocess import normalize_maps, upsample_maps, upsampled_extremes
from braincam.cam.targets import TargetSpec, resolve_targets
from braincam.errors import ModelError

__all__ = ["FullGrad"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def implicit_bias(module: nn.Module) -> Tensor:
    """A layer's bias as a constant added per channel: a conv's ``bias``; in eval mode a batch
    norm adds β − μ·γ/√(σ² + ε)."""
    if isinstance(module, _NORM):
        mean, var = module.running_mean, module.running_var
        if mean is None or var is None:
            raise ModelError("FullGrad needs batch norms with running statistics")
        gamma = torch.ones_like(mean) if module.weight is None else module.weight
        beta = torch.zeros_like(mean) if module.bias is None else module.bias
        return (beta - mean * gamma / torch.sqrt(var + module.eps)).detach()
    if isinstance(module, _CONV):
        # a conv without a bias adds nothing: its bias-gradient term is zero
        bias = module.bias
        return torch.zeros(module.out_channels) if bias is None else bias.detach()
    raise ModelError(
        f"FullGrad's layers are convolutions and batch norms, not {type(module).__name__}"
    )


def bias_layers(model: nn.Module) -> list[str]:
    """Names of the conv layers with a bias and the batch norms (FullGrad's default layers)."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, _CONV) and module.bias is not None:
            names.append(name)
        elif isinstance(module, _NORM) and module.track_running_stats:
            names.append(name)
    return names


class FullGrad(CAMMethod):
    """FullGrad (Srinivas & Fleuret 2019, eq. 6):

    F = ψ(|∇_x S ⊙ x|) + Σ_l Σ_c ψ(|∇_{A_l} S ⊙ b_l|_c),  ψ = rescale to [0, 1] ∘ upsample,

    where x is the input (each channel apart), A_l the output of each layer with a bias b_l
    (convolutions with a bias and batch norms, whose eval-mode bias is β − μγ/√(σ²+ε)) and ψ
    works per sample and channel. ``layer=`` restricts the bias layers (default: all of them, as
    the paper); the map is at the input's resolution (``upsample=False`` changes nothing) and
    non-negative. pytorch-grad-cam rescales before resizing (ψ in the other order) and only
    knows 2-D layers.
    """

    name = "fullgrad"
    needs_grad = True
    sums_channels = False

    def __init__(self, model: nn.Module, layer: LayerSpec = None, **options: object) -> None:
        if layer is None:
            if not isinstance(model, nn.Module):
                raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
            layer = bias_layers(model)
            if not layer:
                raise ModelError("FullGrad found no convolution with a bias nor batch norm")
        super().__init__(model, layer, **options)  # type: ignore[arg-type]

    def _run(
        self, x: Tensor, targets: TargetSpec, *, upsample: bool, normalize: bool, relu: bool
    ) -> CAMResult:
        size = tuple(x.shape[2:])
        with self._session(input_grad=True) as session:
            outputs = session.forward(x)
            resolved = resolve_targets(targets, outputs)
            with torch.enable_grad():
                score = resolved.scores(outputs).sum()
            gx, grads = session.input_gradient(score)
        n = x.shape[0]

        def psi(terms: Tensor) -> Tensor:
            """(N, K, *s) → Σ_k ψ(|t_k|) at the input's size, ψ(t) = (up(t) − lo) / (hi − lo)
            with lo, hi the extremes of up(t). Upsampling is linear, so the sum is
            up(Σ_k |t_k| / span_k) − Σ_k lo_k / span_k: one input-sized map per layer, and the
            extremes come from :func:`upsampled_extremes` without upsampling each channel."""
            mags = terms.abs()
            k = mags.shape[1]
            lo, hi = upsampled_extremes(mags.flatten(0, 1), size).view(n, k, 2).unbind(-1)
            span = hi - lo
            inv = torch.where(span > 0, 1 / torch.where(span > 0, span, 1.0), 0.0)  # constant → 0
            spread = (mags * inv.view(n, k, *([1] * (mags.ndim - 2)))).sum(dim=1)
            offset = (lo * inv).sum(dim=1).view(n, *([1] * len(size)))
            return upsample_maps(spread, size) - offset

        total = psi((gx * x).detach())
        per_layer = []
        for (name, module), grad in zip(self.layers, grads, strict=True):
            bias = implicit_bias(module).to(grad)
            if bias.numel() != grad.shape[1]:
                raise ModelError(
                    f"FullGrad: layer {name!r} has {grad.shape[1]} channels but a bias of "
                    f"{bias.numel()}"
                )
            term = psi(grad * bias.view(1, -1, *([1] * (grad.ndim - 2))))
            per_layer.append(term)
            total = total + term
        maps = normalize_maps(total) if normalize else total
        return CAMResult(maps, total, outputs.detach(), resolved.classes, tuple(per_layer))
