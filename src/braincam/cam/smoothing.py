"""Test-time augmentation for ``aug_smooth``: each view of the input is explained, its map is
mapped back to the original frame and the maps are averaged.

For brain MRI the views are a left-right flip and small shifts (a brain is nearly symmetric and
scanners position heads within a few voxels; brightness changes, as in pytorch-grad-cam's default
``Multiply`` factors, mean little after z-scoring). braincam's slices and volumes are RAS+
canonical and keep the left-right axis first (an axial or coronal slice is (x, ·)), so the default
flip is along the first spatial axis. Shifts are circular (``torch.roll``): exactly invertible, and
what wraps around is the background at the field's border.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from braincam.errors import InputError

__all__ = ["Augmentation", "Flip", "Shift", "default_augmentations", "resolve_augmentations"]


@dataclass(frozen=True)
class Augmentation:
    """A view of the input: ``apply`` to inputs (N, C, *s), ``invert`` on maps (N, *s)."""

    def apply(self, x: Tensor) -> Tensor:
        """The augmented input."""
        return x

    def invert(self, maps: Tensor) -> Tensor:
        """A map of the augmented input, back in the original frame."""
        return maps


@dataclass(frozen=True)
class Flip(Augmentation):
    """Mirror along spatial axis ``axis`` (0 = the first spatial axis: left-right in RAS+)."""

    axis: int = 0

    def apply(self, x: Tensor) -> Tensor:
        return x.flip(2 + self.axis % (x.ndim - 2))

    def invert(self, maps: Tensor) -> Tensor:
        return maps.flip(1 + self.axis % (maps.ndim - 1))


@dataclass(frozen=True)
class Shift(Augmentation):
    """Circular shift by ``offsets`` voxels, one per spatial axis."""

    offsets: tuple[int, ...] = ()

    def apply(self, x: Tensor) -> Tensor:
        return x.roll(self.offsets, tuple(range(2, x.ndim)))

    def invert(self, maps: Tensor) -> Tensor:
        return maps.roll(tuple(-o for o in self.offsets), tuple(range(1, maps.ndim)))


def default_augmentations(spatial_dims: int, shift: int = 2) -> tuple[Augmentation, ...]:
    """Identity, the left-right flip, and ±``shift`` voxels along each spatial axis."""
    views: list[Augmentation] = [Augmentation(), Flip(0)]
    for axis in range(spatial_dims):
        for sign in (1, -1):
            offsets = [0] * spatial_dims
            offsets[axis] = sign * shift
            views.append(Shift(tuple(offsets)))
    return tuple(views)


def resolve_augmentations(
    spec: bool | Sequence[Augmentation], spatial_dims: int | None
) -> tuple[Augmentation, ...]:
    """``aug_smooth=``: False (none), True (:func:`default_augmentations`) or the views.
    ``spatial_dims=None`` checks the spec only (before the input's rank is known)."""
    if spec is False:
        return ()
    if spec is True:
        return () if spatial_dims is None else default_augmentations(spatial_dims)
    views = tuple(spec) if isinstance(spec, Sequence) else None
    if not views or not all(isinstance(v, Augmentation) for v in views):
        raise InputError(
            "aug_smooth must be True, False or a sequence of braincam.cam.smoothing augmentations",
            value=spec,
        )
    for v in views:
        if spatial_dims is not None and isinstance(v, Shift) and len(v.offsets) != spatial_dims:
            raise InputError(
                f"Shift needs one offset per spatial axis ({spatial_dims})", value=v.offsets
            )
    return views
