"""Fusing the maps of several layers into one (``layer=[...]``), for every method.

The rule (``fusion="layercam"``, the default) is LayerCAM's cross-layer fusion (Jiang et al.
2021, IEEE TIP 30, §III-C, eq. 9): each layer's map M_l — ReLU applied, resized to the common
grid — is scaled to [0, 1] per sample (braincam's min-max rule; for a rectified map whose minimum
is 0 this is the paper's M / max M), passed through ``tanh(γ · ·)`` with γ = 2 so that the weak
but precise responses of shallow layers are lifted, and the layers are combined by the
element-wise maximum:

    F = max_l tanh(γ · minmax(up(M_l)))

The paper applies the tanh to the shallow layers' maps; braincam applies it to every layer, so the
result does not depend on which layers count as shallow (torch-cam 0.5 does the same, but scales
at feature resolution before resizing). ``fusion="mean"`` is pytorch-grad-cam's rule instead:
the mean of the min-max scaled maps, F = mean_l minmax(up(M_l)).

The common grid is the input's size when maps are upsampled, else the largest layer grid (per
axis). Fusing a single layer returns its map unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from braincam.cam.postprocess import normalize_maps, upsample_maps
from braincam.errors import ModelError

__all__ = ["FUSIONS", "fuse_maps", "fusion_grid"]

#: The accepted values of ``fusion=``.
FUSIONS = ("layercam", "mean")


def fusion_grid(maps: Sequence[Tensor]) -> tuple[int, ...]:
    """The largest grid among ``maps`` (N, *grid), axis by axis."""
    return tuple(max(sizes) for sizes in zip(*(m.shape[1:] for m in maps), strict=True))


def fuse_maps(
    maps: Sequence[Tensor], size: Sequence[int], rule: str = "layercam", gamma: float = 2.0
) -> Tensor:
    """Fuse per-layer maps (each (N, *grid_l), rectified) into one (N, *size) by ``rule``."""
    if rule not in FUSIONS:
        raise ModelError(f"fusion must be one of {', '.join(FUSIONS)}, got {rule!r}")
    if len(maps) == 1:
        return upsample_maps(maps[0], size)
    scaled = [normalize_maps(upsample_maps(m, size)) for m in maps]
    if rule == "mean":
        return torch.stack(scaled).mean(dim=0)
    fused = torch.tanh(gamma * scaled[0])
    for m in scaled[1:]:
        fused = torch.maximum(fused, torch.tanh(gamma * m))
    return fused
