"""What every map metric checks first, and its seeded random draws.

Maps are tensors ``(N, *spatial)`` with 2 or 3 spatial dimensions; masks are binary tensors of
the maps' shape. Validation raises :class:`braincam.errors.InputError` naming the argument.
"""

from __future__ import annotations

import torch
from torch import Tensor

from braincam.errors import InputError

__all__ = ["check_maps", "check_masks", "seeded_rand"]


def check_maps(maps: object, name: str = "maps") -> Tensor:
    """Validate ``(N, *spatial)`` maps (2 or 3 spatial dims, finite) and return them as float."""
    if not isinstance(maps, Tensor):
        raise InputError(f"{name} must be a torch.Tensor", value=type(maps).__name__)
    if maps.ndim not in (3, 4):
        raise InputError(
            f"{name} must have shape (N, H, W) or (N, D, H, W)", value=tuple(maps.shape)
        )
    if maps.shape[0] == 0 or maps[0].numel() == 0:
        raise InputError(f"{name} is empty", value=tuple(maps.shape))
    if not maps.is_floating_point():
        maps = maps.float()
    if not bool(torch.isfinite(maps).all()):
        raise InputError(f"{name} contains NaN or infinite values", value=tuple(maps.shape))
    return maps


def check_masks(masks: object, maps: Tensor, name: str = "masks") -> Tensor:
    """Validate binary masks of the maps' shape; return them as bool on the maps' device."""
    if not isinstance(masks, Tensor):
        raise InputError(f"{name} must be a torch.Tensor", value=type(masks).__name__)
    if tuple(masks.shape) != tuple(maps.shape):
        raise InputError(
            f"{name} must have the maps' shape {tuple(maps.shape)}", value=tuple(masks.shape)
        )
    masks = masks.to(maps.device)
    if masks.dtype != torch.bool:
        # A soft or label-valued mask would be silently binarized; refuse it instead.
        if not bool(((masks == 0) | (masks == 1)).all()):
            raise InputError(f"{name} must be binary (0/1 or bool)", value=str(masks.dtype))
        masks = masks != 0
    return masks


def seeded_rand(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
    normal: bool = False,
) -> Tensor:
    """Uniform [0, 1) (or standard normal) numbers drawn on the generator's device, moved.

    Drawing on the generator's own device lets a CPU generator seed work on GPU data (torch
    refuses a generator on another device) and keeps results identical across devices.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=generator, device=gen_device).to(device)
