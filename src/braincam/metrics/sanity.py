"""Sanity checks for saliency maps (Adebayo et al., 2018, "Sanity checks for saliency maps").

*Model-parameter randomization* (cascading): on a deep copy of the model, re-initialize the
parameters layer by layer from the output layer down, cumulatively, and after each step recompute
the maps. A method whose maps barely change although the network no longer computes anything
meaningful does not explain the model. *Data randomization*: compare the maps of a model with those
of the same architecture trained on shuffled labels (:func:`model_comparison`).

Similarity between original and randomized maps, per map:

- Spearman rank correlation (average ranks for ties, like ``scipy.stats.spearmanr``) and its
  absolute-value variant (ranks of ``|map|``), as in the paper, since randomization can flip signs;
- SSIM with an 11-wide Gaussian window (σ = 1.5), computed on min–max normalized maps, 2D or 3D.

Constant maps (e.g. a Grad-CAM that the ReLU zeroes out after randomization) have no rank
correlation: :func:`spearman` returns NaN. In the randomization tests a pair where exactly one map
is constant scores 0 (the map lost all its rank information, so it did change); a pair of two
constant maps stays NaN and is left out of the means.

Flag rule (:data:`FLAG_THRESHOLD`): a method is flagged when, after the last randomization step,
the mean Spearman correlation *or* the mean absolute-value Spearman correlation exceeds 0.5.

Granularity of the cascade (:data:`Cascade`, :func:`cascade_steps`): ``"layers"`` randomizes one
parameter layer per step (the paper's cascade; 88–142 steps for ResNet50 or InceptionV3),
``"blocks"`` one block per step (:func:`parameter_blocks`: the stages of the backbone and the
head), ``"full"`` everything at once (one step). Every mode ends with every parameter layer
randomized, and the flag judges that last step, so the three give the same flag; the coarser
modes lose only the intermediate steps (where along the network the maps stop changing).

Maps are tensors ``(N, *spatial)``; 2D and 3D maps go through the same code path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from braincam.cam.postprocess import normalize_maps
from braincam.errors import InputError

#: ``explain(model, inputs, targets) -> maps (N, *spatial)``; e.g.
#: ``lambda m, x, t: compute_cams(m, x, method="gradcam", targets=t)``.
Explainer = Callable[[nn.Module, Tensor, Tensor | None], Tensor]

#: Mean Spearman (plain or absolute) after full randomization above which a method is flagged.
FLAG_THRESHOLD = 0.5

METRICS = ("spearman", "spearman_abs", "ssim")

#: What one step of the cascade randomizes: a parameter layer, a block of layers, or all.
Cascade = Literal["layers", "blocks", "full"]
CASCADES: tuple[str, ...] = get_args(Cascade)

#: The step name of ``cascade="full"`` (every parameter layer at once).
FULL_STEP = "all"


# --------------------------------------------------------------------------------------------
# Similarity measures (batched)
# --------------------------------------------------------------------------------------------


def _check_pair(a: Tensor, b: Tensor, name_a: str = "a", name_b: str = "b") -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise InputError(f"{name_a} and {name_b} must be torch tensors", value=(type(a), type(b)))
    if a.shape != b.shape:
        raise InputError(
            f"{name_a} and {name_b} must have the same shape (N, *spatial)",
            value=(tuple(a.shape), tuple(b.shape)),
        )
    if a.ndim < 2:
        raise InputError(f"{name_a} must be batched maps (N, *spatial)", value=tuple(a.shape))


def rankdata(x: Tensor) -> Tensor:
    """Average ranks (1-based) along the last dim of a 2-D tensor ``(N, P)``; ties averaged."""
    n, p = x.shape
    order = torch.argsort(x, dim=1, stable=True)
    s = torch.gather(x, 1, order)
    # A new tie group starts wherever the sorted value changes; ranks within a group are averaged.
    new_group = torch.ones_like(s, dtype=torch.long)
    new_group[:, 1:] = (s[:, 1:] != s[:, :-1]).long()
    group = new_group.cumsum(1) - 1 + torch.arange(n, device=x.device).unsqueeze(1) * p
    positions = torch.arange(1, p + 1, dtype=torch.float64, device=x.device).expand(n, p)
    sums = torch.zeros(n * p, dtype=torch.float64, device=x.device)
    counts = torch.zeros(n * p, dtype=torch.float64, device=x.device)
    sums.index_add_(0, group.reshape(-1), positions.reshape(-1))
    counts.index_add_(0, group.reshape(-1), torch.ones(n * p, dtype=torch.float64, device=x.device))
    avg = (sums / counts.clamp_min(1))[group]
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, order, avg)
    return ranks


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation per map of two batches ``(N, *spatial)`` → ``(N,)``; NaN if constant."""
    _check_pair(a, b)
    x = a.flatten(1).double()
    y = b.flatten(1).double()
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    den = x.norm(dim=1) * y.norm(dim=1)
    r = (x * y).sum(1) / den
    return torch.where(den > 0, r.clamp(-1.0, 1.0), torch.full_like(r, math.nan)).float()


def spearman(a: Tensor, b: Tensor, *, absolute: bool = False) -> Tensor:
    """Spearman rank correlation per map ``(N, *spatial)`` → ``(N,)``.

    ``absolute=True`` ranks ``|a|`` and ``|b|`` (the paper's absolute-value variant). Constant maps
    give NaN.
    """
    _check_pair(a, b)
    x = a.flatten(1)
    y = b.flatten(1)
    if absolute:
        x, y = x.abs(), y.abs()
    return pearson(rankdata(x), rankdata(y))


def _gaussian_kernel(sigma: float, truncate: float, device: torch.device) -> Tensor:
    # Same support as scipy.ndimage.gaussian_filter / skimage's SSIM: radius int(truncate·σ + 0.5).
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur_valid(x: Tensor, kernel: Tensor) -> Tensor:
    """Separable Gaussian filter over all spatial dims of ``(N, 1, *spatial)``, 'valid' output."""
    dims = x.ndim - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    for d in range(dims):
        shape = [1, 1] + [1] * dims
        shape[2 + d] = kernel.numel()
        x = conv(x, kernel.reshape(shape))
    return x


def ssim(
    a: Tensor,
    b: Tensor,
    *,
    data_range: float = 1.0,
    sigma: float = 1.5,
    truncate: float = 3.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Mean SSIM per map ``(N, *spatial)`` → ``(N,)`` with a Gaussian window, 1D/2D/3D.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=σ,
    use_sample_covariance=False, data_range=...)``: the mean is taken over the positions where the
    window fits entirely (skimage crops the same border), so no padding convention is involved.
    """
    _check_pair(a, b)
    spatial = a.shape[1:]
    if len(spatial) > 3:
        raise InputError("ssim supports 1D, 2D and 3D maps", value=tuple(a.shape))
    if sigma <= 0 or data_range <= 0:
        raise InputError("sigma and data_range must be positive", value=(sigma, data_range))
    kernel = _gaussian_kernel(sigma, truncate, a.device)
    if min(spatial) < kernel.numel():
        raise InputError(
            f"ssim window ({kernel.numel()} wide for sigma={sigma}) is larger than the maps; "
            "use a smaller sigma",
            value=tuple(spatial),
        )
    x = a.double().unsqueeze(1)
    y = b.double().unsqueeze(1)
    mx, my = _blur_valid(x, kernel), _blur_valid(y, kernel)
    vx = _blur_valid(x * x, kernel) - mx * mx
    vy = _blur_valid(y * y, kernel) - my * my
    cxy = _blur_valid(x * y, kernel) - mx * my
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def _scaled(maps: Tensor) -> Tensor:
    """Maps scaled to [0, 1] for SSIM by braincam's one rule (a constant map → all 0), in
    float64 and returned as float32."""
    return normalize_maps(maps.double()).float()


def similarity(original: Tensor, other: Tensor, *, ssim_sigma: float = 1.5) -> dict[str, Tensor]:
    """Spearman, absolute Spearman and SSIM (on min–max normalized maps) per map.

    A pair where exactly one map is constant gets Spearman 0 (see the module docstring).
    """
    out = {
        "spearman": spearman(original, other),
        "spearman_abs": spearman(original, other, absolute=True),
        "ssim": ssim(_scaled(original), _scaled(other), sigma=ssim_sigma),
    }
    for key, absolute in (("spearman", False), ("spearman_abs", True)):
        a, b = original.flatten(1), other.flatten(1)
        if absolute:
            a, b = a.abs(), b.abs()
        const_a = (a == a[:, :1]).all(1)
        const_b = (b == b[:, :1]).all(1)
        out[key] = torch.where(const_a ^ const_b, torch.zeros_like(out[key]), out[key])
    return out


# --------------------------------------------------------------------------------------------
# Randomization
# --------------------------------------------------------------------------------------------


def parameter_layers(model: nn.Module, inputs: Tensor) -> list[str]:
    """Names of modules owning parameters, in the order a forward pass calls them.

    Execution order, not registration order, defines "top layer": the last module called is the
    one nearest the output. Modules never called (e.g. an unused auxiliary head) are left out.
    """
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):

            def hook(_m: nn.Module, _i: object, _o: object, name: str = name) -> None:
                if name not in order:
                    order.append(name)

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(inputs[:1])
    finally:
        for h in handles:
            h.remove()
    return order


def _within(name: str, prefix: str) -> bool:
    """Whether module ``name`` is ``prefix`` or inside it ("" is the model itself)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _child_of(name: str, prefix: str) -> str:
    """The direct child of ``prefix`` that holds module ``name`` (``prefix`` itself if equal)."""
    if name == prefix:
        return name
    rest = name[len(prefix) + 1 :] if prefix else name
    head = rest.split(".", 1)[0]
    return f"{prefix}.{head}" if prefix else head


def parameter_blocks(model: nn.Module, layers: Sequence[str]) -> dict[str, str]:
    """The block of each parameter layer: ``{layer: block name}``.

    The rule: from the model down, follow the child that holds more than half of the parameter
    layers (a wrapper such as ``backbone`` or ``features``) until no child does; the blocks are
    the children of that module (a ResNet's stem conv, stem norm and ``layer1``…; GoogLeNet's and
    InceptionV3's inception modules; VGG's convs) plus, on each level passed on the way down, each
    other child (e.g. the ``head``). For the registry's models this gives 6–7 steps for ResNet18/50,
    11 for GoogLeNet, 14 for InceptionV3 and one per layer for AlexNet and VGG (their backbones
    are flat). ``layers`` are parameter-owning module names (:func:`parameter_layers`).
    """
    path = [""]
    while True:
        inside = [name for name in layers if _within(name, path[-1])]
        counts: dict[str, int] = {}
        for name in inside:
            if name != path[-1]:
                child = _child_of(name, path[-1])
                counts[child] = counts.get(child, 0) + 1
        big = [child for child, n in counts.items() if 2 * n > len(inside)]
        if not big:
            break
        path.append(big[0])
    blocks = {}
    for name in layers:
        deepest = max((p for p in path if _within(name, p)), key=len)
        blocks[name] = _child_of(name, deepest) if name != deepest else (deepest or name)
    return blocks


def cascade_steps(
    model: nn.Module, layers: Sequence[str], cascade: Cascade = "layers"
) -> list[tuple[str, list[str]]]:
    """The cascade's steps, top (output) first: ``[(step name, layers randomized at it)]``.

    ``layers`` in forward order. The steps partition ``layers`` into runs of consecutive layers
    (from the last to the first), so the last step of a cumulative cascade has randomized every
    one. ``"blocks"``: a run is the consecutive layers of one :func:`parameter_blocks` block (a
    block whose layers are not consecutive in forward order would be two steps).
    """
    if cascade not in CASCADES:
        raise InputError(f"cascade must be one of {list(CASCADES)}", value=cascade)
    top_first = list(reversed(list(layers)))
    if cascade == "layers":
        return [(name, [name]) for name in top_first]
    if cascade == "full":
        return [(FULL_STEP, top_first)]
    block_of = parameter_blocks(model, layers)
    steps: list[tuple[str, list[str]]] = []
    for name in top_first:
        if steps and steps[-1][0] == block_of[name]:
            steps[-1][1].append(name)
        else:
            steps.append((block_of[name], [name]))
    return steps


def randomize_module(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialize a module's own parameters in place, reproducibly from ``generator``.

    Tensors with a fan-in (weights of ≥ 2 dims) and the biases of the same module are drawn from
    U(−1/√fan_in, 1/√fan_in), PyTorch's default initialization range for conv/linear layers;
    parameters without a fan-in (normalization scale and shift) are drawn from N(0, 1).
    """
    params = dict(module.named_parameters(recurse=False))
    fan_in = None
    for p in params.values():
        if p.ndim >= 2:
            fan_in = p[0].numel()
            break
    with torch.no_grad():
        for p in params.values():
            if fan_in is not None:
                bound = 1.0 / math.sqrt(fan_in)
                r = torch.rand(p.shape, generator=generator, dtype=torch.float64)
                new = (2 * r - 1) * bound
            else:
                new = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            p.copy_(new.to(dtype=p.dtype, device=p.device))


@dataclass
class SanityResult:
    """Per-map and per-step similarity between original and randomized maps, with the flag."""

    per_map: pd.DataFrame
    summary: pd.DataFrame
    flagged: bool
    rule: str
    threshold: float = FLAG_THRESHOLD
    maps: dict[str, Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly summary (for ``summary.json``)."""
        return {
            "flagged": self.flagged,
            "rule": self.rule,
            "threshold": self.threshold,
            "steps": self.summary.to_dict(orient="records"),
        }


def _explain_batched(
    explain: Explainer,
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None,
    batch_size: int | None,
) -> Tensor:
    if batch_size is None or batch_size >= len(inputs):
        maps = explain(model, inputs, targets)
    else:
        parts = []
        for i in range(0, len(inputs), batch_size):
            t = None if targets is None else targets[i : i + batch_size]
            parts.append(explain(model, inputs[i : i + batch_size], t))
        maps = torch.cat(parts)
    if not isinstance(maps, Tensor) or maps.ndim < 2 or len(maps) != len(inputs):
        raise InputError(
            "explain must return a tensor (N, *spatial) with one map per input",
            value=getattr(maps, "shape", type(maps)),
        )
    return maps.detach().float()


def _predicted(model: nn.Module, inputs: Tensor, batch_size: int | None) -> Tensor | None:
    """Predicted classes if the model outputs logits (N, classes), else None."""
    step = batch_size or len(inputs)
    with torch.no_grad():
        outs = [model(inputs[i : i + step]) for i in range(0, len(inputs), step)]
    if not all(isinstance(o, Tensor) and o.ndim == 2 for o in outs):
        return None
    return torch.cat(outs).argmax(1)


def _flag(summary_last: pd.Series, threshold: float) -> bool:
    # A Python bool: numpy's bool_ is not JSON, and was once stored as the truthy "False".
    values = [float(summary_last["spearman_mean"]), float(summary_last["spearman_abs_mean"])]
    defined = [v for v in values if not math.isnan(v)]
    return bool(defined) and bool(max(defined) > threshold)


def _rule(threshold: float, what: str) -> str:
    return (
        f"flagged if the mean Spearman or mean absolute-value Spearman correlation between the "
        f"original maps and the maps {what} exceeds {threshold}"
    )


def _summarize(per_map: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    agg = per_map.groupby(keys, sort=False)[list(METRICS)].agg(["mean", "std", "count"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    return agg.reset_index()


def _check_inputs(model: object, inputs: object, targets: object, explain: object) -> None:
    if not isinstance(model, nn.Module):
        raise InputError("model must be a torch.nn.Module", value=type(model).__name__)
    if not isinstance(inputs, Tensor) or inputs.ndim < 3 or len(inputs) == 0:
        raise InputError("inputs must be a non-empty tensor (N, C, *spatial)", value=inputs)
    if targets is not None and (not isinstance(targets, Tensor) or len(targets) != len(inputs)):
        raise InputError("targets must be None or a tensor with one class per input", value=targets)
    if not callable(explain):
        raise InputError("explain must be callable: explain(model, inputs, targets)", value=explain)


def cascading_randomization(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None,
    explain: Explainer,
    *,
    generator: torch.Generator,
    layers: Sequence[str] | None = None,
    cumulative: bool = True,
    batch_size: int | None = None,
    ssim_sigma: float = 1.5,
    threshold: float = FLAG_THRESHOLD,
    keep_maps: bool = False,
    cascade: Cascade = "layers",
) -> SanityResult:
    """Model-parameter randomization test, from the output layer down.

    ``model`` is never modified: a deep copy in eval mode is randomized. ``layers`` (names as in
    ``model.named_modules()``) defaults to every module owning parameters, in forward order; the
    test walks them from the last (output) to the first. With ``cumulative=False`` each layer is
    randomized alone on a fresh copy (the paper's independent randomization). ``targets`` are
    passed to ``explain`` unchanged at every step, so maps are always for the same class; when
    None and the model returns logits ``(N, classes)``, the original model's predicted classes are
    used (a randomized model predicts something else, and its map would answer another question).
    ``cascade`` (:func:`cascade_steps`): one step per layer, per block, or one step for all; the
    ``layer`` column of the tables then names the block (or ``"all"``).
    """
    _check_inputs(model, inputs, targets, explain)
    if not isinstance(generator, torch.Generator):
        raise InputError("generator must be a torch.Generator", value=generator)
    if cascade not in CASCADES:  # before any forward pass
        raise InputError(f"cascade must be one of {list(CASCADES)}", value=cascade)
    work = copy.deepcopy(model).eval()
    available = parameter_layers(work, inputs)
    if layers is None:
        layers = available
    else:
        unknown = [name for name in layers if name not in available]
        if unknown:
            raise InputError(
                f"layers not found among the model's parameter layers {available}", value=unknown
            )
        layers = [name for name in available if name in layers]
    if not layers:
        raise InputError("the model has no parameter layers to randomize", value=type(model))

    if targets is None:
        targets = _predicted(work, inputs, batch_size)
    original = _explain_batched(explain, work, inputs, targets, batch_size)
    rows = []
    kept: dict[str, Tensor] = {"original": original} if keep_maps else {}
    pristine = work
    for step, (name, members) in enumerate(cascade_steps(work, layers, cascade), start=1):
        if not cumulative:
            work = copy.deepcopy(pristine)
        for member in members:
            randomize_module(work.get_submodule(member), generator)
        maps = _explain_batched(explain, work, inputs, targets, batch_size)
        if maps.shape != original.shape:
            raise InputError("explain returned maps of a different shape after randomization")
        sims = similarity(original, maps, ssim_sigma=ssim_sigma)
        if keep_maps:
            kept[name] = maps
        for i in range(len(inputs)):
            row = {"step": step, "layer": name, "map": i}
            row.update({k: float(v[i]) for k, v in sims.items()})
            rows.append(row)
    per_map = pd.DataFrame(rows)
    summary = _summarize(per_map, ["step", "layer"])
    # Cumulative: the last step has everything randomized. Independent: judge the layer nearest
    # the output (step 1), the one whose randomization the paper's figures start from.
    last = summary.iloc[-1] if cumulative else summary.iloc[0]
    what = "after full randomization" if cumulative else "with the top layer randomized"
    return SanityResult(
        per_map=per_map,
        summary=summary,
        flagged=_flag(last, threshold),
        rule=_rule(threshold, what),
        threshold=threshold,
        maps=kept,
    )


def model_comparison(
    model: nn.Module,
    other: nn.Module,
    inputs: Tensor,
    targets: Tensor | None,
    explain: Explainer,
    *,
    batch_size: int | None = None,
    ssim_sigma: float = 1.5,
    threshold: float = FLAG_THRESHOLD,
) -> SanityResult:
    """Data-randomization test: maps of ``model`` vs ``other`` (e.g. trained on shuffled labels).

    Both models are explained on deep copies in eval mode; same flag rule as the cascade.
    """
    _check_inputs(model, inputs, targets, explain)
    if not isinstance(other, nn.Module):
        raise InputError("other must be a torch.nn.Module", value=type(other).__name__)
    a = _explain_batched(explain, copy.deepcopy(model).eval(), inputs, targets, batch_size)
    b = _explain_batched(explain, copy.deepcopy(other).eval(), inputs, targets, batch_size)
    if a.shape != b.shape:
        raise InputError("the two models' maps differ in shape", value=(a.shape, b.shape))
    sims = similarity(a, b, ssim_sigma=ssim_sigma)
    per_map = pd.DataFrame({"step": 1, "layer": "other_model", "map": range(len(inputs))})
    for k, v in sims.items():
        per_map[k] = v.cpu().numpy()
    summary = _summarize(per_map, ["step", "layer"])
    return SanityResult(
        per_map=per_map,
        summary=summary,
        flagged=_flag(summary.iloc[-1], threshold),
        rule=_rule(threshold, "of the other model"),
        threshold=threshold,
    )
