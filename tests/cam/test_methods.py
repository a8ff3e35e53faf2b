"""CAM engine maths: hand-computed formulas, CAM ≡ Grad-CAM for GAP+linear, batch invariance,
3-D by hand with depth 2 (and the degenerate depth-1 case against 2-D), Score-CAM chunking."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from braincam.cam import (
    METHODS,
    CAMMethod,
    compute_cams,
    get_method,
    make_method,
    normalize_maps,
    register_method,
    unregister_method,
    upsample_maps,
)
from braincam.errors import InputError, ModelError
from builders.cam_nets import FAST, gap_net, images

ALL = list(METHODS)


def lift_to_3d(net2d: nn.Sequential) -> nn.Sequential:
    """The same net with 3-D layers, (1, k, k) kernels: on a depth-1 input it is the 2-D net."""
    c0, c2, b3, fc = net2d[0], net2d[2], net2d[3], net2d[7]
    net = nn.Sequential(
        nn.Conv3d(c0.in_channels, 4, (1, 3, 3), padding=(0, 1, 1)),
        nn.ReLU(inplace=True),
        nn.Conv3d(4, 6, (1, 3, 3), padding=(0, 1, 1), stride=(1, 2, 2)),
        nn.BatchNorm3d(6),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(6, fc.out_features),
    )
    with torch.no_grad():
        for src, dst in ((c0, net[0]), (c2, net[2])):
            dst.weight.copy_(src.weight.unsqueeze(2))
            dst.bias.copy_(src.bias)
        net[3].load_state_dict(b3.state_dict())
        net[7].load_state_dict(fc.state_dict())
    net.cam_layer = "4"  # type: ignore[assignment]
    net.classifier_layer = "7"  # type: ignore[assignment]
    return net


# -- hand-computable cases ---------------------------------------------------------------------
def hand_case() -> tuple[nn.Sequential, torch.Tensor]:
    """The layer is an Identity on a known 2×2×2 activation A; the score is Σ V·A, so g = V."""
    a = torch.tensor([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    v = torch.tensor([[[1.0, 0.5], [-1.0, 0.0]], [[2.0, 2.0], [0.0, 0.0]]])
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0] = v.flatten()
    return model, a.unsqueeze(0)


def test_gradcampp_matches_eq19_by_hand() -> None:
    """α = g² / (2g² + ΣA·g³), w = Σ α·relu(g), worked out on paper:

    channel 0 (ΣA = 6): g=1 → α = 1/(2+6) = 1/8; g=0.5 → α = 0.25/(0.5+0.75) = 0.2;
    g=-1 and g=0 contribute nothing (relu); w0 = 1·1/8 + 0.5·0.2 = 0.225.
    channel 1 (ΣA = 2): g=2 → α = 4/(8+16) = 1/6 at two positions; w1 = 2·(2·1/6) = 2/3.
    map = 0.225·A0 + 2/3·A1.
    """
    model, x = hand_case()
    raw = make_method(model, "gradcampp", layer="0")(x, targets=0, upsample=False).raw[0]
    expected = torch.tensor([[0.225, 0.45 + 2 / 3], [0.675 + 2 / 3, 0.0]])
    assert torch.allclose(raw, expected, atol=1e-6)
    # torch-cam's bug (α's denominator never applied) would give w = Σ g²·relu(g) instead:
    no_denominator = torch.tensor([[1.125, 2.25 + 16], [3.375 + 16, 0.0]])
    assert not torch.allclose(raw, no_denominator, atol=1e-3)


def test_other_methods_by_hand() -> None:
    model, x = hand_case()

    def raw(method: str) -> torch.Tensor:
        cam = make_method(model, method, layer="0")
        return cam(x, targets=0, upsample=False, relu=False).raw[0]

    # Grad-CAM: w = mean g = (0.5/4, 4/4) = (0.125, 1)
    assert torch.allclose(raw("gradcam"), torch.tensor([[0.125, 1.25], [1.375, 0.0]]))
    # HiResCAM: Σ_k g⊙A = [[1, 1+2], [-3, 0]]; LayerCAM: Σ_k relu(g)⊙A = [[1, 3], [0, 0]]
    assert torch.allclose(raw("hirescam"), torch.tensor([[1.0, 3.0], [-3.0, 0.0]]))
    assert torch.allclose(raw("layercam"), torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    # XGrad-CAM: w0 = (1+1-3)/6 = -1/6, w1 = (2+0)/2 = 1
    xg = torch.tensor([[-1 / 6, -2 / 6 + 1], [-3 / 6 + 1, 0.0]])
    assert torch.allclose(raw("xgradcam"), xg, atol=1e-6)


def test_cam_by_hand() -> None:
    """CAM = Σ_k W[c,k] A_k with A known through an Identity layer before GAP."""
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[3].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    res = make_method(model, "cam", layer="0")(a, targets=[1], upsample=False, relu=False)
    assert torch.allclose(res.raw[0], torch.tensor([[0.5, 4.0], [1.5, 5.0]]))


# -- CAM and Grad-CAM ------------------------------------------------------------------------
def test_gradcam_equals_cam_up_to_a_positive_factor_for_gap_linear() -> None:
    model, x = gap_net(), images(6)
    targets = [0, 1, 2, 2, 1, 0]
    cam = make_method(model, "cam")(x, targets, relu=False, upsample=False).raw
    grad = make_method(model, "gradcam")(x, targets, relu=False, upsample=False).raw
    positions = cam[0].numel()  # ∂S/∂A = W[c,k] / P for global average pooling
    assert torch.allclose(cam, grad * positions, atol=1e-5)
    assert (cam.abs() > 1e-3).any()
    norm_cam = compute_cams(model, x, "cam", targets=targets)
    norm_grad = compute_cams(model, x, "gradcam", targets=targets)
    assert torch.allclose(norm_cam, norm_grad, atol=1e-5)


def test_gradcam_equals_cam_and_hirescam_keeps_the_maxima_for_a_gmp_head() -> None:
    """Global max pooling: ∂S/∂A_k is W[c,k] at channel k's maximum and 0 elsewhere, so Grad-CAM
    is CAM (Σ_k W[c,k] A_k) over the grid size, and HiResCAM is W[c,k] A_k at the maxima only."""
    import warnings

    from braincam.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("smallcnn-gmp", in_channels=1, num_classes=2, dropout=0.0).double().eval()
    x = torch.randn(3, 1, 32, 32, dtype=torch.float64)
    targets = [0, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CAM warns that a max-pooling head is not its own
        cam = make_method(model, "cam")(x, targets, relu=False, upsample=False).raw
    grad = make_method(model, "gradcam")(x, targets, relu=False, upsample=False).raw
    assert torch.allclose(cam, grad * cam[0].numel(), atol=1e-9)
    hires = make_method(model, "hirescam")(x, targets, relu=False, upsample=False).raw
    feats = {}
    hook = model.get_submodule("head.conv").register_forward_hook(
        lambda _m, _i, out: feats.update(a=out.detach())
    )
    model(x)
    hook.remove()
    a = feats["a"]  # (N, K, H, W)
    w = model.get_submodule("head.fc").weight.detach()[targets]  # (N, K)
    flat = a.flatten(2)
    at_max = torch.zeros_like(flat).scatter_(2, flat.argmax(2, keepdim=True), 1.0)
    by_hand = ((w[:, :, None] * flat * at_max).sum(1)).view_as(hires)
    assert torch.allclose(hires, by_hand, atol=1e-9)
    assert not torch.allclose(hires, cam, atol=1e-6)  # not CAM: only the maxima count


# -- batch invariance ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL)
def test_mixed_targets_batch_equals_one_by_one(method: str) -> None:
    model, x = gap_net(), images(4)
    targets = [2, 0, 1, 2]
    kwargs = {"batch_size": 5} if method == "scorecam" else FAST.get(method, {})
    together = compute_cams(model, x, method, targets=targets, **kwargs)
    for i, t in enumerate(targets):
        alone = compute_cams(model, x[i : i + 1], method, targets=t, **kwargs)
        assert torch.allclose(together[i], alone[0], atol=1e-5), (method, i)
    if method != "eigencam":  # class-agnostic
        other = compute_cams(model, x, method, targets=[(t + 1) % 3 for t in targets], **kwargs)
        assert not torch.allclose(together, other, atol=1e-3)


# -- 3-D -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL)
def test_every_method_runs_in_3d(method: str) -> None:
    model = gap_net(dim=3)
    x = torch.randn(2, 1, 8, 10, 6, generator=torch.Generator().manual_seed(3))
    res = make_method(model, method, **FAST.get(method, {}))(x, targets=[0, 2])
    assert res.maps.shape == (2, 8, 10, 6)
    at_input = method in ("fullgrad", "intgrad")  # whole network / input attributions
    assert res.raw.shape == ((2, 8, 10, 6) if at_input else (2, 4, 5, 3))
    assert torch.isfinite(res.maps).all()
    assert float(res.maps.max()) == 1.0 and float(res.maps.min()) == 0.0


@pytest.mark.parametrize("method", ALL)
def test_depth_one_3d_matches_2d(method: str) -> None:
    net2d = gap_net()
    net3d = lift_to_3d(net2d)
    x = images(3)
    targets = [1, 0, 2]
    kw = FAST.get(method, {})
    out2d = make_method(net2d, method, **kw)(x, targets)
    out3d = make_method(net3d, method, **kw)(x.unsqueeze(2), targets)
    assert torch.allclose(out3d.outputs, out2d.outputs, atol=1e-5)
    assert out3d.maps.shape == (3, 1, 12, 12)
    assert torch.allclose(out3d.raw[:, 0], out2d.raw, atol=1e-5)
    assert torch.allclose(out3d.maps[:, 0], out2d.maps, atol=1e-5)


def hand_case_3d() -> tuple[nn.Sequential, torch.Tensor]:
    """As :func:`hand_case`, in 3-D with depth 2: a known (2, 2, 2, 2) activation whose two
    depth planes differ, and the score Σ V·A (so g = V); an error along depth changes the map."""
    a = torch.tensor(
        [
            [[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [2.0, 4.0]]],  # channel 0: depth 0, depth 1
            [[[0.0, 1.0], [1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]]],  # channel 1
        ]
    )
    v = torch.tensor(
        [
            [[[1.0, 0.5], [-1.0, 0.0]], [[0.0, 2.0], [0.5, 0.0]]],
            [[[2.0, 2.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, -1.0]]],
        ]
    )
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(16, 2, bias=False))
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0] = v.flatten()
    return model, a.unsqueeze(0)


def test_3d_methods_with_depth_two_by_hand() -> None:
    """Worked out on paper (ΣA: channel 0 = 13, channel 1 = 5; Σg: 3 and 4 over 8 voxels)."""
    model, x = hand_case_3d()

    def raw(method: str) -> torch.Tensor:
        cam = make_method(model, method, layer="0")
        res = cam(x, targets=0, upsample=False, relu=False)
        assert res.raw.shape == (1, 2, 2, 2)
        return res.raw[0]

    def t(depth0: list, depth1: list) -> torch.Tensor:
        return torch.tensor([depth0, depth1])

    # Grad-CAM: w = mean g over the 8 voxels = (3/8, 4/8)
    gradcam = t([[0.375, 1.25], [1.625, 0.0]], [[1.0, 0.375], [0.75, 2.0]])
    assert torch.allclose(raw("gradcam"), gradcam)
    # HiResCAM: Σ_k g⊙A; LayerCAM: Σ_k relu(g)⊙A (the g = -1 at A = 1 drops out)
    assert torch.allclose(raw("hirescam"), t([[1.0, 3.0], [-3.0, 0.0]], [[0.0, 2.0], [1.0, -1.0]]))
    assert torch.allclose(raw("layercam"), t([[1.0, 3.0], [0.0, 0.0]], [[0.0, 2.0], [1.0, 0.0]]))
    # XGrad-CAM: w0 = Σ g·A / ΣA = 2/13, w1 = 1/5
    xg = t(
        [[2 / 13, 4 / 13 + 1 / 5], [6 / 13 + 1 / 5, 0.0]],
        [[2 / 5, 2 / 13], [4 / 13, 8 / 13 + 1 / 5]],
    )
    assert torch.allclose(raw("xgradcam"), xg, atol=1e-6)
    # Grad-CAM++: α = g² / (2g² + ΣA·g³) with ΣA over all 8 voxels of the channel;
    # channel 0: g=1 → 1/15; g=0.5 (twice) → 0.25/2.125 = 2/17, ·0.5 each; g=2 → 4/112, ·2
    w0 = 1 / 15 + 2 * (2 / 17) * 0.5 + 2 / 28
    # channel 1: g=2 (twice) → 4/48, ·2 each; g=1 → 1/7
    w1 = 2 * (2 / 12) + 1 / 7
    a0, a1 = x[0, 0], x[0, 1]
    assert torch.allclose(raw("gradcampp"), w0 * a0 + w1 * a1, atol=1e-6)
    # the same with ΣA taken per depth plane (an error along depth) would differ
    assert not torch.allclose(raw("gradcampp"), 0.1 * a0 + w1 * a1, atol=1e-3)
    # normalized maps: rectified, then divided by the max (min 0), plane by plane unchanged
    maps = make_method(model, "hirescam", layer="0")(x, targets=0).maps[0]
    expected = t([[1.0, 3.0], [0.0, 0.0]], [[0.0, 2.0], [1.0, 0.0]]) / 3
    assert torch.allclose(maps, expected, atol=1e-6)


def test_3d_cam_with_depth_two_by_hand() -> None:
    """CAM = Σ_k W[c,k] A_k on a known depth-2 activation before 3-D global average pooling."""
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[3].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    _, x = hand_case_3d()
    res = make_method(model, "cam", layer="0")(x, targets=[1], upsample=False, relu=False)
    # 0.5·A0 + 3·A1, depth 0 then depth 1
    expected = torch.tensor([[[0.5, 4.0], [4.5, 0.0]], [[6.0, 0.5], [1.0, 5.0]]])
    assert torch.allclose(res.raw[0], expected)
    res0 = make_method(model, "cam", layer="0")(x, targets=[0], upsample=False, relu=False)
    # 1·A0 - 2·A1
    expected0 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[-4.0, 1.0], [2.0, 2.0]]])
    assert torch.allclose(res0.raw[0], expected0)


def test_zero_denominators_give_zero_weights_not_nan() -> None:
    """0/0 := 0 without an epsilon: XGrad-CAM on a channel whose activation sums to 0, and
    Grad-CAM++'s α where g = 0, contribute exactly nothing."""
    model, x = hand_case()
    x = x.clone()
    x[0, 1] = 0.0  # channel 1 silent: ΣA = 0 there
    for method in ("xgradcam", "gradcampp"):
        raw = make_method(model, method, layer="0")(x, targets=0, upsample=False, relu=False).raw
        assert torch.isfinite(raw).all(), method
    xg = make_method(model, "xgradcam", layer="0")(x, targets=0, upsample=False, relu=False)
    # channel 0 alone: w0 = (1 + 1 - 3)/6 = -1/6 (channel 1's weight is 0, its A is 0 anyway)
    assert torch.allclose(xg.raw[0], -x[0, 0] / 6, atol=1e-6)
    # Grad-CAM++ with g = 0 everywhere in channel 1 (its V row zeroed): α = 0/0 := 0
    with torch.no_grad():
        model[2].weight[0, 4:] = 0.0
    _, a = hand_case()
    pp = make_method(model, "gradcampp", layer="0")(a, targets=0, upsample=False).raw[0]
    assert torch.allclose(pp, 0.225 * a[0, 0], atol=1e-6)  # channel 0's weight from eq. 19


# -- Score-CAM -------------------------------------------------------------------------------
def test_scorecam_chunking_does_not_change_the_result() -> None:
    model, x = gap_net(), images(3)
    results = [
        compute_cams(model, x, "scorecam", targets=[0, 1, 2], batch_size=b, normalize=False)
        for b in (1, 4, 7, 10_000)
    ]
    for other in results[1:]:
        assert torch.allclose(results[0], other, atol=1e-6)
    assert float(results[0].max()) > 0


def test_scorecam_weights_are_softmax_of_masked_scores() -> None:
    """One input, two channels, an Identity layer: recompute the weights by hand."""
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[2].weight.copy_(torch.arange(16.0).view(2, 8) / 10)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 0.0], [0.0, 2.0]]]])
    raw = make_method(model, "scorecam", layer="0")(x, targets=1, relu=False).raw[0]
    w = model[2].weight[1].detach().view(2, 2, 2)
    scores = []
    for k in range(2):
        mask = (x[0, k] - x[0, k].min()) / (x[0, k].max() - x[0, k].min())
        scores.append(float((w * (x[0] * mask)).sum()))
    alpha = torch.softmax(torch.tensor(scores), dim=0)
    assert torch.allclose(raw, alpha[0] * x[0, 0] + alpha[1] * x[0, 1], atol=1e-5)


def test_eigencam_is_first_principal_component_oriented_with_activation() -> None:
    """Rank-one activation A_k = u·c_k (+ offsets): the map is ∝ u − mean(u), sign fixed."""
    u = torch.tensor([[0.0, 1.0, 4.0], [2.0, 0.5, 3.0]])
    c = torch.tensor([1.0, 2.0, 0.5])
    act = (c.view(3, 1, 1) * u + torch.tensor([0.3, -1.0, 2.0]).view(3, 1, 1)).unsqueeze(0)
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    raw = make_method(model, "eigencam", layer="0")(act, relu=False).raw[0]
    centred = u - u.mean()
    ratio = raw / centred
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-4)
    assert float(ratio.flatten()[0]) > 0  # high activation → high map
    flipped = make_method(model, "eigencam", layer="0")(-act, relu=False).raw[0]
    assert torch.allclose(flipped, -raw, atol=1e-4)  # orientation follows the activation


def _centred(n: int, p: int, k: int, gap: float, seed: int) -> torch.Tensor:
    """(n, p, k) matrices with singular values 0.5·(1, ``gap``, 0.3·gap, ...) (known)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        u, _ = torch.linalg.qr(torch.randn(p, min(p, k), generator=gen, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(k, min(p, k), generator=gen, dtype=torch.float64))
        r = min(p, k)
        # σ₁ = 0.5 (< 1: a length clamped at 1 would show)
        sv = 0.5 * torch.tensor([1.0, gap] + [0.3 * gap] * (r - 2), dtype=torch.float64)[:r]
        out.append(u @ torch.diag(sv) @ v.T)
    return torch.stack(out)


@pytest.mark.parametrize(("p", "k"), [(6, 9), (9, 6), (7, 7)])
def test_first_component_is_the_svd_projection_with_its_length(p: int, k: int) -> None:
    """Both paths (Gram over positions when P ≤ K, over channels otherwise) give X·v₁ = σ₁·u₁,
    up to sign, magnitude included, with a small spectral gap (0.9) that an approximate
    eigensolver (e.g. a power iteration stopped early) would get visibly wrong."""
    from braincam.cam.methods.core import _first_component

    mat = _centred(3, p, k, gap=0.9, seed=p * 10 + k).float()
    proj = _first_component(mat)
    assert proj.shape == (3, p)
    for i in range(3):
        u, sv, _ = torch.linalg.svd(mat[i].double())
        ref = u[:, 0] * sv[0]
        sign = torch.sign((proj[i] * ref).sum())
        assert sign != 0
        assert torch.allclose(proj[i].double() * sign, ref, atol=1e-5), (p, k, i)
    one = _first_component(mat[:1])
    assert one.shape == (1, p) and torch.allclose(one, proj[:1], atol=1e-6)
    assert torch.equal(_first_component(torch.zeros(2, p, k)), torch.zeros(2, p, dtype=proj.dtype))


def test_eigencam_orients_each_sample_on_its_own_and_keeps_the_dtype() -> None:
    """Two samples with opposite activations (their first components equal up to sign): each
    map correlates positively with its own channel-mean activation, whether the power
    iteration runs over positions (fewer positions than channels) or over channels; the map
    has the activation's dtype."""
    gen = torch.Generator().manual_seed(4)
    for positions, channels in (((2, 2), 8), ((3, 4), 3)):
        u = torch.rand(*positions, generator=gen) * 4
        c = torch.rand(channels, generator=gen) + 0.5
        act = c.view(-1, 1, 1) * u + 0.1 * torch.rand(channels, *positions, generator=gen)
        batch = torch.stack([act, -act])
        layer = nn.Identity()
        model = nn.Sequential(layer, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 2))
        raw = make_method(model, "eigencam", layer="0")(batch, relu=False).raw
        assert raw.dtype == torch.float32
        for i in range(2):
            mean_act = batch[i].mean(dim=0)
            centred = mean_act - mean_act.mean()
            assert float((raw[i] * centred).sum()) > 0, (positions, i)
        assert torch.allclose(raw[1], -raw[0], atol=1e-4)


def test_result_records_the_explained_classes_and_repr_names_the_layer() -> None:
    model, x = gap_net(), images(3)
    res = make_method(model, "gradcam")(x, targets=[2, 0, 1])
    assert res.classes is not None and res.classes.tolist() == [2, 0, 1]
    predicted = make_method(model, "cam")(x)
    assert predicted.classes.tolist() == predicted.outputs.argmax(1).tolist()
    # EigenCAM is class-agnostic: no targets resolved, no classes recorded
    assert make_method(model, "eigencam")(x).classes is None
    assert repr(make_method(model, "gradcam")) == "GradCAM(layer='4')"
    assert repr(make_method(model, "scorecam", layer="2")) == "ScoreCAM(layer='2')"


class _Unused(nn.Module):
    """``conv`` runs in the forward pass but the output does not depend on it; ``skipped``
    never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.skipped = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        scale = torch.ones((), requires_grad=True)  # a graph, but not through the layer
        return self.fc(x.mean(dim=(2, 3))) * scale


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam"])
def test_an_unused_layer_is_a_model_error_naming_it(method: str) -> None:
    with pytest.raises(ModelError, match="the model output does not depend on layer 'conv'"):
        make_method(_Unused(), method, layer="conv")(images(2))


@pytest.mark.parametrize("method", ["gradcam", "cam", "eigencam"])
def test_a_layer_that_never_runs_is_named(method: str) -> None:
    with pytest.raises(ModelError, match="layer 'skipped' did not run during the forward pass"):
        make_method(_Unused(), method, layer="skipped")(images(2), targets=0)


def test_cam_classifier_errors_name_the_classifier() -> None:
    net = gap_net()  # 6 channels at layer "4" → Linear(6, 3) at "7"
    with pytest.raises(ModelError, match="classifier 'nope' is not in the model"):
        make_method(net, "cam", classifier="nope")
    with pytest.raises(ModelError, match=r"classifier '2' is Conv2d, not nn\.Linear"):
        make_method(net, "cam", classifier="2")
    # a Linear whose inputs do not match the layer's channels, named in the message
    with pytest.raises(ModelError, match=r"classifier '7' takes 6 features but layer '1'"):
        make_method(net, "cam", layer="1", classifier="7")(images(2), targets=0)
    # a classifier with fewer outputs (3) than the model (5): target 3 is the model's, not its
    # (6 features: a check against the wrong axis would let it through)
    wider = nn.Sequential(*net, nn.Linear(3, 5))
    with pytest.raises(InputError, match="target class out of range for classifier '7' with 3"):
        make_method(wider, "cam", layer="4", classifier="7")(images(2), targets=[0, 3])
    bare = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(
        ModelError, match=r"exactly one nn\.Linear after global pooling, found none"
    ):
        make_method(bare, "cam", layer="1")(images(2), targets=0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True])
def test_scorecam_batch_size_must_be_a_positive_integer(bad: object) -> None:
    from braincam.errors import InputError as Input

    with pytest.raises(Input, match="batch_size must be a positive integer"):
        make_method(gap_net(), "scorecam", batch_size=bad)


# --------------------------------------------------------------------------- open registry


class ChannelMean(CAMMethod):
    """A user's method: the mean activation over channels (class-agnostic)."""

    name = "channelmean"
    uses_targets = False

    def _compute(self, session, x, outputs, targets):  # type: ignore[no-untyped-def]
        return session.activation.mean(dim=1)


@pytest.fixture
def user_method() -> Iterator[str]:
    register_method(ChannelMean)
    yield "channelmean"
    unregister_method("channelmean")
    assert "channelmean" not in METHODS


def test_registered_method_is_computed_by_name(user_method: str) -> None:
    net, x = gap_net(), images()
    assert METHODS[user_method] is ChannelMean and get_method("Channel-Mean") is ChannelMean
    maps = compute_cams(net, x, user_method, layer="2", upsample=False, normalize=False)
    act = net[:3](x)  # conv → ReLU → conv: the layer "2"
    torch.testing.assert_close(maps, act.mean(1).clamp_min(0))
    assert isinstance(make_method(net, user_method, layer="2"), ChannelMean)


def test_registered_method_passes_config_validation(user_method: str) -> None:
    from braincam.config import CamEvalConfig, parse_config
    from braincam.errors import ConfigError

    cfg = parse_config({"models": ["m"], "synth": {}, "cams": {"methods": ["cam", user_method]}})
    assert cfg.cams.eval_config(seed=0).methods == ("cam", user_method)
    assert CamEvalConfig(methods=(user_method,)).methods == (user_method,)
    unknown = r"cams\.methods: unknown CAM method\(s\) \['nope'\]"
    with pytest.raises(ConfigError, match=unknown) as e:
        parse_config({"models": ["m"], "synth": {}, "cams": {"methods": ["nope"]}})
    assert user_method in str(e.value) and "gradcampp" in str(e.value)  # the valid names


def test_duplicate_and_bad_method_registrations_are_refused(user_method: str) -> None:
    class Again(ChannelMean):
        pass

    with pytest.raises(ModelError, match="'channelmean' is already registered"):
        register_method(Again)
    with pytest.raises(ModelError, match="'gradcam' is already registered"):
        register_method(Again, name="gradcam")
    assert METHODS["gradcam"].__name__ == "GradCAM"  # the built-in entry is untouched
    with pytest.raises(ModelError, match="lower case"):
        register_method(Again, name="Channel-Mean-2")
    for bad in ("", 7, "grad cam", "my_cam"):
        with pytest.raises(ModelError, match=r"lower case without .*, got "):
            register_method(Again, name=bad)  # type: ignore[arg-type]
    assert "" not in METHODS
    with pytest.raises(ModelError, match="CAMMethod subclass"):
        register_method(nn.Conv2d)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="built in"):
        unregister_method("gradcam")


def test_register_method_as_decorator_with_a_name() -> None:
    @register_method(name="meanmap")
    class MeanMap(ChannelMean):
        pass

    try:
        assert METHODS["meanmap"] is MeanMap and MeanMap.name == "meanmap"
        assert compute_cams(gap_net(), images(), "meanmap", layer="2").shape == (4, 12, 12)
    finally:
        unregister_method("meanmap")


def test_eigencam_without_an_orientation_keeps_the_component() -> None:
    """Channels that cancel (A₂ = 3 − A₁): the channel-mean activation is flat, so no sign can
    be read from it; the map is the component as found, not zeroed."""
    u = torch.tensor([[0.0, 1.0, 4.0], [2.0, 0.5, 3.0]])
    act = torch.stack([u, 3.0 - u]).unsqueeze(0)
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    raw = make_method(model, "eigencam", layer="0")(act, relu=False).raw[0]
    centred = u - u.mean()
    ratio = raw / centred
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-4)
    # |projection| = √2·|u − mean u| (the component is (1, −1)/√2 in channel space)
    assert float(ratio.flatten()[0].abs()) == pytest.approx(2**0.5, abs=1e-4)


def test_eigencam_orientation_is_the_sign_of_the_covariance_with_the_mean_activation() -> None:
    """An activation (found by search) where the projection's covariance with the channel-mean
    activation and a ratio-based reading disagree in sign: the map follows the covariance."""
    act = torch.tensor(
        [[[0.0, 0.0], [3.0, 1.0]], [[4.0, 1.0], [1.0, 0.0]], [[2.0, 4.0], [4.0, 3.0]]]
    ).unsqueeze(0)
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    raw = make_method(model, "eigencam", layer="0")(act, relu=False).raw[0]
    centred = act[0] - act[0].mean(dim=(1, 2), keepdim=True)
    mean_act = centred.mean(dim=0)
    assert float((raw * mean_act).sum()) > 0
    assert float((raw / mean_act).sum()) < 0  # the input does tell the two readings apart


def dead_channel_net() -> nn.Sequential:
    """gap_net whose target layer (after ReLU) has channels that are zero on every input."""
    model = gap_net(seed=3)
    with torch.no_grad():
        model[3].bias[:3] = -1e3  # BN shift: channels 0–2 are 0 after the ReLU, for any input
    return model.eval()  # the CAM engine evaluates in eval mode; so does the hand computation


def scorecam_by_hand(model: nn.Module, x: torch.Tensor, targets: list[int], scales: list[float]):
    """Score-CAM / IS-CAM from the definition: every (sample, channel) masked input run."""
    acts: list[torch.Tensor] = []
    handle = model[4].register_forward_hook(lambda m, i, o: acts.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    act = acts[0]
    maps = []
    for i, t in enumerate(targets):
        masks = normalize_maps(upsample_maps(act[i], x.shape[2:]))
        with torch.no_grad():
            s = [
                sum(float(model(x[i : i + 1] * (c * masks[k]))[0, t]) for c in scales) / len(scales)
                for k in range(act.shape[1])
            ]
        w = torch.softmax(torch.tensor(s, dtype=act.dtype), dim=0)
        maps.append(torch.relu((w.view(-1, 1, 1) * act[i]).sum(0)))
    return torch.stack(maps)


@pytest.mark.parametrize(("method", "scales"), [("scorecam", [1.0]), ("iscam", [0.5, 1.5])])
def test_dead_channels_share_one_forward_and_change_nothing(
    method: str, scales: list[float]
) -> None:
    model, x = dead_channel_net(), images(3)
    targets = [0, 2, 1]
    calls: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    options = {"num_samples": 2} if method == "iscam" else {}
    got = compute_cams(
        model, x, method, targets=targets, batch_size=4, normalize=False, upsample=False, **options
    )
    handle.remove()
    torch.testing.assert_close(
        got, scorecam_by_hand(model, x, targets, scales), atol=1e-5, rtol=1e-5
    )
    assert float(got.max()) > 0
    # 3 samples × 3 live channels × views, plus the zero image once, plus the clean forward:
    # the 9 dead (sample, channel) pairs cost one forward of one image, not 9 per view
    views = len(scales)
    assert sum(calls) == 3 + 1 + 3 * 3 * views


# -- the base class's plumbing: eigensolver, layouts, fusion grid, aug_smooth (issue 19) -------
def test_first_component_decomposes_the_smaller_gram_matrix_on_one_thread(monkeypatch) -> None:
    """The eigendecomposition runs on the smaller of XXᵀ (P×P) and XᵀX (K×K), with one thread
    (LAPACK's threads collapse on a shared CPU), and the caller's thread count comes back."""
    from braincam.cam.methods.core import _first_component

    seen: list[tuple[tuple[int, ...], int]] = []
    eigh = torch.linalg.eigh

    def spy(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append((tuple(gram.shape), torch.get_num_threads()))
        return eigh(gram)

    monkeypatch.setattr(torch.linalg, "eigh", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for p, k in ((6, 9), (9, 6)):
            mat = _centred(2, p, k, gap=0.5, seed=p).float()
            proj = _first_component(mat)
            assert proj.shape == (2, p)
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    assert seen == [((2, 6, 6), 1), ((2, 6, 6), 1)]


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class _ToTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)  # (N, H·W, C)


class _TokenMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def test_layout_and_reshape_reach_the_hooked_layer() -> None:
    """A layer laid out channels-last (8 channels on an 8×8 grid: read as channels-first unless
    declared) and a token layer (never guessed: needs reshape=) give the maps of the same
    network laid out channels-first."""
    torch.manual_seed(0)
    fc = nn.Linear(8, 3)
    x = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    first = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    want = make_method(first, "gradcam", layer="0")(x, [0, 2], upsample=False).raw
    assert float(want.abs().max()) > 0

    last = nn.Sequential(_ToChannelsLast(), _TokenMean(), _TokenMean(), fc)
    declared = make_method(last, "gradcam", layer="0", layout="channels_last")
    torch.testing.assert_close(declared(x, [0, 2], upsample=False).raw, want)
    guessed = make_method(last, "gradcam", layer="0")(x, [0, 2], upsample=False).raw
    assert not torch.allclose(guessed, want, atol=1e-3)  # the declaration is what made it right

    tokens = nn.Sequential(_ToTokens(), _TokenMean(), fc)

    def to_grid(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], 8, 8)

    method = make_method(tokens, "gradcam", layer="0", reshape=to_grid)
    assert method.reshape is to_grid
    torch.testing.assert_close(method(x, [0, 2], upsample=False).raw, want)
    with pytest.raises(ModelError, match="reshape must be a callable"):
        make_method(tokens, "gradcam", layer="0", reshape=(8, 8))


def test_several_layers_without_upsampling_fuse_on_the_largest_layer_grid() -> None:
    """upsample=False with two 6×6 layers of a 12×12 input: the fused map is 6×6 (the layers'
    largest grid), not the input's size."""
    from braincam.cam.fusion import fuse_maps

    model, x = gap_net(), images(3)
    res = make_method(model, "gradcam", layer=["2", "4"])(x, [0, 1, 2], upsample=False)
    assert res.maps.shape == (3, 6, 6) and res.raw.shape == (3, 6, 6)
    torch.testing.assert_close(res.raw, fuse_maps(list(res.layers), (6, 6), "layercam"))
    torch.testing.assert_close(res.maps, normalize_maps(res.raw))


def test_aug_smooth_explains_a_callable_target_in_every_view() -> None:
    """A callable target (no class index to fix) is passed to every view as it is, not replaced
    by each view's predicted class."""
    from braincam.cam.smoothing import Augmentation, Flip

    model, x = gap_net(), images(3)

    def score(out: torch.Tensor) -> torch.Tensor:
        return out[:, 1] - out[:, 0]

    with torch.no_grad():
        assert (model.eval()(x).argmax(1) != 1).any()  # the predicted class would differ
    views = (Augmentation(), Flip(0))
    res = make_method(model, "gradcam", aug_smooth=views)(x, score)
    assert res.classes is None
    plain = make_method(model, "gradcam")
    by_hand = (plain(x, score).maps + plain(x.flip(2), score).maps.flip(1)) / 2
    torch.testing.assert_close(res.raw, by_hand)


def test_aug_smooth_runs_the_identity_view_once() -> None:
    """The identity view reuses the clean run: one forward for it and one per other view."""
    from braincam.cam.smoothing import Augmentation, Flip

    model, x = gap_net(), images(2)
    calls: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        make_method(model, "gradcam")(x, [0, 1])
        assert len(calls) == 1
        calls.clear()
        make_method(model, "gradcam", aug_smooth=(Flip(0), Augmentation()))(x, [0, 1])
        assert len(calls) == 2
    finally:
        handle.remove()


def test_cam_keeps_its_options_and_names_the_classifier_it_found() -> None:
    """Options reach the base class (eigen_smooth here: the first principal component of the
    terms W[c, k]·A_k, not their sum); the classifier found after the layer is named only once
    found."""
    from braincam.cam.methods.core import principal_map

    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[3].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    cam = make_method(model, "cam", layer="0", eigen_smooth=True)
    assert cam.eigen_smooth is True and cam.classifier_name is None  # not looked for yet
    res = cam(a, targets=[1], upsample=False, relu=False)
    assert cam.classifier_name == "3"
    terms = torch.tensor([0.5, 3.0]).view(1, 2, 1, 1) * a
    torch.testing.assert_close(res.raw, principal_map(terms))
    assert not torch.allclose(res.raw, terms.sum(1), atol=1e-3)


class _ToDouble(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def test_cam_map_has_the_layer_dtype_under_a_float64_classifier() -> None:
    """A float32 layer feeding a float64 classifier: the weights are cast to the layer's dtype,
    so the map is float32 (and equals the float32 computation)."""
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    model = nn.Sequential(
        nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), _ToDouble(), nn.Linear(2, 2).double()
    )
    with torch.no_grad():
        model[4].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    res = make_method(model, "cam", layer="0")(a, targets=[1], upsample=False, relu=False)
    assert res.raw.dtype == torch.float32 and res.maps.dtype == torch.float32
    torch.testing.assert_close(res.raw[0], torch.tensor([[0.5, 4.0], [1.5, 5.0]]))
