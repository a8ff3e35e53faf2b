"""Transfer learning from a local ImageNet file, for every pretrained-capable network of the zoo.

The real torchvision files cannot be fetched here, so each test writes a torchvision-format
``state_dict`` with known random values (torchvision's key names and shapes) and checks what
braincam built from it: every tensor landed where it belongs, the first conv's 1-channel
adaptation is the sum of the RGB kernels, the head is new, and training starts from the file.
The expected key correspondence is written out here, not taken from the zoo's own key maps.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from braincam.errors import ModelError
from braincam.models import build_model, get_spec, list_models
from braincam.models.weights import reference_shapes

# First conv of each torchvision architecture (the tensor adapted to the input channels).
FIRST_CONV = {
    "alexnet": "features.0.weight",
    "vgg16": "features.0.weight",
    "vgg19": "features.0.weight",
    "googlenet": "conv1.conv.weight",
    "inception_v3": "Conv2d_1a_3x3.conv.weight",
    "resnet18": "conv1.weight",
    "resnet50": "conv1.weight",
    "r3d_18": "stem.0.weight",  # torchvision's video ResNet-18 (Kinetics-400 weights)
}
# AlexNet-BN's convs sit at other indices than torchvision's (a BatchNorm follows each conv).
ALEXNET_BN_CONVS = {0: 0, 4: 3, 8: 6, 11: 8, 14: 10}
# Files of > 50 M parameters: slow to write and read on a small CPU machine.
BIG = {"alexnet", "vgg16", "vgg19"}

PRETRAINED = [n for n in list_models() if get_spec(n).pretrained is not None]


def _params(name: str) -> object:
    arch = get_spec(name).pretrained
    marks = [pytest.mark.slow] if arch in BIG and name != "alexnet-gap" else []
    return pytest.param(name, marks=marks, id=name)


def write_imagenet_file(arch: str, path: Path, seed: int) -> Path:
    """A torchvision-format ``state_dict`` of ``arch``, seeded random values, saved to ``path``."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in reference_shapes(arch).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5  # a variance is positive
        else:
            state[key] = torch.randn(shape, generator=gen)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def imagenet_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Written on first use, one file per architecture, shared by this module's tests."""
    return {}


def _file(files: dict[str, Path], arch: str, tmp: pytest.TempPathFactory) -> Path:
    if arch not in files:
        seed = sorted(FIRST_CONV).index(arch)
        files[arch] = write_imagenet_file(arch, tmp.mktemp("imagenet") / f"{arch}.pth", seed)
    return files[arch]


def expected_source(name: str, key: str) -> str | None:
    """The file key a model key must come from (``None``: new layer, not from the file)."""
    spec = get_spec(name)
    if spec.head == "fc":
        head = {"alexnet": "classifier.6.", "vgg": "classifier.6.", "resnet": "fc."}[spec.family]
        return None if key.startswith(head) else key
    if name == "alexnet-bn-gap":
        match = re.fullmatch(r"backbone\.features\.(\d+)\.(weight|bias)", key)
        if match and int(match[1]) in ALEXNET_BN_CONVS:
            return f"features.{ALEXNET_BN_CONVS[int(match[1])]}.{match[2]}"
        return None
    return key.removeprefix("backbone.") if key.startswith("backbone.") else None


def check_from_file(
    name: str,
    model_state: dict[str, torch.Tensor],
    file_state: dict[str, torch.Tensor],
    atol: float = 0.0,
) -> int:
    """Assert every transferred tensor equals the file's; return how many came from the file."""
    arch = get_spec(name).pretrained
    loaded = 0
    for key, value in model_state.items():
        source = expected_source(name, key)
        if source is None:
            continue
        assert source in file_state, f"{name}: {key} has no counterpart {source} in the file"
        expected = file_state[source]
        if source == FIRST_CONV[arch] and value.shape[1] == 1:
            expected = expected.sum(dim=1, keepdim=True)
        torch.testing.assert_close(value, expected, rtol=0, atol=atol, msg=f"{name}: {key}")
        loaded += 1
    return loaded


@pytest.mark.parametrize("name", [_params(n) for n in PRETRAINED])
def test_every_pretrained_network_loads_a_local_torchvision_file(
    name: str, imagenet_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    arch = get_spec(name).pretrained
    path = _file(imagenet_files, arch, tmp_path_factory)
    file_state = torch.load(path, weights_only=True)
    rgb = file_state[FIRST_CONV[arch]]
    for in_channels in (1, 3):
        model = build_model(name, in_channels=in_channels, num_classes=5, weights=path)
        state = model.state_dict()
        loaded = check_from_file(name, state, file_state)
        assert loaded >= 4, f"{name}: only {loaded} tensors taken from the file"
        first = next(v for k, v in state.items() if expected_source(name, k) == FIRST_CONV[arch])
        if in_channels == 1:
            # The grey kernel is the sum of the RGB kernels: check one weight by hand too.
            assert first.shape == (rgb.shape[0], 1, *rgb.shape[2:])
            at = (1,) * (rgb.ndim - 2)  # kernel position (1, 1) in 2-D, (1, 1, 1) in 3-D
            assert first[(2, 0, *at)].item() == pytest.approx(
                rgb[(2, slice(None), *at)].sum().item()
            )
        else:
            torch.testing.assert_close(first, rgb, rtol=0, atol=0)
        # The head is new: no tensor of it comes from the file, and it has 5 outputs.
        new = [k for k in state if expected_source(name, k) is None]
        assert new, f"{name}: no new layers"
        model.eval()
        with torch.no_grad():
            logits = model(torch.randn(1, in_channels, *get_spec(name).input_shape))
        assert logits.shape == (1, 5)


def test_training_starts_from_the_file(
    tmp_path: Path, imagenet_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """fit with ``train.weights``: after one step at a negligible learning rate the saved
    parameters are still the file's (so the optimizer started from them, not from a random
    init)."""
    from braincam.config import TrainConfig
    from braincam.pipeline.train import fit
    from builders.store import write_store

    path = _file(imagenet_files, "resnet18", tmp_path_factory)
    file_state = torch.load(path, weights_only=True)
    work = write_store(tmp_path / "work", size=32)
    cfg = TrainConfig.model_validate(
        {
            "epochs": 1,
            "batch_size": 8,
            "accelerator": "cpu",
            "devices": 1,
            "limit_train_batches": 1,
            "weights": str(path),
            # lr x grad is negligible: the weights stay within 1e-30 of where training started
            # (a random init would differ by O(1)).
            "optimizer": {"name": "sgd", "lr": 1e-38, "momentum": 0.0},
        }
    )
    fit(work, tmp_path / "run", model="resnet18-gap", config=cfg, progress=False)
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    params = dict(build_model("resnet18-gap").named_parameters())
    # Buffers (BatchNorm running statistics) move in a training step; parameters must not.
    trained = {k: v for k, v in saved.items() if k in params}
    assert check_from_file("resnet18-gap", trained, file_state, atol=1e-30) >= 40


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "resnet18.pth"
    with pytest.raises(ModelError, match=re.escape(f"weights file not found: {missing}")):
        build_model("resnet18-gap", weights=missing)


def test_file_of_another_architecture_names_the_file_and_keys(
    imagenet_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    googlenet = _file(imagenet_files, "googlenet", tmp_path_factory)
    with pytest.raises(ModelError) as info:
        build_model("resnet18-gap", weights=googlenet)
    message = str(info.value)
    assert str(googlenet) in message and "resnet18" in message
    assert "unexpected keys" in message and "conv1.conv.weight" in message
    resnet18 = _file(imagenet_files, "resnet18", tmp_path_factory)
    with pytest.raises(ModelError, match=r"resnet50.*missing keys: .*layer1\.0\.conv3\.weight"):
        build_model("resnet50-gap", weights=resnet18)
