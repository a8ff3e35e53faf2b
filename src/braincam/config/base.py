"""The strict base of every configuration model and the one way validation errors read.

Every model forbids unknown keys, so a typo fails loudly, and every validation error becomes a
:class:`~braincam.errors.ConfigError` whose message names the key's path, e.g.
``train.optimizer.lr: must be > 0, got -1`` — whether the model is validated from YAML
(:func:`parse_config`) or built in Python (``SynthConfig(subjects=1)``).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from braincam.errors import ConfigError

#: A real number that keeps an integer an integer (``2`` stays ``2``, ``2.5`` stays ``2.5``):
#: these values are written to sidecars, stamps and cache keys, whose bytes must not change
#: because a config was validated (``json.dumps(2) != json.dumps(2.0)``).
Real = float | int

#: Prefix of the tags of tagged unions (``kind:dwi``); never shown as part of a key path.
TAG = "kind:"


class Section(BaseModel):
    """Base of every config model: unknown keys rejected, assignments validated.

    Building one in Python raises :class:`ConfigError` (not pydantic's ``ValidationError``) with
    the key path of every bad value. ``replace(**changes)`` returns a validated copy (as
    ``dataclasses.replace`` did for the dataclasses these models replace).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _own_error(exc, type(self)) from None

    # Pydantic calls a custom ``__init__`` for nested models, which would flatten their errors
    # into one message; marked as the base ``__init__``, nested validation stays in pydantic.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise _own_error(exc, type(self)) from None

    def replace(self, **changes: Any) -> Any:
        """A validated copy with ``changes`` applied."""
        return type(self)(**{**{k: getattr(self, k) for k in type(self).model_fields}, **changes})

    def validate(self) -> None:  # type: ignore[override]  # pydantic v1's classmethod, unused
        """Re-check every constraint (a model is valid once built; kept for callers that ask)."""
        try:
            type(self).model_validate(dict(self))
        except ValidationError as exc:
            raise _own_error(exc, type(self)) from None


def _own_error(exc: ValidationError, cls: type) -> ConfigError:
    """The error of a model built or changed in Python: a cross-field check names the class."""
    return validation_error(exc, model=cls, root=cls.__name__)


class FrozenSection(Section):
    """A :class:`Section` that cannot change once built (hashable; used as cache-key input)."""

    model_config = ConfigDict(frozen=True)


Count = Annotated[int, Field(ge=1)]


# --------------------------------------------------------------------------- error messages

_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _loc(parts: tuple[Any, ...], prefix: str = "", root: str = "<root>") -> str:
    keep = [str(p) for p in parts if not (isinstance(p, str) and p.startswith(TAG))]
    return ".".join([*([prefix] if prefix else []), *keep]) or root


def _format_error(
    err: dict[str, Any], prefix: str = "", model: type | None = None, root: str = "<root>"
) -> str:
    if err["type"] == "union_tag_invalid":  # a tagged section (synth) with an unknown kind
        ctx = err.get("ctx", {})
        tags = str(ctx.get("expected_tags", "")).replace(TAG, "")
        tag = str(ctx.get("tag", "")).removeprefix(TAG)
        return f"{_loc(err['loc'], prefix)}.kind: must be one of {tags}, got {tag!r}"
    loc = _loc(err["loc"], prefix, root)
    if err["type"] in ("union_tag_not_found", "model_type", "dataclass_type", "dict_type"):
        return f"{loc}: expected a mapping of keys, got {err['input']!r}"
    template = _MESSAGES.get(err["type"])
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in err.get("ctx", {}).items()}
    msg = template.format(**ctx) if template else err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden" and model is not None:
        valid = _valid_keys(model, err["loc"][:-1])
        if valid:
            msg += f" (valid keys: {', '.join(valid)})"
    if err["type"] == "missing" or isinstance(err.get("input"), dict) or "got " in msg:
        return f"{loc}: {msg}"
    return f"{loc}: {msg}, got {err['input']!r}"


def validation_error(
    exc: ValidationError, prefix: str = "", model: type | None = None, root: str = "<root>"
) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into a ``ConfigError`` naming every bad key path.

    With ``model`` (the validated class), an unknown key's message lists the valid keys there;
    ``root`` names the whole object (a cross-field check).
    """
    lines = [_format_error(e, prefix, model, root) for e in exc.errors(include_url=False)]
    return ConfigError("; ".join(lines))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation can hold (through Optional, Union, Annotated, tuples)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, tuple, list):
        found = [m for a in typing.get_args(annotation) if a is not ... for m in _models_in(a)]
        return list(dict.fromkeys(found))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _valid_keys(model: type, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at ``loc`` inside ``model`` ([] when not one model)."""
    candidates = [model] if isinstance(model, type) and issubclass(model, BaseModel) else []
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(part, str) and part.startswith(TAG):
            kind = part.removeprefix(TAG)
            candidates = [c for c in candidates if _kind_of(c) == kind]
            continue
        nxt: list[type[BaseModel]] = []
        for cls in candidates:
            field = cls.model_fields.get(str(part))
            if field is not None:
                nxt += _models_in(field.annotation)
        candidates = nxt
    return sorted(candidates[0].model_fields) if len(candidates) == 1 else []


def _kind_of(cls: type[BaseModel]) -> str | None:
    field = cls.model_fields.get("kind")
    return None if field is None else field.default


# --------------------------------------------------------------------------- YAML in and out


def parse_config(data: dict[str, Any], model: type[BaseModel] | None = None) -> Any:
    """Validate a mapping into ``model`` (default ``ExperimentConfig``); ``ConfigError`` if bad."""
    if model is None:
        from braincam.config.experiment import ExperimentConfig

        model = ExperimentConfig
    if not isinstance(data, dict):
        raise ConfigError(f"<root>: expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model=model) from None


def load_config(path: str | Path) -> Any:
    """Read and validate an experiment YAML file (an ``ExperimentConfig``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_config(data or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_config(config: BaseModel) -> str:
    """YAML text of a (resolved) config, every default written out."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def override(config: BaseModel, updates: dict[str, Any]) -> Any:
    """Return a copy of ``config`` with dotted-path ``updates`` applied and re-validated.

    ``None`` values are skipped, so CLI options left unset keep the config's values.
    """
    data = config.model_dump(mode="json")
    for dotted, value in updates.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_config(data, type(config))
