"""How a layer's output is laid out, and its conversion to channels-first ``(N, K, *grid)``.

Every method computes on a channels-first activation. Layers of transformers and of ConvNeXt /
Swin blocks are not laid out that way: a Swin stage returns ``(N, H, W, C)`` and a ViT block a
token sequence ``(N, L, C)``. Reading such an output as channels-first silently takes a spatial
axis for the channels, so the layout is either declared (``layout=``, ``reshape=``) or detected
from the shapes, and refused when it cannot be told.

Detection (``layout="auto"``) for an output of the input's rank reads both candidates — spatial
axes ``shape[2:]`` (channels-first) or ``shape[1:-1]`` (channels-last) — and calls a candidate
*strided* when one integer stride f maps the input onto it: every axis less than one cell from
S_i / f (padding and rounding), a singleton input axis staying a singleton — the grid of a CNN or
a patch embedding. Channels-first wins when it is strided (the PyTorch convention, so a 6-channel
6×6 map of a 12×12 input stays channels-first), else channels-last when it is strided, else
channels-first when no axis exceeds the input's (anisotropic strides, e.g. (1, 2, 2) in 3-D);
anything else is refused. A token output ``(N, L, C)`` is never guessed: ``layout="tokens"`` or
``reshape=`` says so. A channels-last output whose channel count happens to fit a strided grid
(e.g. (N, 8, 8, 8) for a 32×32 input) reads as channels-first: declare it.

All conversions are rearrangements (permute, select, reshape): the gradient of the converted
activation is the converted gradient, which is how gradients are handled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from braincam.errors import ModelError

__all__ = ["LAYOUTS", "MAX_PREFIX", "LayerLayout", "TokenGrid", "resolve_layout"]

#: The accepted values of ``layout=``.
LAYOUTS = ("auto", "channels_first", "channels_last", "tokens")


@dataclass(frozen=True)
class TokenGrid:
    """Reshape tokens ``(N, L, C)`` to ``(N, C, *grid)``, dropping the ``prefix`` first tokens.

    ``prefix`` counts the class (and register / distillation) tokens placed before the patch
    tokens, as torchvision's and MONAI's ViT do (1 with a class token); ``grid`` is the patch grid
    in the input's axis order (``(14, 14)`` for a 224² ViT-B/16). Pass it as ``reshape=``.
    """

    grid: tuple[int, ...]
    prefix: int = 0

    def __call__(self, tokens: Tensor) -> Tensor:
        n, length = tokens.shape[:2]
        patches = math.prod(self.grid)
        if tokens.ndim != 3 or length != self.prefix + patches:
            raise ModelError(
                f"TokenGrid(grid={self.grid}, prefix={self.prefix}) expects (N, "
                f"{self.prefix + patches}, C) tokens, got {tuple(tokens.shape)}"
            )
        grid = tokens[:, self.prefix :].reshape(n, *self.grid, tokens.shape[-1])
        return grid.movedim(-1, 1)


@dataclass(frozen=True)
class LayerLayout:
    """A resolved layout: ``kind`` (for messages), ``to_grid`` (raw output → channels-first) and
    ``channel_dim`` (the channel axis of the raw output, used to ablate a channel)."""

    kind: str
    to_grid: Callable[[Tensor], Tensor]
    channel_dim: int


def _identity(t: Tensor) -> Tensor:
    return t


def _last_to_first(t: Tensor) -> Tensor:
    return t.movedim(-1, 1)


def _fits(grid: Sequence[int], spatial: Sequence[int]) -> bool:
    """No axis larger than the input's (a singleton input axis stays a singleton)."""
    return all(0 < g <= s for g, s in zip(grid, spatial, strict=True))


def _strided(grid: Sequence[int], spatial: Sequence[int]) -> bool:
    """One integer stride f maps the input onto ``grid``: |g_i − S_i/f| < 1 on every axis."""
    if not _fits(grid, spatial):
        return False
    axes = [(g, s) for g, s in zip(grid, spatial, strict=True) if s > 1]
    if any(g != 1 for g, s in zip(grid, spatial, strict=True) if s == 1):
        return False
    if not axes:
        return True
    return any(
        all(abs(g - s / f) < 1 for g, s in axes) for f in range(1, max(s for _, s in axes) + 1)
    )


#: Most leading non-patch tokens (class, distillation, register tokens) a token grid may have.
MAX_PREFIX = 5


def _token_grid(length: int, spatial: Sequence[int]) -> TokenGrid | None:
    """The patch grid of ``length`` tokens for an input of size ``spatial``: over the patch
    strides f, the grids ⌊S/f⌋ or ⌈S/f⌉ (all axes alike) that leave 0 to :data:`MAX_PREFIX`
    leading tokens; the one leaving the fewest. An anisotropic patch is not guessed."""
    found: dict[tuple[int, ...], int] = {}
    for f in range(1, max(spatial) + 1):
        for grid in (
            tuple(max(1, s // f) for s in spatial),
            tuple(-(-s // f) for s in spatial),
        ):
            prefix = length - math.prod(grid)
            if 0 <= prefix <= MAX_PREFIX:
                found[grid] = prefix
    if not found:
        return None
    grid = min(found, key=lambda g: found[g])
    return TokenGrid(grid, found[grid])


def _check_grid(out: Tensor, rank: int, name: str, kind: str) -> None:
    if not isinstance(out, Tensor) or out.ndim != rank:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ModelError(
            f"layer {name!r}: {kind} must give (N, C, *grid) with {rank - 2} spatial "
            f"dimensions, got {shape}"
        )


def resolve_layout(
    shape: Sequence[int],
    spatial: Sequence[int],
    layout: str,
    reshape: Callable[[Tensor], Tensor] | None,
    name: str,
) -> LayerLayout:
    """Choose how to read a layer output of ``shape`` for an input of spatial size ``spatial``.

    ``layout`` is one of :data:`LAYOUTS`; ``reshape`` (a callable raw output → ``(N, C,
    *grid)``) overrides it. Raises :class:`ModelError` naming the layer, the shape and the way out
    when the output cannot be read.
    """
    shape, spatial = tuple(shape), tuple(spatial)
    rank = len(spatial) + 2
    if reshape is not None:
        if not callable(reshape):
            raise ModelError(f"reshape must be a callable, got {type(reshape).__name__}")

        def custom(t: Tensor) -> Tensor:
            out = reshape(t)
            _check_grid(out, rank, name, "reshape=")
            return out

        # a token sequence (N, L, C) keeps its channels last, as does a channels-last map
        return LayerLayout("custom", custom, -1)
    if layout not in LAYOUTS:
        raise ModelError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    way_out = (
        "pass layout='channels_first', 'channels_last' or 'tokens', or reshape= a function "
        "returning (N, C, *grid)"
    )
    if layout == "tokens" or (layout == "auto" and len(shape) == 3 and rank > 3):
        if len(shape) != 3:
            raise ModelError(f"layer {name!r}: layout='tokens' needs (N, L, C), got {shape}")
        tokens = _token_grid(shape[1], spatial)
        if layout == "auto":
            hint = (
                f"; e.g. reshape=TokenGrid({tokens.grid}, prefix={tokens.prefix})" if tokens else ""
            )
            raise ModelError(
                f"layer {name!r} outputs {shape}, a token sequence (N, L, C), not a spatial map: "
                f"pass layout='tokens' (grid inferred from the input size) or reshape={hint}"
            )
        if tokens is None:
            raise ModelError(
                f"layer {name!r}: {shape[1]} tokens do not form a strided grid of the input "
                f"{spatial} (after up to {MAX_PREFIX} leading class/register tokens); pass "
                "reshape=TokenGrid(grid, prefix) or your own function"
            )
        return LayerLayout(f"tokens {tokens.grid}+{tokens.prefix}", tokens, -1)
    if len(shape) != rank:
        raise ModelError(
            f"layer {name!r} is not spatial: its output has shape {shape} but the input has "
            f"{len(spatial)} spatial dimensions; choose a convolutional layer or {way_out}"
        )
    if layout == "channels_first":
        return LayerLayout("channels_first", _identity, 1)
    if layout == "channels_last":
        return LayerLayout("channels_last", _last_to_first, -1)
    first, last = shape[2:], shape[1:-1]
    if _strided(first, spatial):
        return LayerLayout("channels_first", _identity, 1)
    if _strided(last, spatial):
        return LayerLayout("channels_last", _last_to_first, -1)
    if _fits(first, spatial):
        return LayerLayout("channels_first", _identity, 1)
    raise ModelError(
        f"layer {name!r}: cannot tell the layout of its output {shape} for an input of spatial "
        f"size {spatial} (neither {first} nor {last} fits a strided grid of it); "
        f"{way_out}"
    )
