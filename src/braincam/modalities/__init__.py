"""Imaging modalities and their registry: the only place that maps a modality's name to code.

``get_modality("dwi")`` (diffusion: DTI FA) and ``get_modality("anat")`` (structural: T1w/T2w/
FLAIR, N4, co-registration, equalization) return a :class:`~braincam.modalities.base.Modality`;
``prepare`` and the batch runner only ever talk to that protocol. Register another one with
:func:`register_modality`.
"""

from __future__ import annotations

from collections.abc import Callable

from braincam.modalities.base import Modality, Preprocessed, Step
from braincam.names import canonical_name

__all__ = [
    "Modality",
    "Preprocessed",
    "Step",
    "get_modality",
    "modality_names",
    "register_modality",
]

# name → "module:attribute" of the Modality object, imported on first use (the structural
# modality pulls SimpleITK and scikit-image, the diffusion one DIPY: only load what is used).
_MODALITIES: dict[str, Modality | str] = {
    "dwi": "braincam.modalities.dwi.modality:DWI",
    "anat": "braincam.modalities.anat.modality:ANAT",
}


def modality_names() -> tuple[str, ...]:
    """Registered modality names (``dwi``, ``anat``, ...)."""
    return tuple(_MODALITIES)


def get_modality(name: str, *, warn: Callable[[str], None] | None = None) -> Modality:
    """The registered modality called ``name`` (an old alias is accepted with a deprecation
    message); ConfigError listing the valid names otherwise."""
    key = canonical_name(name, modality_names(), what="modality", warn=warn)
    found = _MODALITIES[key]
    if isinstance(found, str):
        from importlib import import_module

        module, attr = found.split(":")
        found = _MODALITIES[key] = getattr(import_module(module), attr)
    return found


def register_modality(name: str, modality: Modality | str) -> None:
    """Add a modality (an object implementing the protocol, or ``"module:attribute"``)."""
    _MODALITIES[name] = modality
