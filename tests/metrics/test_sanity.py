"""Sanity checks (Adebayo et al., 2018): similarity measures, cascading randomization, flag."""

from __future__ import annotations

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
    cascading_randomization,
    model_comparison,
    parameter_layers,
    rankdata,
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
    with pytest.raises(InputError, match="same shape"):
        spearman(torch.rand(1, 8, 8), torch.rand(1, 8, 9))


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
