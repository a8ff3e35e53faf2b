"""The 3-D models (issue 15): build on 1 and 3 channels, CAM grids per input shape, exact CAM.

Shapes are checked on the meta device (shape rules, no arithmetic) where a real forward would
cost seconds; training steps and CAMs run on small real volumes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn

from braincam.cam import compute_cams
from braincam.errors import ModelError
from braincam.models import build_model, get_spec, list_models, register_model, unregister_model
from braincam.models.weights import adapt_first_conv
from braincam.training.zoo import check_model_input, model_spatial_dims

MODELS_3D = ["tinycnn3d-gap", "priorcnn3d-gap", "sfcn3d-gap", "resnet18-3d-gap", "resnet18-3d-gmp"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"
# The input shapes the docs' 3-D table reports, and the CAM grid each model gives there,
# worked out by hand: tinycnn3d pools twice (input/4); priorcnn3d's stem once (input/2); SFCN
# pools 3 times and the video ResNet's stem, layer2 and layer3 stride 2 each (input/8).
SHAPES = [(32, 32, 32), (64, 64, 64), (96, 112, 96)]
GRIDS = {
    "tinycnn3d-gap": [(8, 8, 8), (16, 16, 16), (24, 28, 24)],
    "priorcnn3d-gap": [(16, 16, 16), (32, 32, 32), (48, 56, 48)],
    "sfcn3d-gap": [(4, 4, 4), (8, 8, 8), (12, 14, 12)],
    "resnet18-3d-gap": [(4, 4, 4), (8, 8, 8), (12, 14, 12)],
    "resnet18-3d-gmp": [(4, 4, 4), (8, 8, 8), (12, 14, 12)],
}
SMALL = (16, 24, 16)  # real forwards: anisotropic, so a swapped axis would show


@pytest.fixture(autouse=True)
def _seed_and_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _cam_output(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, output of the CAM layer) for ``x``."""
    seen: list[torch.Tensor] = []
    hook = model.get_submodule(model.cam_layer).register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach())
    )
    try:
        logits = model(x)
    finally:
        hook.remove()
    return logits, seen[-1]


def test_registry_lists_the_3d_models_and_keeps_2d_ones_2d() -> None:
    names = list_models()
    volumes = [n for n in names if get_spec(n).spatial_dims == 3]
    assert volumes == MODELS_3D
    assert all("3d" in n for n in volumes)
    assert not any("3d" in n for n in names if n not in volumes)
    assert get_spec("resnet18-gap").spatial_dims == 2
    assert get_spec("resnet18-gap").input_shape == (224, 224)
    assert get_spec("sfcn3d-gap").input_shape == (64, 64, 64)
    assert get_spec("resnet18-3d-gap").pretrained == "r3d_18"
    assert get_spec("sfcn3d-gap").pretrained is None


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", MODELS_3D)
def test_builds_trains_and_cam_is_exact(name: str, in_channels: int) -> None:
    num_classes = 2 if in_channels == 1 else 3
    model = build_model(name, in_channels=in_channels, num_classes=num_classes, dropout=0.3)
    spec = get_spec(name)
    assert model.spec == spec and model.cam_layer == spec.cam_layer == "head.conv"
    assert model.classifier_layer == "head.fc"
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    assert isinstance(first, nn.Conv3d) and first.in_channels == in_channels
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert model.head.dropout.p == 0.3

    x = torch.randn(2, in_channels, *SMALL)
    target = torch.tensor([0, num_classes - 1])
    model.train()
    logits, cam = _cam_output(model, x)
    assert logits.shape == (2, num_classes)
    assert cam.ndim == 5 and cam.shape[0] == 2
    nn.functional.cross_entropy(logits, target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad.sum()) for p in model.parameters())
    assert first.weight.grad.abs().sum() > 0

    # GAP/GMP: logits = W · pool(A) + b with A the CAM layer's (N, C, D, H, W) output.
    model.eval()
    with torch.no_grad():
        logits, cam = _cam_output(model, x)
    fc = model.get_submodule(model.classifier_layer)
    pooled = cam.mean((2, 3, 4)) if spec.head == "gap" else cam.amax((2, 3, 4))
    torch.testing.assert_close(logits, fc(pooled))
    wrong = cam.amax((2, 3, 4)) if spec.head == "gap" else cam.mean((2, 3, 4))
    assert not torch.allclose(logits, fc(wrong))  # the check can fail


@pytest.mark.parametrize("name", MODELS_3D)
def test_cam_grid_per_input_shape(name: str) -> None:
    spec = get_spec(name)
    model = build_model(name).to("meta")
    with torch.no_grad():
        for shape, grid in zip(SHAPES, GRIDS[name], strict=True):
            _, cam = _cam_output(model, torch.empty(1, 1, *shape, device="meta"))
            assert tuple(cam.shape[2:]) == grid, (name, shape)
        _, own = _cam_output(model, torch.empty(1, 1, *spec.input_shape, device="meta"))
    assert tuple(own.shape[2:]) == spec.feature_size
    # The brief's floors: the tiny model ≥ 4³ at 32³; the others ≥ 5³ at 64³ and 96×112×96.
    floor, shapes = (4, SHAPES[:1]) if name == "tinycnn3d-gap" else (5, SHAPES[1:])
    assert all(min(GRIDS[name][SHAPES.index(s)]) >= floor for s in shapes)


def _docs_3d_table() -> dict[str, list[str]]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## 3-D models", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in MODELS_3D:
            rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("name", MODELS_3D)
def test_docs_table_row(name: str) -> None:
    """docs/models.md's 3-D table: head, layers, parameters, channels and the grids."""
    row = _docs_3d_table().get(name)
    assert row is not None, f"{name} missing from the 3-D table in {DOCS}"
    spec = get_spec(name)
    model = build_model(name, in_channels=1, num_classes=2)
    assert row[1:4] == [spec.head, spec.cam_layer, spec.classifier]
    assert int(row[4].replace(",", "")) == sum(p.numel() for p in model.parameters())
    assert int(row[5]) == model.get_submodule("head.fc").in_features
    assert int(row[6]) == spec.input_size
    assert row[7:10] == ["×".join(map(str, g)) for g in GRIDS[name]]
    assert row[10] == (spec.pretrained or "—")


@pytest.mark.parametrize("name", MODELS_3D)
def test_every_cam_method_gives_volumes(name: str) -> None:
    model = build_model(name, in_channels=1).eval()
    x = torch.randn(2, 1, *SMALL)
    for method in ("cam", "gradcam", "gradcampp", "layercam"):
        with pytest.warns() if method == "cam" and get_spec(name).head == "gmp" else nullcontext():
            maps = compute_cams(model, x, method, layer=model.cam_layer)
        assert maps.shape == (2, *SMALL), method
        assert torch.isfinite(maps).all() and maps.amax() > 0, method


@pytest.mark.parametrize("name", MODELS_3D)
def test_gradcam_is_cam_over_the_grid_size(name: str) -> None:
    """Global pooling + linear: the gradients ∂y_c/∂A_k sum to W[c, k] over the grid (spread
    evenly by GAP, on the maximum by GMP), so Grad-CAM's weights (their mean) are CAM's over Z,
    the grid's voxel count, and the raw maps are proportional. LayerCAM weighs each voxel by its
    own positive gradient: not proportional to CAM (the known-no case)."""
    model = build_model(name, in_channels=1).double().eval()
    x = torch.randn(2, 1, *SMALL, dtype=torch.float64)
    options = {"upsample": False, "normalize": False, "relu": False, "layer": model.cam_layer}
    gradcam = compute_cams(model, x, "gradcam", targets=1, **options)
    layercam = compute_cams(model, x, "layercam", targets=1, **options)
    with pytest.warns() if get_spec(name).head == "gmp" else nullcontext():
        cam = compute_cams(model, x, "cam", targets=1, **options)
    assert cam.shape == gradcam.shape == layercam.shape and cam.ndim == 4
    grid = cam.shape[1] * cam.shape[2] * cam.shape[3]
    assert cam.abs().amax() > 0
    torch.testing.assert_close(gradcam * grid, cam, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(layercam * grid, cam)


def test_spatial_prior_starts_as_the_identity_and_concentrates() -> None:
    """priorcnn3d-gap: the prior is 1 everywhere at init (GAP unchanged), averages 1 over any
    grid, and a peaked logit map puts the head's pooled features on that cell."""
    model = build_model("priorcnn3d-gap", dropout=0.0).eval()
    prior = model.get_submodule("backbone.prior")
    x = torch.randn(2, 1, *SMALL)
    grid = tuple(s // 2 for s in SMALL)
    torch.testing.assert_close(prior.weights(grid), torch.ones(1, 1, *grid))
    features = model.backbone.features(model.backbone.stem(x))
    torch.testing.assert_close(model.backbone(x), features)
    with torch.no_grad():
        prior.logits.normal_()
    w = prior.weights(grid)
    assert w.shape == (1, 1, *grid) and torch.isclose(w.mean(), torch.tensor(1.0))
    with torch.no_grad():
        prior.logits.zero_()
        prior.logits[0, 0, 3, 4, 5] = 1.0  # gain 100: all the mass on one cell of the prior grid
    w = prior.weights(prior.logits.shape[2:])
    assert w[0, 0, 3, 4, 5] > 0.99 * w.numel()


def test_video_resnet_stem_is_isotropic_and_keeps_the_kinetics_kernel() -> None:
    stem = build_model("resnet18-3d-gap", in_channels=3).get_submodule("backbone.stem.0")
    assert isinstance(stem, nn.Conv3d)
    assert stem.stride == (2, 2, 2) and stem.kernel_size == (3, 7, 7) and stem.in_channels == 3


def test_kinetics_weights_come_only_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file: a clear error naming where braincam looked; with torchvision's file there, the
    1-channel stem is the sum of its RGB kernels."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = Path(torch.hub.get_dir()) / "checkpoints" / "r3d_18-b3b3357e.pth"
    with pytest.raises(ModelError, match=re.escape(str(expected))):
        build_model("resnet18-3d-gap", weights="imagenet")
    assert not expected.exists()
    from torchvision.models.video import r3d_18

    state = r3d_18(weights=None).state_dict()
    expected.parent.mkdir(parents=True)
    torch.save(state, expected)
    model = build_model("resnet18-3d-gmp", in_channels=1, weights="imagenet")
    own = model.state_dict()
    torch.testing.assert_close(
        own["backbone.stem.0.weight"], state["stem.0.weight"].sum(1, keepdim=True)
    )
    torch.testing.assert_close(
        own["backbone.layer3.1.conv2.0.weight"], state["layer3.1.conv2.0.weight"]
    )
    assert not any(k.startswith("backbone.layer4") for k in own)  # cut after layer3


def test_small_3d_cnns_have_no_pretrained_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no ImageNet counterpart"):
        build_model("sfcn3d-gap", weights=tmp_path / "any.pth")


def test_adapt_first_conv_on_3d_kernels() -> None:
    rgb = torch.randn(4, 3, 3, 7, 7)
    torch.testing.assert_close(adapt_first_conv(rgb, 1), rgb.sum(1, keepdim=True))
    torch.testing.assert_close(adapt_first_conv(rgb, 6), torch.cat([rgb, rgb], 1) * 0.5)
    assert adapt_first_conv(rgb, 3) is rgb


def test_zoo_checks_the_input_dimensionality() -> None:
    assert model_spatial_dims("sfcn3d-gap") == 3 and model_spatial_dims("smallcnn-gap") == 2
    check_model_input("sfcn3d-gap", 3)
    check_model_input("smallcnn-gap", 2)
    with pytest.raises(ModelError, match=r"'smallcnn-gap' takes 2-D slices but work/volumes"):
        check_model_input("smallcnn-gap", 3, source="work/volumes")
    with pytest.raises(ModelError, match=r"'tinycnn3d-gap' takes 3-D volumes .* 2-D slices"):
        check_model_input("tinycnn3d-gap", 2)
    with pytest.raises(ModelError, match="unknown model 'sfcn-3d'"):
        model_spatial_dims("sfcn-3d")


def test_a_registered_3d_model_is_declared_as_such() -> None:
    def build(*, in_channels: int, num_classes: int, dropout: float) -> nn.Module:
        return build_model("tinycnn3d-gap", in_channels=in_channels, num_classes=num_classes)

    register_model("user3d-gap", build, cam_layer="head.conv", classifier="head.fc",
                   spatial_dims=3, input_size=32)  # fmt: skip
    try:
        assert get_spec("user3d-gap").input_shape == (32, 32, 32)
        check_model_input("user3d-gap", 3)
    finally:
        unregister_model("user3d-gap")
    with pytest.raises(ModelError, match="spatial_dims of 'bad' must be 2 or 3, got 4"):
        register_model("bad", build, cam_layer="head.conv", spatial_dims=4)
    assert "bad" not in list_models()


def test_the_plane_prior_resizes_bilinearly_and_stays_a_mean_of_one() -> None:
    """priorcnn-gap (slices): the same prior on a 2-D grid — at init 1 everywhere but the
    outermost cells (the blur's zero padding lowers them; they lie outside the brain), a mean of 1
    on another input size's grid (bilinear resize), and the CAM grid is input/2."""
    from braincam.models.backbones import SpatialPrior

    model = build_model("priorcnn-gap", dropout=0.0).eval()
    prior = model.get_submodule("backbone.prior")
    assert tuple(prior.logits.shape[2:]) == (32, 32) and prior.blur == 1.0
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        start = prior.weights((48, 48))[0, 0]
        features = model.backbone.features(model.backbone.stem(x))
        torch.testing.assert_close(model.backbone(x), features * start)
    margin = 3 * 48 // 32 + 1  # 3 sigma of the blur, in cells of the 48x48 grid
    inner = start[margin:-margin, margin:-margin]
    assert torch.allclose(inner, inner[0, 0].expand_as(inner)) and inner[0, 0] > 1.0
    assert start[0, 0] < 0.5 * inner[0, 0] and torch.isclose(start.mean(), torch.tensor(1.0))
    unblurred = SpatialPrior((32, 32))  # without the blur: exactly the identity at init
    torch.testing.assert_close(unblurred(features), features)
    with torch.no_grad():
        prior.logits.zero_()
        prior.logits[0, 0, 8, 24] = 0.05  # gain 100: a peak of e^5 over its neighbours
    w = prior.weights((48, 48))
    assert w.shape == (1, 1, 48, 48) and torch.isclose(w.mean(), torch.tensor(1.0))
    peak = divmod(int(w.flatten().argmax()), 48)
    assert peak == (round(8 * 47 / 31), round(24 * 47 / 31))  # align_corners: i * 47 / 31
    assert model.backbone(x).shape[2:] == (48, 48)


@pytest.mark.parametrize("shape", [(15, 17), (11, 13, 9)])
def test_gaussian_blur_of_a_point_is_the_gaussian(shape: tuple[int, ...]) -> None:
    """gaussian_blur against the formula: a unit point in the middle becomes the product of
    normalized 1-D Gaussians exp(-d²/2σ²) along each axis (σ per axis, in cells)."""
    import numpy as np

    from braincam.imaging.filters import gaussian_blur

    sigmas = [1.0, 1.5, 0.7][: len(shape)]
    point = torch.zeros(1, 1, *shape, dtype=torch.float64)
    centre = tuple(s // 2 for s in shape)
    point[(0, 0, *centre)] = 1.0
    blurred = gaussian_blur(point, sigmas, edges="zeros")[0, 0].numpy()
    expected = np.ones(())
    for size, c, sigma in zip(shape, centre, sigmas, strict=True):
        radius = int(np.ceil(3 * sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        profile = np.zeros(size)
        profile[c - radius : c + radius + 1] = taps / taps.sum()
        expected = np.multiply.outer(expected, profile)
    np.testing.assert_allclose(blurred, expected, atol=1e-12)
    assert np.isclose(blurred.sum(), 1.0)


def test_a_blurred_prior_spreads_its_peak_and_keeps_a_mean_of_one() -> None:
    """SpatialPrior(blur=σ): a one-cell softmax becomes a Gaussian blob around that cell (the
    neighbours weigh exp(-1/2σ²) of the peak), the mean over the grid stays 1, and blur=0 is the
    unblurred prior."""
    from braincam.models.backbones import SpatialPrior

    sharp, blob = SpatialPrior((16, 16)), SpatialPrior((16, 16), blur=1.0)
    with torch.no_grad():
        for prior in (sharp, blob):
            prior.logits[0, 0, 5, 9] = 1.0  # gain 100: one cell holds all of the softmax
    with torch.no_grad():
        w_sharp, w_blob = sharp.weights((16, 16))[0, 0], blob.weights((16, 16))[0, 0]
    assert w_sharp[5, 9] > 0.99 * 256 and w_sharp[5, 10] < 1e-6
    assert torch.isclose(w_blob.mean(), torch.tensor(1.0))
    assert int(w_blob.argmax()) == 5 * 16 + 9
    ratio = float(w_blob[5, 10] / w_blob[5, 9])
    assert abs(ratio - float(torch.exp(torch.tensor(-0.5)))) < 1e-5
    torch.testing.assert_close(w_blob[4, 9], w_blob[6, 9])  # symmetric about the peak
