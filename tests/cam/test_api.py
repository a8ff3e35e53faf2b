"""CAM engine: API, errors, targets, model-state restoration, the dMRI study's bugs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braincam.cam import (
    METHODS,
    GradCAM,
    compute_cams,
    get_method,
    make_method,
    normalize_maps,
    upsample_maps,
)
from braincam.errors import InputError, ModelError
from builders.cam_nets import FAST

ALL = list(METHODS)


class TinyNet(nn.Module):
    """conv → ReLU(inplace) → conv(stride 2) → BN → ReLU(inplace) → GAP → dropout → linear."""

    def __init__(self, in_ch: int = 1, classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 6, 3, padding=1, stride=2),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(6, classes)
        self.cam_layer = "features.4"
        self.classifier_layer: str | None = "fc"
        with torch.no_grad():  # non-trivial batch-norm statistics
            self.features[3].running_mean.uniform_(-0.2, 0.2)
            self.features[3].running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


def tiny(seed: int = 0, **kw: object) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kw)  # type: ignore[arg-type]


def batch(n: int = 4, seed: int = 1, size: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g)


def hooks_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": hooks_count(model),
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    for key in ("training", "requires_grad", "hooks", "inplace"):
        assert before[key] == after[key], key
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):  # type: ignore[call-overload]
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    s0, s1 = before["state"], after["state"]
    assert s0.keys() == s1.keys()  # type: ignore[union-attr]
    for k in s0:  # type: ignore[union-attr]
        assert torch.equal(s0[k], s1[k]), k  # type: ignore[index]


def messy_model() -> TinyNet:
    """Train mode, one submodule in eval, mixed requires_grad, some .grad populated."""
    model = tiny(dropout=0.5)
    model.train()
    model.features[3].eval()
    model.features[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    return model


# -- API and output ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL)
def test_every_method_shape_range_and_raw(method: str) -> None:
    model, x = tiny(), batch()
    kw = FAST.get(method, {})
    cam = make_method(model, method, **kw)
    res = cam(x)
    assert res.maps.shape == (4, 12, 12)
    # FullGrad is a whole-network map, Integrated Gradients an input attribution: at the input's
    # resolution
    assert res.raw.shape == ((4, 12, 12) if method in ("fullgrad", "intgrad") else (4, 6, 6))
    assert torch.isfinite(res.maps).all()
    # per-sample min-max: min 0 and max 1 unless the map is constant (then all 0)
    for m in res.maps:
        assert float(m.min()) == 0.0
        assert float(m.max()) in (0.0, 1.0)
    assert (res.raw >= 0).all()

    def minmax(maps: torch.Tensor) -> torch.Tensor:  # by hand, map by map
        out = torch.zeros_like(maps)
        for i, m in enumerate(maps):
            if m.max() > m.min():
                out[i] = (m - m.min()) / (m.max() - m.min())
        return out

    # maps = the rectified raw maps, bilinearly upsampled (align_corners=False), then min-max
    up = torch.nn.functional.interpolate(
        res.raw[:, None], size=(12, 12), mode="bilinear", align_corners=False
    )[:, 0]
    assert torch.allclose(res.maps, minmax(up), atol=1e-6)
    # compute_cams gives those maps; upsample=False gives the raw maps min-maxed
    assert torch.allclose(compute_cams(model, x, method, **kw), minmax(up), atol=1e-6)
    low = compute_cams(model, x, method, upsample=False, **kw)
    assert torch.allclose(low, minmax(res.raw), atol=1e-6)
    assert torch.allclose(normalize_maps(res.raw), minmax(res.raw), atol=1e-6)
    assert len(res.layers) == (3 if method == "fullgrad" else 1)  # FullGrad: 2 convs, 1 BN


def test_registry_names_and_aliases() -> None:
    assert set(METHODS) == {
        "cam",
        "gradcam",
        "gradcampp",
        "xgradcam",
        "layercam",
        "hirescam",
        "scorecam",
        "eigencam",
        "ablationcam",
        "eigengradcam",
        "fullgrad",
        "intgrad",
        "smoothgradcampp",
        "sscam",
        "iscam",
    }
    assert get_method("Grad-CAM") is GradCAM
    assert get_method("gradcam++") is METHODS["gradcampp"]
    with pytest.raises(ModelError, match="valid names: cam, gradcam"):
        get_method("gradcam3000")
    with pytest.raises(ModelError, match="unknown CAM method"):
        compute_cams(tiny(), batch(), "nope")


def test_relu_false_gives_signed_cam_and_default_rectifies() -> None:
    model, x = tiny(), batch()
    signed = make_method(model, "cam")(x, relu=False).raw
    rect = make_method(model, "cam")(x).raw
    assert (signed < 0).any()  # Zhou's unrectified CAM keeps negative evidence
    assert torch.allclose(rect, signed.clamp_min(0))


def test_upsampling_is_bilinear_align_corners_false() -> None:
    low = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = upsample_maps(low, (4, 4))
    expected = torch.nn.functional.interpolate(
        low[:, None], size=(4, 4), mode="bilinear", align_corners=False
    )[:, 0]
    assert torch.allclose(up, expected)
    # align_corners=False: the corner pixel equals the corner feature, the next one is blended
    assert float(up[0, 0, 0]) == 0.0
    assert float(up[0, 0, 1]) == pytest.approx(0.25)


def test_normalize_constant_map_is_zero_not_nan() -> None:
    maps = torch.stack([torch.full((3, 3), 5.0), torch.arange(9.0).view(3, 3)])
    out = normalize_maps(maps)
    assert torch.equal(out[0], torch.zeros(3, 3))
    assert float(out[1].min()) == 0.0 and float(out[1].max()) == 1.0
    # end to end: a bias-free model on a zero input gives an all-zero activation
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1))
    model.append(nn.Flatten())
    model.append(nn.Linear(3, 2, bias=False))
    for method in ALL:
        res = compute_cams(
            model, torch.zeros(2, 1, 6, 6), method, layer="0", **FAST.get(method, {})
        )
        assert torch.equal(res, torch.zeros(2, 6, 6)), method


def test_normalization_keeps_orientation_unlike_monai_default() -> None:
    """Max of the raw map → 1, min → 0 (MONAI's default normalizer maps min → 1)."""
    model, x = tiny(), batch()
    res = make_method(model, "gradcam")(x, upsample=False)
    for raw, m in zip(res.raw, res.maps, strict=True):
        assert m.flatten()[raw.argmax()] == 1.0
        assert m.flatten()[raw.argmin()] == 0.0


# -- targets -------------------------------------------------------------------------------
def test_default_target_is_predicted_class() -> None:
    model, x = tiny(), batch(8)
    res = make_method(model, "gradcam")(x)
    pred = res.outputs.argmax(1)
    assert torch.equal(res.classes, pred)
    assert torch.allclose(res.maps, compute_cams(model, x, targets=pred), atol=1e-6)


def test_int_sequence_tensor_and_callable_targets_agree() -> None:
    model, x = tiny(), batch()
    by_int = compute_cams(model, x, targets=1)
    assert torch.allclose(by_int, compute_cams(model, x, targets=[1, 1, 1, 1]))
    assert torch.allclose(by_int, compute_cams(model, x, targets=torch.tensor([1, 1, 1, 1])))
    assert torch.allclose(by_int, compute_cams(model, x, targets=lambda out: out[:, 1]))
    other = compute_cams(model, x, targets=2)
    assert not torch.allclose(by_int, other)


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ([0, 1], "one target per sample"),
        (3, "out of range"),
        (-1, "out of range"),
        (torch.tensor([0.0, 1.0, 0.0, 1.0]), "1-D integer"),
        ("gradcam", "targets must be"),
        (True, "not a bool"),
        (lambda out: out, "one score per sample"),
    ],
)
def test_bad_targets(targets: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        compute_cams(tiny(), batch(), targets=targets)  # type: ignore[arg-type]


def test_cam_rejects_callable_targets() -> None:
    with pytest.raises(InputError, match="CAM needs class-index targets"):
        compute_cams(tiny(), batch(), "cam", targets=lambda out: out[:, 0])


# -- layers, classifier, inputs ------------------------------------------------------------
def test_layer_by_name_module_and_model_default() -> None:
    model, x = tiny(), batch()
    default = compute_cams(model, x)
    assert torch.equal(default, compute_cams(model, x, layer="features.4"))
    assert torch.equal(default, compute_cams(model, x, layer=model.features[4]))
    assert not torch.allclose(default, compute_cams(model, x, layer="features.1"))


def test_layer_errors() -> None:
    model, x = tiny(), batch()
    with pytest.raises(ModelError, match=r"'features.9' is not in the model"):
        compute_cams(model, x, layer="features.9")
    with pytest.raises(ModelError, match="not a submodule"):
        compute_cams(model, x, layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(ModelError, match="not spatial"):
        compute_cams(model, x, layer="fc")
    with pytest.raises(ModelError, match="single spatial position"):
        compute_cams(model, x, layer="pool")
    flat = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(200, 2))
    with pytest.raises(ModelError, match="not spatial"):
        compute_cams(flat, x, layer="1")
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ModelError, match=r"no target layer.*last conv layers: 0"):
        compute_cams(plain, x)
    unused = tiny()
    unused.extra = nn.Conv2d(1, 1, 1)
    with pytest.raises(ModelError, match="did not run"):
        compute_cams(unused, x, layer="extra")


def test_shared_layer_running_twice_is_an_error() -> None:
    conv = nn.Conv2d(1, 1, 3, padding=1)
    model = nn.Sequential(conv, conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    with pytest.raises(ModelError, match="ran 2 times"):
        compute_cams(model, batch(), layer="0")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.randn(1, 12, 12), "shape"),
        (torch.randn(1, 1, 1, 1, 12, 12), "shape"),
        (torch.zeros(0, 1, 12, 12), "empty"),
        (torch.zeros(1, 1, 12, 12, dtype=torch.long), "floating"),
        ([[1.0]], "torch.Tensor"),
    ],
)
def test_bad_inputs(bad: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        compute_cams(tiny(), bad)  # type: ignore[arg-type]


def test_method_options_are_checked() -> None:
    with pytest.raises(ModelError, match="does not take batch_size"):
        compute_cams(tiny(), batch(), "gradcam", batch_size=4)
    with pytest.raises(InputError, match="batch_size"):
        compute_cams(tiny(), batch(), "scorecam", batch_size=0)


def test_cam_classifier_resolution() -> None:
    model, x = tiny(), batch()
    expected = compute_cams(model, x, "cam")
    # explicit classifier (name or module) and, without metadata, the only Linear after the layer
    assert torch.equal(expected, compute_cams(model, x, "cam", classifier="fc"))
    assert torch.equal(expected, compute_cams(model, x, "cam", classifier=model.fc))
    del model.classifier_layer
    cam = make_method(model, "cam")
    assert torch.equal(expected, cam(x).maps)
    assert cam.classifier_name == "fc"


def test_cam_uses_model_metadata_when_auto_is_ambiguous() -> None:
    class TwoHeads(TinyNet):
        def __init__(self) -> None:
            super().__init__()
            self.aux = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            feats = self.pool(self.features(x)).flatten(1)
            return self.fc(feats) + 0 * self.aux(feats).sum()

    torch.manual_seed(0)
    model = TwoHeads()
    assert make_method(model, "cam")(batch()).maps.shape == (4, 12, 12)  # metadata: fc
    del model.classifier_layer
    with pytest.raises(ModelError, match=r"found fc, aux|found aux, fc"):
        compute_cams(model, batch(), "cam")


def test_cam_errors_for_fc_heads() -> None:
    model = tiny()
    model.classifier_layer = None
    with pytest.raises(ModelError, match=r"CAM is not defined.*gradcam"):
        compute_cams(model, batch(), "cam")
    fc_head = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 8),
        nn.ReLU(),
        nn.Linear(8, 2),
    )
    with pytest.raises(ModelError, match=r"exactly one nn.Linear.*found 3, 5"):
        compute_cams(fc_head, batch(), "cam", layer="0")
    with pytest.raises(ModelError, match="takes 8 features but layer '0' has 4 channels"):
        compute_cams(fc_head, batch(), "cam", layer="0", classifier="5")
    with pytest.raises(ModelError, match=r"not nn.Linear"):
        compute_cams(fc_head, batch(), "cam", layer="0", classifier="4")
    # gradient methods still work on an FC head
    assert compute_cams(fc_head, batch(), "gradcam", layer="0").shape == (4, 12, 12)


# -- model state ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL)
def test_model_state_is_restored(method: str) -> None:
    model = messy_model()
    before = snapshot(model)
    compute_cams(model, batch(), method, **FAST.get(method, {}))
    assert_same_state(before, snapshot(model))


@pytest.mark.parametrize("method", ALL)
def test_model_state_is_restored_after_an_exception(method: str) -> None:
    model = messy_model()
    before = snapshot(model)

    def boom(module: nn.Module, args: object, output: torch.Tensor) -> None:
        raise RuntimeError("boom inside the forward")

    handle = model.fc.register_forward_hook(boom)
    before["hooks"] = hooks_count(model)
    with pytest.raises(RuntimeError, match="boom"):
        compute_cams(model, batch(), method, **FAST.get(method, {}))
    assert_same_state(before, snapshot(model))
    handle.remove()


def test_state_restored_when_a_callable_target_fails() -> None:
    model = messy_model()
    before = snapshot(model)

    def bad_target(out: torch.Tensor) -> torch.Tensor:
        raise ValueError("bad target")

    with pytest.raises(ValueError, match="bad target"):
        compute_cams(model, batch(), "gradcam", targets=bad_target)
    assert_same_state(before, snapshot(model))


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam"])
def test_gradient_methods_never_touch_parameter_grads(method: str) -> None:
    model = tiny()
    compute_cams(model, batch(), method)
    assert all(p.grad is None for p in model.parameters())
    # requires_grad flags do not matter: a fully frozen model gives the same maps
    expected = compute_cams(model, batch(), method)
    model.requires_grad_(False)
    assert torch.allclose(compute_cams(model, batch(), method), expected)
    # and neither does the caller's grad mode
    with torch.no_grad():
        assert torch.allclose(compute_cams(model, batch(), method), expected)


@pytest.mark.filterwarnings("ignore::braincam.cam.CAMHeadWarning")  # CAM on features.2: BN, ReLU
def test_inplace_ops_after_the_layer_do_not_alter_the_activation() -> None:
    """The hooked conv is followed by ReLU(inplace=True): the map must use the pre-ReLU output."""
    model = tiny()
    twin = tiny()
    for mod in twin.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    x = batch()
    for method in ALL:
        kw = FAST.get(method, {})
        a = make_method(model, method, layer="features.2", **kw)(x, relu=False).raw
        b = make_method(twin, method, layer="features.2", **kw)(x, relu=False).raw
        assert torch.allclose(a, b, atol=1e-6), method
    assert model.features[1].inplace and model.features[4].inplace


# -- the dMRI study's published-code bugs ----------------------------------------------------
def test_cam_uses_each_images_own_features() -> None:
    model = tiny()
    x = batch(3)
    res = make_method(model, "cam")(x, targets=0, relu=False)
    singles = [make_method(model, "cam")(x[i : i + 1], targets=0, relu=False).raw for i in range(3)]
    for i in range(3):
        assert torch.allclose(res.raw[i], singles[i][0], atol=1e-6)
    assert not torch.allclose(res.raw[1], res.raw[0])


@pytest.mark.parametrize("method", ALL)
def test_maps_are_computed_in_eval_mode(method: str) -> None:
    """Dropout (p=0.5) and batch norm in train mode would make the maps random/batch-dependent."""
    seen: list[bool] = []
    model = tiny(dropout=0.5)
    model.fc.register_forward_pre_hook(lambda mod, args: seen.append(mod.training))
    x = batch()
    kw = FAST.get(method, {})
    expected = compute_cams(model.eval(), x, method, **kw)
    model.train()
    seen.clear()
    got = compute_cams(model, x, method, **kw)
    assert seen and not any(seen)
    assert torch.allclose(got, expected, atol=1e-6)
    assert model.training and model.drop.training
