"""Perturbation methods: channel weights from the model's scores on perturbed inputs or
activations — Score-CAM and its smoothed (SS-CAM) and integrated (IS-CAM) variants, and
Ablation-CAM. Everything runs ``batch_size`` perturbed inputs at a time, built chunk by chunk, so
memory is bounded by ``batch_size`` inputs whatever the number of channels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from braincam.cam.base import HookSession
from braincam.cam.methods.core import CAMMethod, LayerSpec, _safe_div, _weighted
from braincam.cam.methods.gradient import NoiseDraws, _check_count
from braincam.cam.postprocess import normalize_maps, upsample_maps
from braincam.cam.tail import model_tail
from braincam.cam.targets import ResolvedTargets
from braincam.errors import InputError, ModelError

__all__ = ["ISCAM", "SSCAM", "AblationCAM", "ScoreCAM"]


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("batch_size must be a positive integer", value=batch_size)
    return batch_size


class _Batched(CAMMethod):
    """A method that runs its N·K perturbed forwards ``batch_size`` at a time (bounded memory)."""

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        batch_size: int = 32,
        **options: object,
    ) -> None:
        super().__init__(model, layer, **options)  # type: ignore[arg-type]
        self.batch_size = _check_batch_size(batch_size)


class ScoreCAM(_Batched):
    """Score-CAM (Wang et al. 2020): w = softmax over channels of the target score of the input
    masked by each upsampled, min-max scaled activation channel M_k = minmax(up(A_k)).

    The N·K masked inputs are run ``batch_size`` at a time and built chunk by chunk, so memory is
    bounded by ``batch_size`` inputs whatever K is; channels constant over the grid (their mask
    is all zero: the masked input is the zero image) share one forward of a zero image.
    (Subtracting a baseline score, as in the paper's "increase of confidence", would not change
    the softmax.)
    """

    name = "scorecam"

    def _views(self, x: Tensor) -> list[tuple[float, Tensor | None]]:
        """The mask variants whose scores are averaged: (scale, additive noise) pairs."""
        return [(1.0, None)]

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
        views = self._views(x)
        scores = torch.zeros(n * k, dtype=act.dtype, device=act.device)
        pairs = torch.arange(n * k, device=act.device)
        if all(noise is None for _, noise in views):
            # A constant channel (a dead ReLU unit, often most of them) has an all-zero mask, so
            # every view of its masked input is the zero image: one forward scores them all.
            lo, hi = torch.aminmax(act.flatten(2), dim=2)
            dead = (lo == hi).flatten()
            if dead.any():
                zero = session.forward_plain(torch.zeros_like(x[:1]))
                rows = pairs[dead] // k
                zero_scores = targets.scores(zero.expand(rows.numel(), -1).contiguous(), rows)
                scores[dead] = zero_scores.to(act.dtype) * len(views)
                pairs = pairs[~dead]
        for start in range(0, pairs.numel(), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            rows, chans = chunk // k, chunk % k
            masks = normalize_maps(upsample_maps(act[rows, chans], x.shape[2:])).to(x.dtype)
            for scale, noise in views:
                mask = masks * scale if noise is None else masks + noise
                masked = x[rows] * mask.unsqueeze(1)
                scores[chunk] += targets.scores(session.forward_plain(masked), rows).to(act.dtype)
        weights = torch.softmax(scores.view(n, k) / len(views), dim=1)
        return self._reduce(_weighted(weights, act))


class SSCAM(ScoreCAM):
    """SS-CAM (Wang, Naidu et al. 2020, "Smoothed Score-CAM"): Score-CAM whose channel scores are
    averaged over ``num_samples`` noisy masks, s_k = (1/M) Σ_m Y_c(X ⊙ (M_k + δ_m)),
    δ_m ~ N(0, std²); w = softmax(s). One noise field per draw, shared by the batch's samples and
    channels (a batch equals its samples one by one), drawn from ``seed``."""

    name = "sscam"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        batch_size: int = 32,
        num_samples: int = 35,
        std: float = 2.0,
        seed: int = 0,
        **options: object,
    ) -> None:
        super().__init__(model, layer, batch_size=batch_size, **options)
        self.noise = NoiseDraws(num_samples, std, seed)

    def _views(self, x: Tensor) -> list[tuple[float, Tensor | None]]:
        return [(1.0, f) for f in self.noise.fields(x.shape[2:], x)]


class ISCAM(ScoreCAM):
    """IS-CAM (Naidu et al. 2020, "Integrated Score-CAM"): Score-CAM whose channel scores
    integrate along the mask's scale, s_k = (1/M) Σ_{i=1..M} Y_c(X ⊙ c_i M_k) with the cumulative
    coefficients c_i = Σ_{j=1..i} j/M (the authors' code, as in torch-cam); w = softmax(s)."""

    name = "iscam"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        batch_size: int = 32,
        num_samples: int = 10,
        **options: object,
    ) -> None:
        super().__init__(model, layer, batch_size=batch_size, **options)
        self.num_samples = _check_count("num_samples", num_samples)

    def _views(self, x: Tensor) -> list[tuple[float, Tensor | None]]:
        m = self.num_samples
        return [(sum(j / m for j in range(1, i + 1)), None) for i in range(1, m + 1)]


class AblationCAM(_Batched):
    """Ablation-CAM (Desai & Ramaswamy 2020): w_k = (y_c − y_c^k) / y_c, the relative drop of the
    target score when channel k of the layer's activation is set to zero (0/0 is 0).

    The N·K ablated forwards run ``batch_size`` at a time: the layer's output is replaced by the
    captured activation with one channel zeroed (the paper's ablation; pytorch-grad-cam sets a
    channel to min − 10⁷ when the activation has negative values). For a ``reshape=`` layer the
    channels are taken to be the raw output's last axis (tokens (N, L, C)). When the model's
    output is a function of the layer's output alone (:mod:`braincam.cam.tail`), only the layers
    after it run for each ablated copy; otherwise the whole model does.
    """

    name = "ablationcam"

    def __init__(self, model: nn.Module, layer: LayerSpec = None, **options: object) -> None:
        super().__init__(model, layer, **options)  # type: ignore[arg-type]
        self._tails: dict[str, nn.Module | None] = {}

    def _tail(self, layer_name: str) -> nn.Module | None:
        """The model after ``layer_name`` (:func:`model_tail`), traced once per layer: each
        ablated copy then costs the tail's forward, not the whole model's."""
        tails = self._tails
        if layer_name not in tails:
            tails[layer_name] = model_tail(self.model, layer_name)
        return tails[layer_name]

    @torch.no_grad()
    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        act = session.activation
        raw = session.captured[session.index]
        if act is None or raw is None or targets is None:  # pragma: no cover
            raise ModelError("no activation captured")
        channel_dim = session.layouts[session.index].channel_dim % raw.ndim
        n, k = act.shape[:2]
        base = targets.scores(outputs.detach()).to(act.dtype)
        rows_all = torch.arange(n, device=act.device).repeat_interleave(k)
        chans_all = torch.arange(k, device=act.device).repeat(n)
        ablated = torch.empty(n * k, dtype=act.dtype, device=act.device)
        tail = self._tail(session.layer_names[session.index])
        for start in range(0, n * k, self.batch_size):
            rows = rows_all[start : start + self.batch_size]
            chans = chans_all[start : start + self.batch_size]
            value = raw[rows].detach().clone()
            view = value.movedim(channel_dim, 1)  # a view: writing to it writes to value
            view[torch.arange(rows.numel(), device=value.device), chans] = 0
            out = session.forward_from(session.index, value, x[rows], tail)
            ablated[start : start + rows.numel()] = targets.scores(out, rows).to(act.dtype)
        weights = _safe_div(base.view(n, 1) - ablated.view(n, k), base.view(n, 1).expand(n, k))
        return self._reduce(_weighted(weights, act))
