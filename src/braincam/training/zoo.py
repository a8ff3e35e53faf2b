"""The model zoo as training and loading see it: build a network by name, check a name.

One indirection, so tests can substitute a tiny model for the zoo (``tests/conftest.py``).
"""

from __future__ import annotations

from typing import Any

from torch import nn


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a zoo model by name (indirection so tests can substitute a tiny model)."""
    from braincam import models

    return models.build_model(name, **kwargs)


def check_model_name(name: str) -> None:
    """Raise ``ModelError`` (listing the valid names) if ``name`` is not in the zoo."""
    from braincam import models

    get_spec = getattr(models, "get_spec", None)
    if get_spec is not None:
        get_spec(name)


def model_spatial_dims(name: str) -> int:
    """2 if zoo model ``name`` takes slices ``(N, C, H, W)``, 3 if volumes ``(N, C, D, H, W)``.

    ``ModelError`` (listing the valid names) if ``name`` is not in the zoo.
    """
    from braincam import models

    return models.get_spec(name).spatial_dims


def check_model_input(name: str, spatial_dims: int, source: str = "the data") -> None:
    """Raise ``ModelError`` if zoo model ``name`` does not take ``spatial_dims``-D input.

    ``source`` names what holds the input (a store path, a config key) in the message.
    """
    from braincam.errors import ModelError

    own = model_spatial_dims(name)
    if own != spatial_dims:
        kinds = {2: "2-D slices", 3: "3-D volumes"}
        raise ModelError(
            f"model {name!r} takes {kinds.get(own, own)} but {source} holds "
            f"{kinds.get(spatial_dims, spatial_dims)}; choose a model whose name "
            + ("contains '3d'" if spatial_dims == 3 else "does not contain '3d'")
        )
