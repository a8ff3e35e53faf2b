"""Sanity checks (Adebayo et al., 2018): similarity measures, cascading randomization, flag."""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from braincam.errors import InputError
from braincam.metrics.sanity import (
    cascade_steps,
    cascading_randomization,
    model_comparison,
    parameter_blocks,
    parameter_layers,
    randomize_module,
    rankdata,
    similarity,
    spearman,
    ssim,
)


class TinyCNN(nn.Module):
    """Conv → BN → ReLU → conv → ReLU → GAP → linear; 2D or 3D."""

    def __init__(self, dims: int = 2, classes: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.conv1 = conv(1, 6, 3, padding=1)
        self.bn1 = bn(6)
        self.conv2 = conv(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        a = self.relu2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(a.flatten(2).mean(-1))


def gradcam(model: nn.Module, x: Tensor, targets: Tensor | None) -> Tensor:
    """A plain Grad-CAM on TinyCNN's last conv (test-local, independent of braincam.cam)."""
    store: list[Tensor] = []
    handle = model.relu2.register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    act = store[0]
    t = logits.argmax(1) if targets is None else targets
    score = logits.gather(1, t[:, None]).sum()
    (grad,) = torch.autograd.grad(score, act)
    w = grad.flatten(2).mean(-1)
    cam = F.relu((w[(...,) + (None,) * (act.ndim - 2)] * act).sum(1))
    return cam.detach()


def edges(_model: nn.Module, x: Tensor, _targets: Tensor | None) -> Tensor:
    """An 'explanation' that ignores the model: gradient magnitude of the input image."""
    img = x[:, 0]
    gy = torch.zeros_like(img)
    gx = torch.zeros_like(img)
    gy[:, 1:-1] = img[:, 2:] - img[:, :-2]
    gx[:, :, 1:-1] = img[:, :, 2:] - img[:, :, :-2]
    return (gx**2 + gy**2).sqrt()


def _inputs(n: int = 4, size: int = 24, dims: int = 2, seed: int = 0) -> Tensor:
    return _toy_data(n, size, dims, seed)[0]


def _toy_data(n: int, size: int = 24, dims: int = 2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Noise, plus a bright square at a random place in odd-numbered images (class 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros((n, 1) + (size,) * dims)
    y = torch.arange(n) % 2
    for i in range(n):
        corner = torch.randint(2, size - 8, (dims,), generator=g).tolist()
        x[(i, 0, *(slice(c, c + 6) for c in corner))] = float(y[i])
    return x + 0.2 * torch.randn(x.shape, generator=g), y


@pytest.fixture(scope="module")
def trained() -> TinyCNN:
    """TinyCNN trained for a few steps on the toy task, so Grad-CAM has something to show."""
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = _toy_data(64, seed=10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------- similarity measures


def test_rankdata_matches_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 5, (3, 40), generator=g).float()
    expected = np.stack([scipy.stats.rankdata(row) for row in x.numpy()])
    np.testing.assert_allclose(rankdata(x).numpy(), expected)


def test_spearman_matches_scipy_and_abs_variant() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 7, 6, generator=g)
    b = a + 0.7 * torch.randn(5, 7, 6, generator=g)
    b[:, 0, :3] = 0.0  # ties
    got = spearman(a, b).numpy()
    exp = [scipy.stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(5)]
    np.testing.assert_allclose(got, exp, atol=1e-5)
    # A sign flip is perfect anti-correlation, but the absolute-value variant sees the same map.
    np.testing.assert_allclose(spearman(a, -a).numpy(), -1.0, atol=1e-6)
    np.testing.assert_allclose(spearman(a, -a, absolute=True).numpy(), 1.0, atol=1e-6)


def test_spearman_constant_map_is_nan() -> None:
    a = torch.randn(2, 5, 5)
    b = a.clone()
    b[1] = 3.0
    r = spearman(a, b)
    assert r[0] == pytest.approx(1.0)
    assert torch.isnan(r[1])


@pytest.mark.parametrize("shape", [(3, 20, 24), (2, 13, 14, 12)])
def test_ssim_matches_skimage_2d_and_3d(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.rand(shape, generator=g)
    b = (a + 0.3 * torch.rand(shape, generator=g)).clamp(0, 1)
    got = ssim(a, b).numpy()
    for i in range(shape[0]):
        exp = structural_similarity(
            a[i].double().numpy(),
            b[i].double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        assert got[i] == pytest.approx(exp, abs=1e-5)
    np.testing.assert_allclose(ssim(a, a).numpy(), 1.0, atol=1e-6)


def test_ssim_rejects_maps_smaller_than_window() -> None:
    with pytest.raises(InputError, match="window"):
        ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 8))
    with pytest.raises(InputError, match="window"):  # the first spatial side is too short
        ssim(torch.rand(1, 8, 20), torch.rand(1, 8, 20))
    with pytest.raises(InputError, match="1D, 2D and 3D"):
        ssim(torch.rand(1, 11, 11, 11, 11), torch.rand(1, 11, 11, 11, 11))
    with pytest.raises(InputError, match=r"^a and b must have the same shape"):
        spearman(torch.rand(1, 8, 8), torch.rand(1, 8, 9))
    with pytest.raises(InputError, match=r"^a and b must be torch tensors"):
        spearman(torch.rand(1, 8, 8), np.zeros((1, 8, 8)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^a and b must be torch tensors"):
        ssim(np.zeros((1, 12, 12)), torch.rand(1, 12, 12))  # type: ignore[arg-type]


# ---------------------------------------------------------------- cascading randomization


def test_parameter_layers_in_forward_order() -> None:
    model = TinyCNN()
    assert parameter_layers(model, _inputs(1)) == ["conv1", "bn1", "conv2", "fc"]


def test_weight_independent_explanation_is_flagged() -> None:
    model = TinyCNN()
    res = cascading_randomization(
        model, _inputs(), None, edges, generator=torch.Generator().manual_seed(0)
    )
    assert res.flagged is True  # a Python bool: numpy's bool_ is truthy-equal but not JSON
    assert res.to_dict()["flagged"] is True
    assert list(res.summary["layer"]) == ["fc", "conv2", "bn1", "conv1"]  # top layer first
    np.testing.assert_allclose(res.summary["spearman_mean"], 1.0, atol=1e-6)
    np.testing.assert_allclose(res.summary["ssim_mean"], 1.0, atol=1e-6)
    assert "0.5" in res.rule


def test_gradcam_changes_under_randomization_and_model_untouched(trained: TinyCNN) -> None:
    model = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    x, targets = _toy_data(6, seed=3)
    res = cascading_randomization(
        model, x, targets, gradcam, generator=torch.Generator().manual_seed(1), keep_maps=True
    )
    assert res.flagged is False
    assert res.to_dict()["flagged"] is False
    last = res.summary.iloc[-1]
    assert last["spearman_mean"] < 0.5 and last["spearman_abs_mean"] < 0.5
    assert len(res.per_map) == 4 * 6
    # The user's model: same parameters, buffers and mode.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training
    model.eval()
    assert set(res.maps) == {"original", "fc", "conv2", "bn1", "conv1"}
    # The trained model's maps are informative (not constant), so the check is meaningful.
    assert (res.maps["original"].flatten(1).std(1) > 0).all()


def test_cascade_is_reproducible_and_3d() -> None:
    torch.manual_seed(0)
    model = TinyCNN(dims=3)
    x = _inputs(2, size=12, dims=3)
    kw = {"ssim_sigma": 0.5}
    r1 = cascading_randomization(
        model, x, None, gradcam, generator=torch.Generator().manual_seed(5), **kw
    )
    r2 = cascading_randomization(
        model, x, None, gradcam, generator=torch.Generator().manual_seed(5), **kw
    )
    pd_cols = ["spearman", "spearman_abs", "ssim"]
    np.testing.assert_array_equal(r1.per_map[pd_cols].to_numpy(), r2.per_map[pd_cols].to_numpy())
    assert r1.flagged is False and r2.flagged is False


def test_independent_randomization_and_layer_subset() -> None:
    model = TinyCNN()
    res = cascading_randomization(
        model,
        _inputs(2),
        None,
        edges,
        generator=torch.Generator().manual_seed(0),
        layers=["conv2", "fc"],
        cumulative=False,
    )
    assert list(res.summary["layer"]) == ["fc", "conv2"]
    with pytest.raises(InputError, match="layers not found"):
        cascading_randomization(
            model, _inputs(2), None, edges, generator=torch.Generator(), layers=["nope"]
        )


def test_model_comparison_same_vs_different_model() -> None:
    torch.manual_seed(0)
    model = TinyCNN()
    torch.manual_seed(1)
    other = TinyCNN()
    x = _inputs(4)
    same = model_comparison(model, model, x, None, gradcam)
    assert same.flagged is True  # identical model: identical maps
    np.testing.assert_allclose(same.summary["spearman_mean"], 1.0, atol=1e-6)
    diff = model_comparison(model, other, x, None, gradcam)
    assert diff.summary["spearman_mean"].iloc[0] < same.summary["spearman_mean"].iloc[0]


@pytest.mark.parametrize(
    ("spearman", "spearman_abs", "flagged"),
    [
        (0.9, 0.1, True),  # either correlation above the threshold flags
        (0.1, 0.9, True),
        (0.5, 0.5, False),  # "exceeds": the threshold itself passes
        (0.5000001, 0.0, True),
        (-0.9, 0.2, False),  # anti-correlated maps changed: they pass
        (float("nan"), 0.7, True),  # an undefined correlation is ignored, the other decides
        (0.7, float("nan"), True),
        (float("nan"), 0.3, False),
        (float("nan"), float("nan"), False),  # nothing defined: not flagged
    ],
)
def test_flag_rule_and_its_type(spearman: float, spearman_abs: float, flagged: bool) -> None:
    from braincam.metrics.sanity import _flag

    last = pd.Series({"spearman_mean": np.float64(spearman), "spearman_abs_mean": spearman_abs})
    assert _flag(last, 0.5) is flagged


def test_bad_arguments_raise_input_error() -> None:
    model = TinyCNN()
    with pytest.raises(InputError, match="generator"):
        cascading_randomization(model, _inputs(1), None, edges, generator=0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="targets"):
        cascading_randomization(
            model, _inputs(2), torch.zeros(3), edges, generator=torch.Generator()
        )
    with pytest.raises(InputError, match="explain must return"):
        cascading_randomization(
            model, _inputs(2), None, lambda m, x, t: x.sum(), generator=torch.Generator()
        )


def test_targets_default_to_original_predictions_at_every_step(trained: TinyCNN) -> None:
    x, _ = _toy_data(6, seed=4)
    expected = trained(x).argmax(1)
    seen: list[Tensor] = []

    def recording(model: nn.Module, inputs: Tensor, targets: Tensor | None) -> Tensor:
        assert targets is not None
        seen.append(targets.clone())
        return gradcam(model, inputs, targets)

    cascading_randomization(
        trained, x, None, recording, generator=torch.Generator().manual_seed(0), batch_size=4
    )
    assert len(seen) == 2 * 5  # original + 4 steps, two batches each
    got = torch.cat(seen).reshape(5, 6)
    assert (got == expected).all()


@pytest.mark.parametrize(
    ("cumulative", "expected"), [(True, [0, 1, 2, 3, 4]), (False, [0, 1, 1, 1, 1])]
)
def test_layers_randomized_per_step(cumulative: bool, expected: list[int]) -> None:
    model = TinyCNN()
    original = {k: v.clone() for k, v in model.named_parameters()}
    changed: list[int] = []
    top_first: list[list[str]] = []

    def recording(m: nn.Module, inputs: Tensor, targets: Tensor | None) -> Tensor:
        params = m.named_parameters()
        names = sorted({k.rsplit(".", 1)[0] for k, v in params if not torch.equal(v, original[k])})
        changed.append(len(names))
        top_first.append(names)
        return edges(m, inputs, targets)

    cascading_randomization(
        model,
        _inputs(2),
        None,
        recording,
        generator=torch.Generator().manual_seed(0),
        cumulative=cumulative,
    )
    assert changed == expected
    assert top_first[1] == ["fc"]  # the output layer goes first


# ---------------------------------------------------------------- model comparison (issue 19)


def _minmax(maps: Tensor) -> Tensor:
    """Min-max to [0, 1] per map in float64, a constant map → 0 (the rule SSIM is taken on)."""
    flat = maps.flatten(1).double()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = hi - lo
    return ((flat - lo) / span.clamp_min(1e-300) * (span > 0)).view(maps.shape).float()


def test_model_comparison_columns_values_rule_and_dict() -> None:
    torch.manual_seed(0)
    model = TinyCNN()
    torch.manual_seed(1)
    other = TinyCNN()
    model.train()  # the users' modes, kept: only copies are put in eval mode
    other.train()
    x, targets = _toy_data(4, seed=5)
    seen: list[tuple[int, list[int]]] = []

    def recording(m: nn.Module, inputs: Tensor, t: Tensor | None) -> Tensor:
        assert t is not None
        seen.append((len(inputs), t.tolist()))
        return gradcam(m, inputs, t)

    res = model_comparison(model, other, x, targets, recording, batch_size=3, threshold=0.7)
    # targets reach the explainer unchanged, in chunks of batch_size, for both models
    expected_calls = [(3, targets[:3].tolist()), (1, targets[3:].tolist())] * 2
    assert seen == expected_calls
    assert all(mod.training for mod in [*model.modules(), *other.modules()])
    a = gradcam(copy.deepcopy(model).eval(), x, targets)
    b = gradcam(copy.deepcopy(other).eval(), x, targets)
    per_map = res.per_map
    assert list(per_map.columns) == ["step", "layer", "map", "spearman", "spearman_abs", "ssim"]
    assert per_map["step"].tolist() == [1] * 4
    assert per_map["layer"].tolist() == ["other_model"] * 4
    assert per_map["map"].tolist() == [0, 1, 2, 3]
    # one map constant (the ReLU zeroed it), the other not: Spearman 0 (module docstring)
    one_constant = (a.flatten(1).std(1) == 0) ^ (b.flatten(1).std(1) == 0)
    assert one_constant.any() and not one_constant.all()
    expected = torch.where(one_constant, 0.0, spearman(a, b))
    np.testing.assert_allclose(per_map["spearman"], expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(per_map["ssim"], ssim(_minmax(a), _minmax(b)).numpy(), atol=1e-6)
    assert res.threshold == 0.7
    rule = (
        "flagged if the mean Spearman or mean absolute-value Spearman correlation between the "
        "original maps and the maps of the other model exceeds 0.7"
    )
    assert res.rule == rule
    steps = res.summary.to_dict(orient="records")
    assert res.to_dict() == {"flagged": res.flagged, "rule": rule, "threshold": 0.7, "steps": steps}
    assert steps[0]["step"] == 1 and steps[0]["layer"] == "other_model"
    # ssim_sigma reaches SSIM: 1.5 by default, else the caller's
    wide = model_comparison(model, other, x, targets, gradcam, ssim_sigma=2.5)
    np.testing.assert_allclose(
        wide.per_map["ssim"], ssim(_minmax(a), _minmax(b), sigma=2.5).numpy(), atol=1e-6
    )
    assert not np.allclose(wide.per_map["ssim"], per_map["ssim"])
    with pytest.raises(InputError, match="targets"):
        model_comparison(model, other, x, targets[:3], gradcam)


def test_randomize_module_draws_pytorch_default_ranges() -> None:
    """U(±1/√fan_in) in float64 for weight then bias, from one generator; no fan-in: N(0, 1)."""

    lin = nn.Linear(5, 1)  # weight (1, 5): fan_in 5 (one output row only)
    randomize_module(lin, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    bound = 1 / 5**0.5
    w = (2 * torch.rand((1, 5), generator=gen, dtype=torch.float64) - 1) * bound
    b = (2 * torch.rand((1,), generator=gen, dtype=torch.float64) - 1) * bound
    assert torch.equal(lin.weight.data, w.float()) and torch.equal(lin.bias.data, b.float())
    bn = nn.BatchNorm1d(20)  # ≥ 16 values: float32 and float64 normal draws differ
    randomize_module(bn, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(20, generator=gen, dtype=torch.float64)
    b = torch.randn(20, generator=gen, dtype=torch.float64)
    assert torch.equal(bn.weight.data, w.float()) and torch.equal(bn.bias.data, b.float())


def test_randomize_module_leaves_children_alone() -> None:

    class Parent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.child = nn.Linear(3, 3)

    parent = Parent()
    child_before = {k: v.clone() for k, v in parent.child.named_parameters()}
    randomize_module(parent, torch.Generator().manual_seed(0))
    assert not torch.equal(parent.scale.data, torch.ones(3))
    for k, v in parent.child.named_parameters():
        assert torch.equal(v, child_before[k]), k


def test_no_targets_for_a_model_without_class_logits() -> None:
    """A model whose output is not (N, classes) gives the explainer targets=None."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(2))  # output (N, 2, P)
    seen: list[Tensor | None] = []

    def recording(m: nn.Module, inputs: Tensor, targets: Tensor | None) -> Tensor:
        seen.append(targets)
        return edges(m, inputs, targets)

    cascading_randomization(
        model, _inputs(2), None, recording, generator=torch.Generator().manual_seed(0), batch_size=1
    )
    assert len(seen) == 4 and all(t is None for t in seen)  # (original + 1 layer) × 2 chunks


def test_one_dimensional_signals_are_accepted() -> None:
    """Inputs (N, C, L) and maps (N, L): the smallest shapes the checks allow."""
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(1), nn.LazyLinear(2))
    x = torch.randn(3, 1, 30, generator=torch.Generator().manual_seed(0))
    model(x)  # materialize the lazy layer

    def explain(_m: nn.Module, inputs: Tensor, _t: Tensor | None) -> Tensor:
        return inputs[:, 0].abs()  # ignores the model

    res = cascading_randomization(model, x, None, explain, generator=torch.Generator())
    assert res.flagged is True
    assert len(res.per_map) == 2 * 3


@pytest.mark.parametrize(
    ("model", "inputs", "explain", "match"),
    [
        ("not a model", torch.zeros(1, 1, 4, 4), edges, "model must be"),
        (None, [[0.0]], edges, "inputs must be"),
        (None, torch.zeros(2, 16), edges, "inputs must be"),
        (None, torch.zeros(0, 1, 4, 4), edges, "inputs must be"),
        (None, torch.zeros(1, 1, 4, 4), "edges", "explain must be callable"),
    ],
)
def test_inputs_are_checked(model: object, inputs: object, explain: object, match: str) -> None:
    model = TinyCNN() if model is None else model
    with pytest.raises(InputError, match=match):
        cascading_randomization(model, inputs, None, explain, generator=torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(InputError, match=match):
        model_comparison(model, TinyCNN(), inputs, None, explain)  # type: ignore[arg-type]


def test_cascade_defaults_cumulative_sigma_and_no_maps() -> None:
    torch.manual_seed(2)
    model = TinyCNN()
    x = _inputs(3, seed=6)
    changed: list[int] = []
    original = {k: v.clone() for k, v in model.named_parameters()}

    def recording(m: nn.Module, inputs: Tensor, targets: Tensor | None) -> Tensor:
        moved = {
            k.rsplit(".", 1)[0] for k, v in m.named_parameters() if not torch.equal(v, original[k])
        }
        changed.append(len(moved))
        return gradcam(m, inputs, targets)

    res = cascading_randomization(
        model, x, None, recording, generator=torch.Generator().manual_seed(0)
    )
    assert changed == [0, 1, 2, 3, 4]  # cumulative by default
    assert res.maps == {}  # maps kept only on request
    assert res.summary["step"].tolist() == [1, 2, 3, 4]  # step 1: the output layer
    assert res.per_map["step"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert res.per_map["map"].tolist() == [0, 1, 2] * 4
    kept = cascading_randomization(
        model, x, None, gradcam, generator=torch.Generator().manual_seed(0), keep_maps=True
    )
    assert list(kept.maps) == ["original", "fc", "conv2", "bn1", "conv1"]
    np.testing.assert_array_equal(res.per_map.to_numpy(), kept.per_map.to_numpy())
    # SSIM with the default σ = 1.5 (or the caller's) on min-max scaled maps, per step and map
    wide = cascading_randomization(
        model, x, None, gradcam, generator=torch.Generator().manual_seed(0), ssim_sigma=2.5
    )
    for step, layer in enumerate(["fc", "conv2", "bn1", "conv1"], start=1):
        for sigma, run in ((1.5, res), (2.5, wide)):
            expected = ssim(_minmax(kept.maps["original"]), _minmax(kept.maps[layer]), sigma=sigma)
            got = run.per_map.loc[run.per_map["step"] == step, "ssim"].to_numpy()
            np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)


def test_similarity_abs_variant_constants_and_default_sigma() -> None:
    g = torch.Generator().manual_seed(8)
    a = torch.randn(3, 16, 16, generator=g)
    b = torch.randn(3, 16, 16, generator=g)
    a[1] = torch.where(a[1] > 0, 1.0, -1.0)  # not constant, but |a| is
    a[2] = 0.0  # constant
    b[2] = 0.0  # both constant: no correlation at all
    sims = similarity(a, b)
    r = spearman(a, b)
    assert sims["spearman"][0] == r[0] and sims["spearman"][1] == r[1]  # both defined
    assert torch.isnan(sims["spearman"][2])
    r_abs = spearman(a, b, absolute=True)
    assert sims["spearman_abs"][0] == r_abs[0] and r_abs[0] != r[0]
    assert sims["spearman_abs"][1] == 0.0  # |a| constant, |b| not: the map lost its ranks
    assert torch.isnan(sims["spearman_abs"][2])
    flipped = similarity(a[:1], -a[:1])
    assert flipped["spearman"].item() == pytest.approx(-1.0)
    assert flipped["spearman_abs"].item() == pytest.approx(1.0)
    np.testing.assert_allclose(
        sims["ssim"].numpy(), ssim(_minmax(a), _minmax(b), sigma=1.5).numpy(), atol=1e-6
    )
    # one constant map in a batch where the other samples vary: only that sample is zeroed
    c = b.clone()
    c[0] = 5.0
    assert similarity(a[:1], c[:1])["spearman"].item() == 0.0
    mixed = similarity(torch.stack([b[0], a[0]]), torch.stack([c[0], b[0]]))
    assert mixed["spearman"][0] == 0.0 and mixed["spearman"][1] == spearman(a[:1], b[:1])[0]


def _conv_dependent(original: dict[str, Tensor]):
    """Edges while conv1 and conv2 keep their weights, else noise: flagged only at those steps."""

    def explain(m: nn.Module, x: Tensor, targets: Tensor | None) -> Tensor:
        intact = all(
            torch.equal(v, original[k]) for k, v in m.named_parameters() if k.startswith("conv")
        )
        if intact:
            return edges(m, x, targets)
        return torch.rand(x[:, 0].shape, generator=torch.Generator().manual_seed(1))

    return explain


@pytest.mark.parametrize(
    ("cumulative", "flagged", "what"),
    [(True, False, "after full randomization"), (False, True, "with the top layer randomized")],
)
def test_verdict_step_rule_and_threshold_per_mode(
    cumulative: bool, flagged: bool, what: str
) -> None:
    """Cumulative: judged after the last step. Independent: on the top layer alone (step 1)."""
    model = TinyCNN()
    original = {k: v.clone() for k, v in model.named_parameters()}
    res = cascading_randomization(
        model,
        _inputs(2),
        None,
        _conv_dependent(original),
        generator=torch.Generator().manual_seed(0),
        cumulative=cumulative,
        threshold=0.6,
    )
    # per step: fc, conv2, bn1, conv1; the maps are the edges' only while both convs are intact
    intact = [True, False, False, False] if cumulative else [True, False, True, False]
    np.testing.assert_allclose(res.summary["spearman_mean"] > 0.6, intact)
    assert res.flagged is flagged
    assert res.threshold == 0.6
    assert res.rule == (
        "flagged if the mean Spearman or mean absolute-value Spearman correlation between the "
        f"original maps and the maps {what} exceeds 0.6"
    )


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_of_dim_maps_matches_skimage(data_range: float) -> None:
    """Values near 0 and 11-wide maps (one window position): the constants c1, c2 decide."""
    g = torch.Generator().manual_seed(9)
    for shape in ((2, 11, 11), (2, 16, 15)):
        a = 0.02 * torch.rand(shape, generator=g)
        b = 0.02 * torch.rand(shape, generator=g)
        got = ssim(a, b, data_range=data_range).numpy()
        for i in range(shape[0]):
            exp = structural_similarity(
                a[i].double().numpy(),
                b[i].double().numpy(),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=data_range,
            )
            assert got[i] == pytest.approx(exp, rel=1e-4, abs=1e-6)
    with pytest.raises(InputError, match="sigma and data_range"):
        ssim(a, b, sigma=0.0)
    with pytest.raises(InputError, match="sigma and data_range"):
        ssim(a, b, data_range=0.0)


def test_pearson_per_map_with_different_means() -> None:
    from braincam.metrics.sanity import pearson

    g = torch.Generator().manual_seed(10)
    a = torch.randn(3, 6, 7, generator=g) + torch.tensor([0.0, 5.0, -3.0])[:, None, None]
    b = a + torch.randn(3, 6, 7, generator=g) + torch.tensor([2.0, -1.0, 7.0])[:, None, None]
    expected = [np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(3)]
    np.testing.assert_allclose(pearson(a, b).numpy(), expected, atol=1e-6)
    # small amplitudes (‖x‖·‖y‖ < 1) are correlated all the same
    np.testing.assert_allclose(pearson(1e-3 * a, 1e-3 * b).numpy(), expected, atol=1e-6)


# ---------------------------------------------------------------- cascade granularity (issue 17)


class StagedCNN(nn.Module):
    """A backbone of stages (stem, stage1, stage2) and a head, like the registry's models."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            OrderedDict(
                stem=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                stage1=nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()),
                stage2=nn.Sequential(
                    nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 1), nn.ReLU()
                ),
            )
        )
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x).flatten(2).mean(-1))


def _randomized_per_call(model: nn.Module, cascade: str) -> tuple[list[set[str]], object]:
    """Run the cascade with an explainer that records, at each call, which parameter layers
    differ from the original weights."""
    original = {k: v.clone() for k, v in model.named_parameters()}
    calls: list[set[str]] = []

    def recording(m: nn.Module, inputs: Tensor, targets: Tensor | None) -> Tensor:
        params = m.named_parameters()
        calls.append({k.rsplit(".", 1)[0] for k, v in params if not torch.equal(v, original[k])})
        return edges(m, inputs, targets)

    res = cascading_randomization(
        model, _inputs(2), None, recording, generator=torch.Generator().manual_seed(0),
        cascade=cascade,  # type: ignore[arg-type]
    )  # fmt: skip
    return calls, res


@pytest.mark.parametrize("cascade", ["layers", "blocks", "full"])
def test_every_cascade_ends_with_every_parameter_randomized(cascade: str) -> None:
    torch.manual_seed(0)
    model = StagedCNN()
    layers = parameter_layers(model, _inputs(1))
    calls, res = _randomized_per_call(model, cascade)
    assert calls[0] == set()  # the original maps: nothing randomized yet
    assert calls[-1] == set(layers)  # the judged step: every parameter layer changed
    # each step adds exactly its own layers (cumulative), top of the network first
    steps = {"layers": len(layers), "blocks": 4, "full": 1}[cascade]
    assert len(calls) == 1 + steps and len(res.summary) == steps
    for before, after in itertools.pairwise(calls):
        assert before < after


def test_full_cascade_is_one_step_and_blocks_partition_the_layers_in_order() -> None:
    model = StagedCNN()
    layers = parameter_layers(model, _inputs(1))
    assert layers == [
        "backbone.stem.0", "backbone.stem.1", "backbone.stage1.0", "backbone.stage2.0",
        "backbone.stage2.2", "head",
    ]  # fmt: skip
    full = cascade_steps(model, layers, "full")
    assert full == [("all", list(reversed(layers)))]
    blocks = cascade_steps(model, layers, "blocks")
    assert blocks == [
        ("head", ["head"]),
        ("backbone.stage2", ["backbone.stage2.2", "backbone.stage2.0"]),
        ("backbone.stage1", ["backbone.stage1.0"]),
        ("backbone.stem", ["backbone.stem.1", "backbone.stem.0"]),
    ]
    # concatenated, the steps are the per-layer cascade's order: a partition, in order
    assert [n for _, members in blocks for n in members] == list(reversed(layers))
    assert cascade_steps(model, layers, "layers") == [(n, [n]) for n in reversed(layers)]
    calls, res = _randomized_per_call(model, "blocks")
    assert list(res.summary["layer"]) == [name for name, _ in blocks]
    assert [sorted(b - a) for a, b in itertools.pairwise(calls)] == [
        sorted(members) for _, members in blocks
    ]
    with pytest.raises(InputError, match="cascade must be one of"):
        cascade_steps(model, layers, "stages")  # type: ignore[arg-type]


def test_parameter_blocks_of_a_flat_model_are_its_layers() -> None:
    """TinyCNN has no wrapper child holding most layers: each layer is its own block."""
    model = TinyCNN()
    layers = parameter_layers(model, _inputs(1))
    assert parameter_blocks(model, layers) == {name: name for name in layers}


@pytest.mark.parametrize(
    ("name", "size", "steps", "first", "last"),
    [
        ("resnet50-gap", 97, 6, "head", "backbone.conv1"),
        ("googlenet-gap", 111, 11, "head", "backbone.conv1"),
        ("inceptionv3-gap", 139, 14, "head", "backbone.Conv2d_1a_3x3"),
    ],
)
def test_blocks_of_the_deep_study_networks(
    name: str, size: int, steps: int, first: str, last: str
) -> None:
    """The networks whose per-layer cascade took 4–9 min: 6–14 block steps instead of 88–142."""
    from braincam.models import build_model

    model = build_model(name, in_channels=1, num_classes=2).eval()
    layers = parameter_layers(model, torch.zeros(1, 1, size, size))
    got = cascade_steps(model, layers, "blocks")
    assert len(layers) >= 88 and len(got) == steps
    assert (got[0][0], got[-1][0]) == (first, last)
    assert [n for _, members in got for n in members] == list(reversed(layers))


@pytest.mark.parametrize("cascade", ["blocks", "full"])
def test_coarse_cascades_flag_what_the_per_layer_cascade_flags(
    cascade: str, trained: TinyCNN
) -> None:
    """Known yes (an explainer that ignores the weights) and known no (Grad-CAM on a trained
    model): the same flag and the same final figures as the per-layer cascade, since the last
    step randomizes every layer with the same draws in the same order."""
    x, targets = _toy_data(6, seed=3)
    for explain, inputs, model, expected in (
        (edges, _inputs(), TinyCNN(), True),
        (gradcam, x, trained, False),
    ):
        runs = {
            mode: cascading_randomization(
                model,
                inputs,
                targets if explain is gradcam else None,
                explain,
                generator=torch.Generator().manual_seed(1),
                cascade=mode,  # type: ignore[arg-type]
            )
            for mode in ("layers", cascade)
        }
        assert runs["layers"].flagged is expected and runs[cascade].flagged is expected
        coarse, fine = runs[cascade].summary.iloc[-1], runs["layers"].summary.iloc[-1]
        for column in ("spearman_mean", "spearman_abs_mean", "ssim_mean"):
            assert coarse[column] == pytest.approx(fine[column], abs=1e-6), column
    # TinyCNN is flat: its blocks are its four layers; "full" is one step
    assert len(runs[cascade].summary) == {"blocks": 4, "full": 1}[cascade]


def test_unknown_cascade_is_refused_before_any_forward_pass() -> None:
    def never(m: nn.Module, inputs: Tensor, targets: Tensor | None) -> Tensor:
        raise AssertionError("explained")

    with pytest.raises(InputError, match="cascade must be one of"):
        cascading_randomization(
            TinyCNN(),
            _inputs(2),
            None,
            never,
            generator=torch.Generator(),
            cascade="stages",  # type: ignore[arg-type]
        )
