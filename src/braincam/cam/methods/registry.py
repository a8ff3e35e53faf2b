"""The one registry of methods by name: the built-in ones and those added by
:func:`register_method`."""

from __future__ import annotations

from typing import Any

from braincam.cam.methods.activation import EigenCAM
from braincam.cam.methods.classifier import CAM
from braincam.cam.methods.core import CAMMethod
from braincam.cam.methods.fullgrad import FullGrad
from braincam.cam.methods.gradient import (
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
)
from braincam.cam.methods.perturbation import ISCAM, SSCAM, AblationCAM, ScoreCAM
from braincam.cam.methods.reference import IntegratedGradients
from braincam.errors import ModelError

__all__ = ["METHODS", "get_method", "register_method", "unregister_method"]

#: Every registered method by name (the built-in ones, then those added by register_method).
METHODS: dict[str, type[CAMMethod]] = {
    cls.name: cls
    for cls in (
        CAM,
        GradCAM,
        GradCAMPlusPlus,
        XGradCAM,
        LayerCAM,
        HiResCAM,
        ScoreCAM,
        EigenCAM,
        AblationCAM,
        EigenGradCAM,
        FullGrad,
        SmoothGradCAMPlusPlus,
        SSCAM,
        ISCAM,
        IntegratedGradients,
    )
}
_BUILTIN = frozenset(METHODS)


def _key(name: str) -> str:
    key = name.lower().replace("++", "pp")
    for ch in "-_ ":
        key = key.replace(ch, "")
    return key


def get_method(name: str) -> type[CAMMethod]:
    """Method class by name (case, '-', '_' and spaces ignored; '++' may be written 'pp')."""
    if not isinstance(name, str):
        raise ModelError(f"method must be a name, got {type(name).__name__}")
    try:
        return METHODS[_key(name)]
    except KeyError:
        raise ModelError(
            f"unknown CAM method {name!r}; valid names: {', '.join(METHODS)}"
        ) from None


def register_method(cls: type[CAMMethod] | None = None, *, name: str | None = None) -> Any:
    """Add a :class:`CAMMethod` subclass under ``name`` (default: its ``name`` attribute).

    Usable as a decorator (``@register_method`` or ``@register_method(name="mycam")``). The name
    must be lower case without '-', '_' or spaces (how :func:`get_method` looks names up); a
    name already registered is refused with :class:`ModelError`. Returns the class.
    """
    if cls is None:
        return lambda c: register_method(c, name=name)
    if not (isinstance(cls, type) and issubclass(cls, CAMMethod)):
        raise ModelError(f"a CAM method must be a CAMMethod subclass, got {cls!r}")
    name = cls.name if name is None else name
    if not isinstance(name, str) or not name or _key(name) != name:
        raise ModelError(
            f"CAM method name must be lower case without '-', '_' or spaces, got {name!r}"
        )
    if name in METHODS:
        raise ModelError(f"CAM method {name!r} is already registered ({METHODS[name].__name__})")
    if cls.name != name:
        cls.name = name
    METHODS[name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Remove a method added with :func:`register_method` (built-in methods stay)."""
    get_method(name)
    if _key(name) in _BUILTIN:
        raise ModelError(f"CAM method {name!r} is built in and cannot be unregistered")
    del METHODS[_key(name)]
