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
