"""ImageNet weights from a local file or the torch hub cache (never downloaded), and their transfer.

A torchvision ``state_dict`` is matched key by key against the part of the network braincam keeps;
keys that are not torchvision's names for the architecture, kept keys the file lacks, and shape
mismatches raise :class:`~braincam.errors.ModelError` naming the file and the keys. For input
channels other than 3 the first conv is adapted the way timm does it: summed over RGB for one
channel, tiled and rescaled for more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from torch import nn

from braincam.errors import ModelError
from braincam.guard import load_refusal

# Keys torchvision adds after older checkpoints were saved; a file without them is still complete.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)
_MAX_KEYS_SHOWN = 8


@dataclass(frozen=True)
class Transfer:
    """How a built model takes weights from a torchvision architecture.

    ``key_map`` maps a key of the built model's ``state_dict`` to the torchvision key it is
    loaded from, or ``None`` for layers that are new (heads, added BatchNorm). ``first_conv`` is
    the torchvision key of the first conv's weight, adapted when ``in_channels != 3``.
    """

    arch: str
    key_map: Callable[[str], str | None]
    first_conv: str


def reference_shapes(arch: str) -> dict[str, torch.Size]:
    """Every ``state_dict`` key → shape of torchvision's ``arch`` (built on the meta device).

    GoogLeNet and Inception are built with their auxiliary heads, as in the published files.
    """
    kwargs: dict[str, object] = {"weights": None}
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=True, init_weights=False)
    with torch.device("meta"):
        model = tvm.get_model(arch, **kwargs)
    return {k: v.shape for k, v in model.state_dict().items()}


def hub_checkpoint_candidates(arch: str) -> list[Path]:
    """The files torchvision would cache for ``arch``'s ImageNet weights, default first."""
    enum = tvm.get_model_weights(arch)
    members = [enum.DEFAULT, *[w for w in enum if w is not enum.DEFAULT]]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    names = dict.fromkeys(Path(urlparse(w.url).path).name for w in members)
    return [folder / name for name in names]


def find_imagenet_file(arch: str) -> Path:
    """The cached ImageNet weights for ``arch``; ModelError saying where it looked if absent."""
    candidates = hub_checkpoint_candidates(arch)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise ModelError(
        f"no ImageNet weights for {arch} in the torch hub cache (looked for {looked}); braincam "
        "never downloads: put torchvision's file there or pass weights=<path to a .pth file>"
    )


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A ``state_dict`` saved with ``torch.save``, loaded with ``weights_only=True`` on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not weights"
        raise ModelError(f"cannot read weights from {path}: {load_refusal(exc)}") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(state)


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB conv weights ``(out, 3, kh, kw)`` (or ``(out, 3, kd, kh, kw)``) for ``in_channels``
    inputs (timm's rule).

    One channel: the sum over RGB, so a grey image equal to R=G=B gives the same response.
    More: the RGB kernels tiled and scaled by ``3 / in_channels`` to keep the activation scale.
    """
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / weight.shape[1])
    tiled = weight.repeat(1, repeats, *[1] * (weight.ndim - 2))[:, :in_channels]
    return tiled * (weight.shape[1] / in_channels)


def _show(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f" … (+{more} more)" if more > 0 else "")


def transfer_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], transfer: Transfer, source: str | Path
) -> list[str]:
    """Copy ``state`` (torchvision names) into ``model`` as ``transfer`` maps it.

    Returns the model keys that were loaded. Raises ModelError naming ``source`` and the keys
    when the file is not a state_dict of ``transfer.arch`` or lacks / mis-shapes a kept key.
    """
    reference = reference_shapes(transfer.arch)
    unexpected = [k for k in state if k not in reference]
    if unexpected:
        hint = ""
        if any(k.startswith(("backbone.", "head.")) for k in unexpected):
            hint = " (a braincam checkpoint? load it with model.load_state_dict instead)"
        raise ModelError(
            f"{source} does not match torchvision's {transfer.arch}: {len(unexpected)} unexpected "
            f"keys: {_show(unexpected)}{hint}"
        )
    wrong_in_file = [
        f"{k} {tuple(v.shape)} (expected {tuple(reference[k])})"
        for k, v in state.items()
        if v.shape != reference[k]
    ]
    missing: list[str] = []
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for key, target in model.state_dict(keep_vars=True).items():
        src = transfer.key_map(key)
        if src is None:
            continue
        if src not in state:
            if not src.endswith(_OPTIONAL_SUFFIXES):
                missing.append(src)
            continue
        value = state[src]
        if src == transfer.first_conv and value.shape == reference[src]:
            value = adapt_first_conv(value, target.shape[1])
        if value.shape != target.shape:
            wrong_in_file.append(f"{src} {tuple(value.shape)} (model {tuple(target.shape)})")
            continue
        pairs.append((target, value))
    if missing:
        raise ModelError(
            f"{source} does not match torchvision's {transfer.arch}: {len(missing)} missing "
            f"keys: {_show(missing)}"
        )
    if wrong_in_file:
        raise ModelError(
            f"{source} does not match torchvision's {transfer.arch}: shape mismatch for "
            f"{_show(sorted(set(wrong_in_file)))}"
        )
    with torch.no_grad():
        for target, value in pairs:
            target.copy_(value)
    return [k for k in model.state_dict() if transfer.key_map(k) in state]
