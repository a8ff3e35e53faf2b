"""The model zoo: name → builder + metadata (CAM layer, classifier, feature size, input size).

2-D networks take slices ``(N, C, H, W)``; those whose name contains ``3d`` take volumes
``(N, C, D, H, W)`` (``spec.spatial_dims == 3``).

The registry is open: :func:`register_model` (a call or a decorator) adds a network under a new
name, and it is then built by :func:`build_model`, trained by ``braincam train --model NAME`` and
accepted in an experiment's ``models`` list, like the built-in ones. See docs/models.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from torch import nn

from braincam.errors import ModelError
from braincam.models import backbones as bb
from braincam.models.weights import find_imagenet_file, load_state_file, transfer_weights

Head = Literal["gap", "gmp", "fc"]
_GAP_CAM, _GAP_FC = "head.conv", "head.fc"


@dataclass(frozen=True)
class ModelSpec:
    """Registry metadata of one model.

    ``cam_layer`` is a ``get_submodule`` name (the default CAM / Grad-CAM layer); ``classifier``
    the ``nn.Linear`` whose weights CAM uses (``None`` for FC heads); ``feature_size`` the CAM
    layer's spatial size at ``input_shape``; ``pretrained`` the torchvision architecture whose
    ImageNet (for ``r3d_18``: Kinetics-400) weights load into it (``None``: train from scratch
    only); ``spatial_dims`` 2 (slices) or 3 (volumes).
    """

    name: str
    family: str
    head: Head
    cam_layer: str
    classifier: str | None
    feature_size: tuple[int, ...] | None
    input_size: int
    description: str
    pretrained: str | None = None
    spatial_dims: int = 2

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The nominal spatial input shape: ``input_size`` along each of ``spatial_dims`` axes."""
        return (self.input_size,) * self.spatial_dims


Builder = Callable[..., "bb.Built"]


def _gap(
    name: str,
    family: str,
    arch: str,
    last: str,
    features_end: int | None,
    size: int,
    description: str,
    pool: Literal["gap", "gmp"] = "gap",
) -> tuple[ModelSpec, Builder]:
    spec = ModelSpec(
        name, family, pool, _GAP_CAM, _GAP_FC, (size, size), 224, description, pretrained=arch
    )
    return spec, partial(bb.build_cut_gap, arch, last, features_end, pool=pool)


def _fc(
    name: str, family: str, arch: str, head_path: str, cam_layer: str, size: int, description: str
) -> tuple[ModelSpec, Builder]:
    # The Grad-CAM layer of an FC model is the ReLU after its last conv, or ResNet's layer4.
    cam_relu = cam_layer if family != "resnet" else None
    spec = ModelSpec(name, family, "fc", cam_layer, None, (size, size), 224, description, arch)
    return spec, partial(bb.build_fc, arch, head_path, cam_relu)


_ENTRIES: tuple[tuple[ModelSpec, Builder], ...] = (
    _gap("alexnet-gap", "alexnet", "alexnet", "features", 12, 13,
         "AlexNet through conv5+ReLU, conv3x3/1024, GAP"),
    (
        ModelSpec("alexnet-bn-gap", "alexnet", "gap", _GAP_CAM, _GAP_FC, (13, 13), 224,
                  "AlexNet with BatchNorm after each conv, through conv5, conv3x3/1024, GAP",
                  pretrained="alexnet"),
        bb.build_alexnet_bn_gap,
    ),
    _gap("vgg16-gap", "vgg", "vgg16", "features", 30, 14,
         "VGG16 through conv5_3+ReLU, conv3x3/1024, GAP"),
    _gap("vgg19-gap", "vgg", "vgg19", "features", 36, 14,
         "VGG19 through conv5_4+ReLU, conv3x3/1024, GAP"),
    _gap("googlenet-gap", "googlenet", "googlenet", "inception4e", None, 14,
         "GoogLeNet through inception4e, conv3x3/1024, GAP"),
    _gap("googlenet-gmp", "googlenet", "googlenet", "inception4e", None, 14,
         "GoogLeNet through inception4e, conv3x3/1024, global max pooling", pool="gmp"),
    _gap("inceptionv3-gap", "inception", "inception_v3", "Mixed_6e", None, 12,
         "InceptionV3 through Mixed_6e (last 17x17 block at 299), conv3x3/1024, GAP"),
    _gap("resnet18-gap", "resnet", "resnet18", "layer3", None, 14,
         "ResNet18 through layer3, conv3x3/1024, GAP"),
    _gap("resnet50-gap", "resnet", "resnet50", "layer3", None, 14,
         "ResNet50 through layer3, conv3x3/1024, GAP"),
    _fc("alexnet-fc", "alexnet", "alexnet", "classifier.6", "features.11", 13,
        "AlexNet with its FC classifier (last Linear replaced)"),
    _fc("vgg16-fc", "vgg", "vgg16", "classifier.6", "features.29", 14,
        "VGG16 with its FC classifier (last Linear replaced)"),
    _fc("vgg19-fc", "vgg", "vgg19", "classifier.6", "features.35", 14,
        "VGG19 with its FC classifier (last Linear replaced)"),
    _fc("resnet18-fc", "resnet", "resnet18", "fc", "layer4", 7,
        "ResNet18 with its linear classifier (replaced)"),
    _fc("resnet50-fc", "resnet", "resnet50", "fc", "layer4", 7,
        "ResNet50 with its linear classifier (replaced)"),
    (
        ModelSpec("smallcnn-gap", "smallcnn", "gap", _GAP_CAM, _GAP_FC, (12, 12), 96,
                  "4 conv blocks (32-64-128-256, BN, 3 max-pools), conv3x3/256, GAP; CPU-sized"),
        partial(bb.build_small_cnn, (32, 64, 128, 256), 256),
    ),
    # Finer CAM grids and batch-independent normalization for the localization benchmark
    # (benchmarks/bench_localization.py): 2 pools give a size/4 grid instead of size/8.
    (
        ModelSpec("smallcnn-p2-gap", "smallcnn", "gap", _GAP_CAM, _GAP_FC, (24, 24), 96,
                  "smallcnn-gap with 2 max-pools (CAM grid = input/4); CPU-sized"),
        partial(bb.build_small_cnn, (32, 64, 128, 256), 256, pools=2),
    ),
    # Global max pooling (googlenet-gmp's head on the small CNN): the logit reads each channel
    # at one place instead of its mean; compared with GAP on a random sphere in BENCHMARKS.md.
    (
        ModelSpec("smallcnn-gmp", "smallcnn", "gmp", _GAP_CAM, _GAP_FC, (12, 12), 96,
                  "smallcnn-gap with global max pooling; CPU-sized"),
        partial(bb.build_small_cnn, (32, 64, 128, 256), 256, pool="gmp"),
    ),
    (
        ModelSpec("smallcnn-p2-gmp", "smallcnn", "gmp", _GAP_CAM, _GAP_FC, (24, 24), 96,
                  "smallcnn-p2-gap with global max pooling (CAM grid = input/4); CPU-sized"),
        partial(bb.build_small_cnn, (32, 64, 128, 256), 256, pools=2, pool="gmp"),
    ),
    (
        ModelSpec("smallcnn-gn-gap", "smallcnn", "gap", _GAP_CAM, _GAP_FC, (12, 12), 96,
                  "smallcnn-gap with GroupNorm (8 groups) instead of BatchNorm; CPU-sized"),
        partial(bb.build_small_cnn, (32, 64, 128, 256), 256, norm="group"),
    ),
    (
        ModelSpec("smallcnn-gn-p2-gap", "smallcnn", "gap", _GAP_CAM, _GAP_FC, (24, 24), 96,
                  "smallcnn-gap with GroupNorm and 2 max-pools (CAM grid = input/4)"),
        partial(bb.build_small_cnn, (32, 64, 128, 256), 256, pools=2, norm="group"),
    ),
    # A learned spatial prior in the plane (priorcnn3d-gap's design on slices, issue 14): CAM
    # grid input/2 instead of input/8.
    (
        ModelSpec("priorcnn-gap", "priorcnn", "gap", _GAP_CAM, _GAP_FC, (32, 32), 64,
                  "avg-pool stem, 2 conv blocks (16-16, BN, no pooling), a learned spatial "
                  "attention prior (softmax map, 32x32, Gaussian blur of 1 cell), conv1x1/16, "
                  "GAP; for focal effects"),
        partial(bb.build_prior_cnn, (16, 16), 16, grid=(32, 32), blur=1.0),
    ),
    (
        ModelSpec("tinycnn-gap", "smallcnn", "gap", _GAP_CAM, _GAP_FC, (12, 12), 96,
                  "4 conv blocks (8-16-32-64, BN, 3 max-pools), conv3x3/64, GAP; for tests"),
        partial(bb.build_small_cnn, (8, 16, 32, 64), 64),
    ),
    # Volumes (issue 15). CAM grids at other input shapes: docs/models.md, "3-D models".
    (
        ModelSpec("tinycnn3d-gap", "smallcnn3d", "gap", _GAP_CAM, _GAP_FC, (8, 8, 8), 32,
                  "3 conv3d blocks (4-8-16, BN, 2 max-pools), conv3x3x3/16, GAP; for tests",
                  spatial_dims=3),
        partial(bb.build_small_cnn, (4, 8, 16), 16, pools=2, spatial_dims=3),
    ),
    (
        ModelSpec("priorcnn3d-gap", "priorcnn3d", "gap", _GAP_CAM, _GAP_FC, (32, 32, 32), 64,
                  "avg-pool stem, 2 conv3d blocks (8-8, BN, no pooling), a learned spatial "
                  "attention prior (softmax map, 28x34x29), conv1x1x1/8, GAP; for focal effects",
                  spatial_dims=3),
        partial(bb.build_prior_cnn, (8, 8), 8, grid=(28, 34, 29)),
    ),
    (
        ModelSpec("sfcn3d-gap", "sfcn3d", "gap", _GAP_CAM, _GAP_FC, (8, 8, 8), 64,
                  "SFCN-style (Peng et al. 2021): 5 conv3d blocks (32-64-128-256-256, BN, "
                  "3 max-pools), conv1x1x1/64, GAP", spatial_dims=3),
        partial(bb.build_small_cnn, (32, 64, 128, 256, 256), 64, pools=3, spatial_dims=3,
                head_kernel=1),
    ),
    (
        ModelSpec("resnet18-3d-gap", "resnet3d", "gap", _GAP_CAM, _GAP_FC, (8, 8, 8), 64,
                  "torchvision's r3d_18 (stem stride 2 in 3 axes) through layer3, "
                  "conv3x3x3/512, GAP", pretrained="r3d_18", spatial_dims=3),
        partial(bb.build_r3d_gap, pool="gap", head_width=512),
    ),
    (
        ModelSpec("resnet18-3d-gmp", "resnet3d", "gmp", _GAP_CAM, _GAP_FC, (8, 8, 8), 64,
                  "resnet18-3d-gap with global max pooling", pretrained="r3d_18",
                  spatial_dims=3),
        partial(bb.build_r3d_gap, pool="gmp", head_width=512),
    ),
)  # fmt: skip

_REGISTRY: dict[str, tuple[ModelSpec, Builder]] = {
    spec.name: (spec, builder) for spec, builder in _ENTRIES
}
_BUILTIN = frozenset(_REGISTRY)


def register_model(
    name: str,
    builder: Callable[..., nn.Module | bb.Built] | None = None,
    *,
    cam_layer: str,
    classifier: str | None = None,
    head: Head = "gap",
    family: str | None = None,
    feature_size: tuple[int, ...] | None = None,
    input_size: int = 224,
    description: str = "",
    pretrained: str | None = None,
    spatial_dims: int = 2,
) -> Any:
    """Add a network to the zoo under ``name``; with no ``builder``, a decorator.

    ``builder(in_channels=, num_classes=, dropout=)`` returns the ``nn.Module`` (or, like the
    built-in builders, ``(module, transfer)`` for ImageNet weights). The metadata are those of
    :class:`ModelSpec`: ``cam_layer`` is the ``get_submodule`` name CAM methods explain by
    default, ``classifier`` the ``nn.Linear`` after global pooling that CAM needs (``None``: a
    fully connected head, gradient methods only). Returns the builder (so the decorator leaves
    the function usable) — the :class:`ModelSpec` is ``get_spec(name)``. A name that is already
    registered is refused with :class:`ModelError` (:func:`unregister_model` first)::

        @register_model("mynet-gap", cam_layer="features", classifier="fc")
        def mynet(*, in_channels, num_classes, dropout):
            return MyNet(in_channels, num_classes, dropout)
    """
    if builder is None:
        return partial(
            _register_decorated,
            name,
            cam_layer=cam_layer,
            classifier=classifier,
            head=head,
            family=family,
            feature_size=feature_size,
            input_size=input_size,
            description=description,
            pretrained=pretrained,
            spatial_dims=spatial_dims,
        )
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"a model name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise ModelError(
            f"model {name!r} is already registered; choose another name or unregister it first"
        )
    if not callable(builder):
        raise ModelError(f"the builder of {name!r} must be callable, got {builder!r}")
    if spatial_dims not in (2, 3):
        raise ModelError(f"spatial_dims of {name!r} must be 2 or 3, got {spatial_dims!r}")
    spec = ModelSpec(
        name=name,
        family=family or name,
        head=head,
        cam_layer=cam_layer,
        classifier=classifier,
        feature_size=None if feature_size is None else tuple(feature_size),
        input_size=input_size,
        description=description or getattr(builder, "__doc__", None) or name,
        pretrained=pretrained,
        spatial_dims=spatial_dims,
    )
    _REGISTRY[name] = (spec, builder)  # type: ignore[assignment]
    return builder


def _register_decorated(name: str, builder: Callable[..., Any], **metadata: Any) -> Any:
    return register_model(name, builder, **metadata)


def unregister_model(name: str) -> None:
    """Remove a model added with :func:`register_model` (the built-in zoo stays)."""
    get_spec(name)
    if name in _BUILTIN:
        raise ModelError(f"model {name!r} is built in and cannot be unregistered")
    del _REGISTRY[name]


def list_models() -> list[str]:
    """All registered model names, in registry order (the studies' networks first)."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The metadata of model ``name``; ModelError listing the valid names if unknown."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        ) from None


def build_model(
    name: str,
    *,
    in_channels: int = 1,
    num_classes: int = 2,
    weights: str | Path | None = None,
    dropout: float = 0.5,
) -> nn.Module:
    """Build model ``name`` for ``in_channels`` inputs and ``num_classes`` outputs.

    ``weights``: ``None`` (random init), ``"imagenet"`` (torchvision's file in the torch hub
    cache, never downloaded) or a path to a torchvision ``state_dict``; loaded into the kept
    backbone, the first conv adapted to ``in_channels``. The module carries ``cam_layer``,
    ``classifier_layer`` and ``spec``.
    """
    spec = get_spec(name)
    builder = _REGISTRY[name][1]
    for arg, value, low in (("in_channels", in_channels, 1), ("num_classes", num_classes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ModelError(f"{arg} must be an integer >= {low}, got {value!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ModelError(f"dropout must be in [0, 1), got {dropout!r}")
    built = builder(in_channels=in_channels, num_classes=num_classes, dropout=dropout)
    model, transfer = (built, None) if isinstance(built, nn.Module) else built
    if weights is not None:
        if transfer is None:
            raise ModelError(f"{name} has no ImageNet counterpart; use weights=None")
        if isinstance(weights, str) and weights.lower() == "imagenet":
            path = find_imagenet_file(transfer.arch)
        else:
            path = Path(weights)
        transfer_weights(model, load_state_file(path), transfer, path)
    model.spec = spec
    model.cam_layer = spec.cam_layer
    model.classifier_layer = spec.classifier
    return model
