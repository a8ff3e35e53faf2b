"""One name per imaging modality across CLI, config and docs: ``dwi`` (diffusion) and ``anat``
(structural T1w/T2w/FLAIR — the BIDS datatype). Old spellings are accepted with a deprecation
message; :func:`canonical_name` is used by both registries (modalities and synthetic cohorts).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from braincam.errors import ConfigError

#: Old spelling → name. ``structural`` was ``synth --kind structural`` and ``synth.kind``.
ALIASES: dict[str, str] = {"structural": "anat"}


def canonical_name(
    name: str,
    names: tuple[str, ...],
    *,
    what: str,
    warn: Callable[[str], None] | None = None,
) -> str:
    """``name`` if it is among ``names``; the new name for an old spelling (after calling
    ``warn`` with a deprecation message, default: a :class:`FutureWarning`); else ConfigError
    naming ``what`` and the valid names."""
    if name in names:
        return name
    new = ALIASES.get(str(name))
    if new is not None and new in names:
        message = f"{what} {name!r} is deprecated; use {new!r} (same data)"
        if warn is None:
            warnings.warn(message, FutureWarning, stacklevel=3)
        else:
            warn(message)
        return new
    valid = " or ".join(names) if len(names) <= 2 else ", ".join(names)
    raise ConfigError(f"{what} must be {valid}, got {name!r}")
