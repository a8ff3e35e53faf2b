"""Network builders: torchvision backbones cut for a ~14×14 map, FC originals, small CPU CNNs,
and their 3-D counterparts for volumes (torchvision's video ResNet-18, SFCN-style and tiny CNNs).

torchvision models are built on the meta device (no memory, no init cost for layers that are
cut away), edited there, then materialised and initialised the way torchvision initialises each
family — so a 138 M-parameter VGG classifier is never drawn only to be thrown away.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from braincam.imaging.filters import gaussian_blur
from braincam.models.heads import CamHead, CamNet, Pooling, SpatialDims
from braincam.models.weights import Transfer

Built = tuple[nn.Module, Transfer | None]

# Per torchvision architecture: the module path of the first conv (replaced for in_channels != 3).
_FIRST_CONV = {
    "alexnet": "features.0",
    "vgg16": "features.0",
    "vgg19": "features.0",
    "googlenet": "conv1.conv",
    "inception_v3": "Conv2d_1a_3x3.conv",
    "resnet18": "conv1",
    "resnet50": "conv1",
    "r3d_18": "stem.0",
}
_CONVS = (nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)


def _torchvision_on_meta(arch: str, **kwargs: object) -> nn.Module:
    """torchvision's ``arch`` with random (meta) weights — never its download path."""
    if arch in ("googlenet", "inception_v3"):
        # The aux heads only serve ImageNet training; transform_input re-normalises for
        # ImageNet RGB statistics, which MRI input does not have.
        kwargs = {"aux_logits": False, "init_weights": True, "transform_input": False, **kwargs}
    with torch.device("meta"):
        return tvm.get_model(arch, weights=None, **kwargs)


def _replace_conv_inputs(
    root: nn.Module, path: str, in_channels: int, stride: tuple[int, ...] | None = None
) -> None:
    """Swap the conv at ``path`` for one taking ``in_channels`` inputs (same geometry, or the
    given ``stride``: the kernel shape, hence the weights' shape, stays)."""
    old = root.get_submodule(path)
    if not isinstance(old, _CONVS):
        raise TypeError(f"{path} is {type(old).__name__}, not Conv2d or Conv3d")
    stride = old.stride if stride is None else stride
    if old.in_channels == in_channels and old.stride == stride:
        return
    new = type(old)(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        device=old.weight.device,
    )
    parent_path, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, child, new)


def _init_layer(m: nn.Module, arch: str) -> None:
    """Initialise one layer as torchvision's ``arch`` does (PyTorch's default otherwise)."""
    family_conv = arch.startswith(("vgg", "resnet", "r3d"))
    truncated = arch in ("googlenet", "inception_v3")
    if isinstance(m, _BATCH_NORMS):
        m.reset_running_stats()
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, _CONVS) and family_conv:
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear) and arch.startswith("vgg"):
        nn.init.normal_(m.weight, 0.0, 0.01)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.Linear)) and truncated:
        default_std = 0.01 if arch == "googlenet" else 0.1
        std = float(getattr(m, "stddev", default_std))
        nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2.0, b=2.0)
        if m.bias is not None:
            m.bias.data.copy_(_default_bias(m))
    elif callable(getattr(m, "reset_parameters", None)):
        # AlexNet (and the AlexNet-BN convs), ResNet's fc: PyTorch's default, as in torchvision;
        # any other parametrised layer too — never leave to_empty's uninitialised memory.
        m.reset_parameters()


def _default_bias(m: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """PyTorch's default bias init (uniform in ±1/sqrt(fan_in)), which torchvision keeps."""
    fan_in = m.weight[0].numel()
    bound = 1.0 / fan_in**0.5 if fan_in > 0 else 0.0
    return torch.empty_like(m.bias).uniform_(-bound, bound)


def _init_family(module: nn.Module, arch: str) -> None:
    """Materialise ``module`` on the CPU and initialise it as torchvision does for ``arch``.

    Each layer is drawn once (a 100 M-parameter classifier costs seconds per draw on a CPU).
    """
    module.to_empty(device="cpu")
    for m in module.modules():
        _init_layer(m, arch)


def _children_through(model: nn.Module, last: str) -> OrderedDict[str, nn.Module]:
    """The top-level children of ``model`` up to and including ``last``, names kept."""
    kept: OrderedDict[str, nn.Module] = OrderedDict()
    for name, child in model.named_children():
        kept[name] = child
        if name == last:
            return kept
    raise KeyError(last)


def _cut_torchvision(arch: str, last: str, features_end: int | None) -> nn.Sequential:
    """torchvision ``arch`` (meta) through child ``last``; ``features[:features_end]`` if given.

    Slicing an ``nn.Sequential`` keeps its original indices, so parameter names stay
    torchvision's (``features.28.weight``) and ImageNet files load by name.
    """
    children = _children_through(_torchvision_on_meta(arch), last)
    if features_end is not None:
        children[last] = children[last][:features_end]
    return nn.Sequential(children)


def _out_channels(backbone: nn.Module, in_channels: int) -> int:
    """Channels of the backbone's output, from a shape-only forward on the meta device."""
    probe = torch.empty(1, in_channels, 96, 96, device="meta")
    with torch.no_grad():
        return int(backbone.to("meta")(probe).shape[1])


def _strip_prefix(prefix: str) -> Callable[[str], str | None]:
    def key_map(key: str) -> str | None:
        return key[len(prefix) :] if key.startswith(prefix) else None

    return key_map


def build_cut_gap(
    arch: str,
    last: str,
    features_end: int | None,
    *,
    pool: Pooling,
    in_channels: int,
    num_classes: int,
    dropout: float,
) -> Built:
    """torchvision ``arch`` cut after ``last`` (and ``features_end``) + the CAM head."""
    backbone = _cut_torchvision(arch, last, features_end)
    _replace_conv_inputs(backbone, _FIRST_CONV[arch], in_channels)
    channels = _out_channels(backbone, in_channels)
    _init_family(backbone, arch)
    head = CamHead(channels, num_classes, pool=pool, dropout=dropout)
    transfer = Transfer(arch, _strip_prefix("backbone."), _FIRST_CONV[arch] + ".weight")
    return CamNet(backbone, head), transfer


def build_fc(
    arch: str,
    head_path: str,
    cam_relu: str | None,
    *,
    in_channels: int,
    num_classes: int,
    dropout: float,
) -> Built:
    """torchvision ``arch`` with its own classifier; only the last Linear is replaced.

    ``cam_relu`` (the ReLU after the last conv, the Grad-CAM layer) is made non-in-place so
    hooks on its output see a tensor autograd does not overwrite.
    """
    kwargs: dict[str, object] = {"num_classes": num_classes}
    if arch == "alexnet" or arch.startswith("vgg"):
        kwargs["dropout"] = dropout  # ResNet's head has no dropout: replacing only the Linear
    model = _torchvision_on_meta(arch, **kwargs)
    _replace_conv_inputs(model, _FIRST_CONV[arch], in_channels)
    if cam_relu is not None:
        parent, _, child = cam_relu.rpartition(".")
        setattr(model.get_submodule(parent), child, nn.ReLU(inplace=False))
    _init_family(model, arch)
    head_prefix = head_path + "."

    def key_map(key: str) -> str | None:
        return None if key.startswith(head_prefix) else key

    return model, Transfer(arch, key_map, _FIRST_CONV[arch] + ".weight")


# AlexNet-BN: AlexNet's features with BatchNorm after each conv (torchvision has none).
_ALEXNET_CONVS = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
_ALEXNET_POOL_AFTER = (0, 1)


def alexnet_bn_features(in_channels: int) -> tuple[nn.Sequential, dict[str, str]]:
    """AlexNet conv1–conv5 (+BN, ReLU; pools after conv1, conv2) and key map to torchvision's."""
    layers: list[nn.Module] = []
    key_map: dict[str, str] = {}
    tv_index = 0  # index of the same conv in torchvision's alexnet.features
    channels = in_channels
    for i, (out, kernel, stride, pad) in enumerate(_ALEXNET_CONVS):
        for suffix in ("weight", "bias"):
            key_map[f"backbone.features.{len(layers)}.{suffix}"] = f"features.{tv_index}.{suffix}"
        # The conv keeps its bias (redundant before BN) so every AlexNet conv tensor transfers.
        conv = nn.Conv2d(channels, out, kernel, stride, pad)
        layers += [conv, nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        tv_index += 2
        if i in _ALEXNET_POOL_AFTER:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            tv_index += 1
        channels = out
    return nn.Sequential(*layers), key_map


def build_alexnet_bn_gap(*, in_channels: int, num_classes: int, dropout: float) -> Built:
    """AlexNet-BN cut after conv5 (+BN, ReLU) + the CAM head; conv weights from AlexNet."""
    features, key_map = alexnet_bn_features(in_channels)
    backbone = nn.Sequential(OrderedDict(features=features))
    _init_family(backbone, "alexnet")
    head = CamHead(_ALEXNET_CONVS[-1][0], num_classes, pool="gap", dropout=dropout)
    return CamNet(backbone, head), Transfer("alexnet", key_map.get, "features.0.weight")


def small_cnn_features(
    in_channels: int,
    widths: Sequence[int],
    *,
    pools: int | None = None,
    norm: str = "batch",
    spatial_dims: SpatialDims = 2,
) -> nn.Sequential:
    """Conv 3×3 → norm → ReLU blocks; 2×2 max-pool after the first ``pools`` blocks (default:
    every block but the last). ``norm``: ``batch`` (BatchNorm) or ``group`` (GroupNorm, 8
    groups: the same in training and evaluation, whatever the batch holds). ``spatial_dims=3``:
    conv 3×3×3, BatchNorm3d, 2×2×2 max-pool — SFCN's block (Peng et al. 2021) up to the order of
    ReLU and max-pool, which commute (both are monotone), so the outputs are the same."""
    pools = len(widths) - 1 if pools is None else pools
    conv, batch_norm, max_pool = (
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
        if spatial_dims == 2
        else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
    )
    blocks: list[nn.Module] = []
    channels = in_channels
    for i, width in enumerate(widths):
        normalization = batch_norm(width) if norm == "batch" else nn.GroupNorm(8, width)
        layers: list[nn.Module] = [
            conv(channels, width, 3, padding=1, bias=False),
            normalization,
            nn.ReLU(inplace=True),
        ]
        if i < pools:
            layers.append(max_pool(2))
        blocks.append(nn.Sequential(*layers))
        channels = width
    return nn.Sequential(*blocks)


def build_small_cnn(
    widths: Sequence[int],
    head_width: int,
    *,
    in_channels: int,
    num_classes: int,
    dropout: float,
    pools: int | None = None,
    norm: str = "batch",
    spatial_dims: SpatialDims = 2,
    head_kernel: int = 3,
    pool: Pooling = "gap",
) -> Built:
    """A small CNN for CPU work (input-size agnostic) + the CAM head; no pretrained weights.
    ``pools``, ``norm`` and ``spatial_dims`` as in :func:`small_cnn_features`; ``head_kernel``
    the CAM head conv's size (1: SFCN's closing 1×1×1 conv block); ``pool`` the head's global
    pooling."""
    features = small_cnn_features(
        in_channels, widths, pools=pools, norm=norm, spatial_dims=spatial_dims
    )
    backbone = nn.Sequential(OrderedDict(features=features))
    head = dict(pool=pool, dropout=dropout, spatial_dims=spatial_dims, kernel_size=head_kernel)
    return _from_scratch(backbone, widths[-1], num_classes, head_width, **head), None


def _from_scratch(
    backbone: nn.Module, channels: int, num_classes: int, head_width: int, **head: Any
) -> CamNet:
    """``backbone`` (its convs He-initialized for ReLU) + a :class:`CamHead` on its
    ``channels``: the small networks trained from scratch. ``head``: CamHead's options."""
    for m in backbone.modules():
        if isinstance(m, _CONVS):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return CamNet(backbone, CamHead(channels, num_classes, width=head_width, **head))


class SpatialPrior(nn.Module):
    """A learned spatial attention prior: the features times ``N · softmax(gain · logits)`` over
    the ``N`` cells of the grid (one map shared by all channels and subjects).

    The logits start at zero (the identity: the head's GAP is then the plain average) and are
    resized (bi/trilinearly) when the feature grid differs from ``grid``. Training concentrates the
    map where the group difference is, so the head pools a few cells instead of the whole brain
    (a focal effect is otherwise diluted over thousands of cells). ``gain`` scales the logits'
    step: with Adam a parameter moves about ``lr`` per step whatever its gradient's size, and
    the map must sharpen ``gain`` times faster than the convolutions change.

    ``blur`` (cells of ``grid``; 0: none) spreads the softmax with a Gaussian before it weights
    the features. Without it the softmax collapses onto one cell within a few epochs and stays
    there (its gradient vanishes once saturated), often a cell beside the effect from which the
    convolutions still see it; a blob pools the evidence around its centre, and the centre that
    pools the most is the effect's.
    """

    def __init__(self, grid: Sequence[int], gain: float = 100.0, blur: float = 0.0) -> None:
        super().__init__()
        self.gain = gain
        self.blur = blur
        self.logits = nn.Parameter(torch.zeros(1, 1, *grid))

    def weights(self, size: Sequence[int]) -> torch.Tensor:
        """The prior on a grid of ``size`` (1, 1, *size); it averages 1 over the grid."""
        logits = self.logits * self.gain
        if tuple(logits.shape[2:]) != tuple(size):
            mode = "bilinear" if len(size) == 2 else "trilinear"
            logits = F.interpolate(logits, size=tuple(size), mode=mode, align_corners=True)
        cells = logits[0, 0].numel()
        prior = torch.softmax(logits.flatten(2), -1).view_as(logits)
        if self.blur > 0:
            grid = self.logits.shape[2:]
            sigmas = [self.blur * s / g for s, g in zip(size, grid, strict=True)]
            prior = gaussian_blur(prior, sigmas, edges="zeros")
            prior = prior / prior.sum()  # the edges lose a little mass
        return prior * cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x.shape[2:])


def build_prior_cnn(
    widths: Sequence[int],
    head_width: int,
    *,
    grid: Sequence[int],
    in_channels: int,
    num_classes: int,
    dropout: float,
    gain: float = 100.0,
    blur: float = 0.0,
    head_kernel: int = 1,
) -> Built:
    """2×2(×2) average-pool stem → conv blocks (BN, no pooling) → :class:`SpatialPrior` → the
    CAM head (GAP); 2-D or 3-D after ``grid``'s length. The CAM grid is input/2: a 10–16 mm
    sphere spans a few cells there, where max-pooled input/4–input/8 grids average it away."""
    spatial_dims = len(grid)
    features = small_cnn_features(in_channels, widths, pools=0, spatial_dims=spatial_dims)
    stem = nn.AvgPool2d(2) if spatial_dims == 2 else nn.AvgPool3d(2)
    backbone = nn.Sequential(
        OrderedDict(stem=stem, features=features, prior=SpatialPrior(grid, gain, blur))
    )
    head = dict(pool="gap", dropout=dropout, spatial_dims=spatial_dims, kernel_size=head_kernel)
    return _from_scratch(backbone, widths[-1], num_classes, head_width, **head), None


# torchvision's video ResNet stem convolves (3, 7, 7) with stride (1, 2, 2): a video keeps its
# frame rate and halves each frame. A brain volume has no such special axis (voxels are
# isotropic after preparation), so the stem strides 2 along all three: the CAM grid stays
# isotropic (input/8 after layer3) and layer1, the costliest stage, runs on half the voxels.
# The kernel shape is kept, so Kinetics-400 weights still load into it.
_R3D_STEM_STRIDE = (2, 2, 2)


def build_r3d_gap(
    *,
    pool: Pooling,
    head_width: int,
    in_channels: int,
    num_classes: int,
    dropout: float,
) -> Built:
    """torchvision's ``r3d_18`` (video ResNet-18) through ``layer3`` + the 3-D CAM head.

    As ``resnet18-gap`` is cut after ``layer3`` in 2-D; the stem strides 2 in all three axes
    (see ``_R3D_STEM_STRIDE``). Parameter names stay torchvision's under ``backbone.``, so a
    local Kinetics-400 file (``r3d_18-b3b3357e.pth``) loads, the stem's RGB kernels summed for 1
    channel as for the 2-D models.
    """
    children = _children_through(_torchvision_on_meta("r3d_18"), "layer3")
    backbone = nn.Sequential(children)
    _replace_conv_inputs(backbone, _FIRST_CONV["r3d_18"], in_channels, _R3D_STEM_STRIDE)
    _init_family(backbone, "r3d_18")
    channels = backbone.get_submodule("layer3")[-1].conv2[0].out_channels
    head = CamHead(
        channels, num_classes, width=head_width, pool=pool, dropout=dropout, spatial_dims=3
    )
    transfer = Transfer("r3d_18", _strip_prefix("backbone."), _FIRST_CONV["r3d_18"] + ".weight")
    return CamNet(backbone, head), transfer
