"""The model zoo: names, shapes, CAM metadata, a training step, save/load, ImageNet weights."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from braincam.errors import ModelError
from braincam.models import ModelSpec, build_model, get_spec, list_models
from braincam.models.weights import adapt_first_conv, reference_shapes

REQUIRED = [
    "alexnet-gap",
    "alexnet-bn-gap",
    "vgg16-gap",
    "vgg19-gap",
    "googlenet-gap",
    "googlenet-gmp",
    "inceptionv3-gap",
    "resnet18-gap",
    "resnet50-gap",
    "alexnet-fc",
    "vgg16-fc",
    "vgg19-fc",
    "resnet18-fc",
    "resnet50-fc",
    "smallcnn-gap",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"
# 64×64 keeps the step tests fast; smaller inputs shrink ResNet's layer4 to 1×1, where train-mode
# BatchNorm over 2 values makes gradients explode, and InceptionV3's stem needs more than 32.
# VGG has no BatchNorm and its conv stack is the costliest: 32×32 (conv5 at 2×2).
SMALL = 64
SMALLER = {"vgg": 32}
# One real 224×224 CPU forward per family; the rest of the table is checked on the meta device.
# The 2-D networks (slices); the 3-D ones (volumes) are tested in test_models_3d.py.
MODELS_2D = [n for n in list_models() if get_spec(n).spatial_dims == 2]
FAMILY_224 = ["alexnet-bn-gap", "vgg16-gap", "googlenet-gmp", "inceptionv3-gap", "resnet18-gap",
              "resnet18-fc", "smallcnn-gap"]  # fmt: skip


@pytest.fixture(autouse=True)
def _seed_and_threads() -> Iterator[None]:
    # One thread: the CPU is shared, and oversubscribed BLAS threads slow everyone down.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _cam_output(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, output of the CAM layer) for ``x``."""
    seen: list[torch.Tensor] = []
    hook = model.get_submodule(model.cam_layer).register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach().clone())
    )
    try:
        logits = model(x)
    finally:
        hook.remove()
    return logits, seen[-1]


def _docs_table() -> dict[str, list[str]]:
    """Rows of the model table in docs/models.md, by model name."""
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in list_models():
            rows[cells[0]] = cells
    return rows


def test_registry_has_the_studies_networks() -> None:
    names = list_models()
    assert set(REQUIRED) <= set(names)
    assert len(names) == len(set(names))
    for name in names:
        spec = get_spec(name)
        assert spec.name == name
        assert spec.head in ("gap", "gmp", "fc")
        assert (spec.classifier is None) == (spec.head == "fc")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ModelError, match="unknown model 'resnet19-gap'") as err:
        get_spec("resnet19-gap")
    for name in REQUIRED:
        assert name in str(err.value)
    with pytest.raises(ModelError, match="vgg16-gap"):
        build_model("resnet19-gap")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_channels": 0}, "in_channels"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_bad_arguments_raise_model_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_model("tinycnn-gap", **kwargs)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", MODELS_2D)
def test_builds_trains_and_round_trips(name: str, in_channels: int) -> None:
    # 1 channel, 2 classes: the dMRI study (and the documented table); 3 channels, 3 classes:
    # the structural study (RRMS, SPMS, control).
    num_classes = 2 if in_channels == 1 else 3
    model = build_model(name, in_channels=in_channels, num_classes=num_classes)
    spec = get_spec(name)
    assert model.spec == spec
    assert model.cam_layer == spec.cam_layer
    assert model.classifier_layer == spec.classifier
    size = SMALLER.get(spec.family, SMALL)
    x = torch.randn(2, in_channels, size, size)
    target = torch.tensor([0, num_classes - 1])

    # One SGD step (the studies' optimizer): finite gradients that reach the first layer.
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    logits, cam = _cam_output(model, x)
    assert logits.shape == (2, num_classes)
    assert cam.ndim == 4 and cam.shape[0] == 2
    loss = nn.functional.cross_entropy(logits, target)
    loss.backward()
    # A sum is NaN/inf as soon as one element is, in one pass (isfinite().all() takes two).
    assert all(p.grad is not None and torch.isfinite(p.grad.sum()) for p in model.parameters())
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == in_channels
    assert first.weight.grad.abs().sum() > 0
    before = first.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, first.weight.detach())

    # GAP/GMP: CAM is exact — logits = W · pool(A) + b with A the CAM layer's output.
    model.eval()
    with torch.no_grad():
        logits, cam = _cam_output(model, x)
    if spec.head != "fc":
        fc = model.get_submodule(model.classifier_layer)
        assert isinstance(fc, nn.Linear) and fc.in_features == cam.shape[1]
        pooled = cam.mean((2, 3)) if spec.head == "gap" else cam.amax((2, 3))
        torch.testing.assert_close(logits, fc(pooled))

    # state_dict → bytes; zero the model; load with weights_only=True: identical outputs again.
    # (In place rather than into a copy: VGG-FC's 134 M parameters make copies slow.)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.zero_()
        assert not torch.equal(model(x), logits)
        model.load_state_dict(torch.load(buffer, weights_only=True))
        torch.testing.assert_close(model(x), logits, rtol=0, atol=0)

    if in_channels == 1:
        _check_table_row(model, spec)


def _check_table_row(model: nn.Module, spec: ModelSpec) -> None:
    """docs/models.md's row (params, CAM channels and size at 224) and spec.feature_size."""
    row = _docs_table().get(spec.name)
    assert row is not None, f"{spec.name} missing from the table in {DOCS}"
    assert row[1:4] == [spec.head, spec.cam_layer, spec.classifier or "—"]
    model = model.to("meta")  # shapes only: the same shape rules, no arithmetic
    with torch.no_grad():
        size = spec.input_size
        _, cam = _cam_output(model, torch.empty(1, 1, size, size, device="meta"))
        assert tuple(cam.shape[2:]) == spec.feature_size
        _, cam = _cam_output(model, torch.empty(1, 1, 224, 224, device="meta"))
        _, cam96 = _cam_output(model, torch.empty(1, 1, 96, 96, device="meta"))
    n_params = sum(p.numel() for p in model.parameters())
    assert row[4] == f"{cam.shape[2]}×{cam.shape[3]}"
    assert row[8] == f"{cam96.shape[2]}×{cam96.shape[3]}"
    assert int(row[5].replace(",", "")) == n_params
    assert int(row[6]) == cam.shape[1]
    assert int(row[7]) == spec.input_size


@pytest.mark.parametrize("name", FAMILY_224)
def test_feature_size_at_224_and_at_the_input_size_on_the_cpu(name: str) -> None:
    """The docs' column is the CAM layer's size at 224²; the registry's ``feature_size`` is the
    size at the model's own input size (the two agree when that is 224)."""
    spec = get_spec(name)
    model = build_model(name, in_channels=1).eval()
    with torch.no_grad():
        logits, cam = _cam_output(model, torch.randn(1, 1, 224, 224))
        _, own = _cam_output(model, torch.randn(1, 1, spec.input_size, spec.input_size))
    documented = tuple(int(v) for v in _docs_table()[name][4].split("×"))
    assert tuple(cam.shape[2:]) == documented
    assert tuple(own.shape[2:]) == spec.feature_size
    if spec.input_size == 224:
        assert spec.feature_size == documented
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


# ---------------------------------------------------------------------------- ImageNet weights


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


def _random_state(arch: str, keep: str = "") -> dict[str, torch.Tensor]:
    """A fake state_dict: torchvision's names and shapes for ``arch``, keys starting ``keep``."""
    return {
        k: torch.randn(shape) if len(shape) else torch.tensor(0)
        for k, shape in reference_shapes(arch).items()
        if k.startswith(keep)
    }


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision's resnet18 random init saved as a stand-in for the ImageNet file."""
    torch.manual_seed(42)
    path = tmp_path_factory.mktemp("weights") / "resnet18-f37072fd.pth"
    return _save(tvm.resnet18(weights=None).state_dict(), path)


def test_adapt_first_conv_follows_timm() -> None:
    rgb = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(adapt_first_conv(rgb, 1), rgb.sum(1, keepdim=True))
    assert adapt_first_conv(rgb, 3) is rgb
    six = adapt_first_conv(rgb, 6)
    torch.testing.assert_close(six, torch.cat([rgb, rgb], 1) * 0.5)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_imagenet_file_loads_into_the_kept_backbone(resnet18_file: Path, in_channels: int) -> None:
    state = torch.load(resnet18_file, weights_only=True)
    model = build_model("resnet18-gap", in_channels=in_channels, weights=resnet18_file)
    kept = model.backbone.state_dict()
    for key, value in kept.items():
        if key != "conv1.weight" and not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    expected_conv1 = state["conv1.weight"]
    if in_channels == 1:
        expected_conv1 = expected_conv1.sum(1, keepdim=True)
    torch.testing.assert_close(kept["conv1.weight"], expected_conv1, rtol=0, atol=0)
    assert not any(k.startswith("layer4") for k in kept)  # cut after layer3


def test_fc_variant_keeps_everything_but_the_last_linear(resnet18_file: Path) -> None:
    state = torch.load(resnet18_file, weights_only=True)
    model = build_model("resnet18-fc", in_channels=3, num_classes=2, weights=resnet18_file)
    own = model.state_dict()
    torch.testing.assert_close(own["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert own["fc.weight"].shape == (2, 512)


def test_googlenet_file_with_aux_heads_loads(tmp_path: Path) -> None:
    state = _random_state("googlenet")
    assert any(k.startswith("aux1.") for k in state)  # the published file carries them
    path = _save(state, tmp_path / "googlenet.pth")
    model = build_model("googlenet-gmp", in_channels=1, weights=path)
    own = model.state_dict()
    torch.testing.assert_close(
        own["backbone.conv1.conv.weight"], state["conv1.conv.weight"].sum(1, keepdim=True)
    )
    torch.testing.assert_close(
        own["backbone.inception4e.branch4.1.bn.running_var"],
        state["inception4e.branch4.1.bn.running_var"],
    )


def test_alexnet_bn_takes_alexnet_conv_weights(tmp_path: Path) -> None:
    # A features-only file is enough for the GAP models: the classifier is cut anyway.
    state = _random_state("alexnet", keep="features.")
    path = _save(state, tmp_path / "alexnet-features.pth")
    model = build_model("alexnet-bn-gap", in_channels=3, weights=path)
    own = model.state_dict()
    for ours, theirs in [("4", "3"), ("8", "6"), ("11", "8"), ("14", "10")]:
        mine, tv = own[f"backbone.features.{ours}.weight"], state[f"features.{theirs}.weight"]
        torch.testing.assert_close(mine, tv, rtol=0, atol=0)
    assert torch.equal(own["backbone.features.1.weight"], torch.ones(64))  # new BN stays fresh


def test_wrong_architecture_names_file_and_keys(resnet18_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing keys: .*layer1\.0\.conv3\.weight") as err:
        build_model("resnet50-gap", weights=resnet18_file)
    assert str(resnet18_file) in str(err.value)
    r50 = _save(_random_state("resnet50", keep="layer1."), tmp_path / "r50.pth")
    with pytest.raises(ModelError, match=r"unexpected keys: .*conv3") as err:
        build_model("resnet18-gap", weights=r50)
    assert str(r50) in str(err.value) and "resnet18" in str(err.value)


def test_braincam_checkpoint_is_not_imagenet_weights(tmp_path: Path) -> None:
    path = _save(build_model("resnet18-gap").state_dict(), tmp_path / "mine.pth")
    with pytest.raises(ModelError, match="a braincam checkpoint"):
        build_model("resnet18-gap", weights=path)


@pytest.mark.parametrize("name", ["tinycnn-gap", "resnet18-gap", "googlenet-gap"])
def test_build_is_deterministic_given_the_seed(name: str) -> None:
    torch.manual_seed(7)
    first = build_model(name).state_dict()
    torch.manual_seed(7)
    second = build_model(name).state_dict()
    torch.manual_seed(8)
    third = build_model(name).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["head.conv.0.weight"], third["head.conv.0.weight"])


def test_shape_mismatch_names_the_key(resnet18_file: Path, tmp_path: Path) -> None:
    state = torch.load(resnet18_file, weights_only=True)
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    path = _save(state, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=r"shape mismatch for layer2\.0\.conv1\.weight"):
        build_model("resnet18-gap", weights=path)


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ModelError, match=re.escape(f"weights file not found: {missing}")):
        build_model("resnet18-gap", weights=missing)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelError, match=re.escape(str(text))):
        build_model("resnet18-gap", weights=text)
    listing = _save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ModelError, match="does not hold a state_dict"):
        build_model("resnet18-gap", weights=listing)


def test_small_cnn_has_no_imagenet_weights(resnet18_file: Path) -> None:
    with pytest.raises(ModelError, match="no ImageNet counterpart"):
        build_model("smallcnn-gap", weights=resnet18_file)


def test_imagenet_uses_only_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resnet18_file: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub = Path(torch.hub.get_dir())
    assert hub.is_relative_to(tmp_path), "torch.hub.set_dir was called elsewhere"
    expected = hub / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(ModelError, match=re.escape(str(expected))):
        build_model("resnet18-gap", weights="imagenet")
    assert not expected.exists()  # nothing was downloaded
    expected.parent.mkdir(parents=True)
    expected.write_bytes(resnet18_file.read_bytes())
    model = build_model("resnet18-fc", in_channels=3, weights="imagenet")
    state = torch.load(resnet18_file, weights_only=True)
    torch.testing.assert_close(model.state_dict()["conv1.weight"], state["conv1.weight"])


# --------------------------------------------------------------------------- open registry


class _UserNet(nn.Module):
    """A user's network: conv → ReLU → GAP → linear, registered by name in the tests below."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x).mean((2, 3))))


@pytest.fixture
def user_model() -> Iterator[str]:
    from braincam.models import register_model, unregister_model

    @register_model("user-net", cam_layer="features.1", classifier="fc", feature_size=(16, 16))
    def build(*, in_channels: int, num_classes: int, dropout: float) -> nn.Module:
        """A user's tiny GAP network."""
        return _UserNet(in_channels, num_classes, dropout)

    assert callable(build)  # the decorator hands the builder back
    yield "user-net"
    unregister_model("user-net")
    assert "user-net" not in list_models()


def test_registered_model_is_built_and_explained(user_model: str) -> None:
    from braincam.cam import compute_cams

    assert list_models()[-1] == user_model and list_models()[: len(REQUIRED)] == REQUIRED
    spec = get_spec(user_model)
    assert (spec.cam_layer, spec.classifier, spec.head) == ("features.1", "fc", "gap")
    assert spec.description == "A user's tiny GAP network." and spec.family == user_model
    model = build_model(user_model, in_channels=2, num_classes=3, dropout=0.1)
    assert model.spec is spec and model.cam_layer == "features.1"
    x = torch.randn(2, 2, 16, 16)
    assert model(x).shape == (2, 3)
    for method in ("cam", "gradcam"):
        maps = compute_cams(model.eval(), x, method)
        assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()
    with pytest.raises(ModelError, match="no ImageNet counterpart"):
        build_model(user_model, weights="imagenet")


def test_registered_model_passes_experiment_validation(user_model: str) -> None:
    from braincam.config import parse_config
    from braincam.errors import ConfigError
    from braincam.pipeline.run import check_models

    check_models(parse_config({"models": ["smallcnn-gap", user_model], "synth": {}}))
    with pytest.raises(ConfigError, match=r"models\.1: unknown model 'user-nett'") as err:
        check_models(parse_config({"models": [user_model, "user-nett"], "synth": {}}))
    assert user_model in str(err.value) and "resnet18-gap" in str(err.value)  # the valid names


def test_duplicate_and_bad_registrations_are_refused(user_model: str) -> None:
    from braincam.models import register_model, unregister_model

    def build(**kw: object) -> nn.Module:
        return _UserNet(1, 2, 0.0)

    with pytest.raises(ModelError, match="'user-net' is already registered"):
        register_model(user_model, build, cam_layer="features.1")
    with pytest.raises(ModelError, match="'resnet18-gap' is already registered"):
        register_model("resnet18-gap", build, cam_layer="layer4")
    assert get_spec("resnet18-gap").family == "resnet"  # the zoo's entry is untouched
    with pytest.raises(ModelError, match="callable"):
        register_model("not-callable", "builder", cam_layer="x")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="non-empty"):
        register_model("", build, cam_layer="x")
    with pytest.raises(ModelError, match="built in"):
        unregister_model("resnet18-gap")
    with pytest.raises(ModelError, match="unknown model"):
        unregister_model("never-registered")
