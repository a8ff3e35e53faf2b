"""Heatmaps and their evaluation: ``braincam explain``, ``braincam evaluate-cams`` and the ``cams``
section of an experiment.

One set of evaluation settings (:class:`CamSettings`) with its constraints, used twice:
:class:`CamEvalConfig` (the step's input, with its ``seed``) and :class:`CamsConfig` (the YAML
section, with ``enabled``; the seed comes from ``train.seed``). So every option of the step can
be set from YAML, and a constraint is written once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from braincam.config.base import FrozenSection, Section
from braincam.summary_schema import CHECK_NAMES, CheckName, SanityCascade

#: The three methods both studies compare.
DEFAULT_METHODS = ("cam", "gradcam", "gradcampp")

Split = Literal["train", "val", "test"]

#: The check families (``checks``) and the cascade granularities are the summary schema's words.
Check = CheckName
CHECKS = CHECK_NAMES

#: How the maps of several layers are fused (see :mod:`braincam.cam.fusion`).
Fusion = Literal["layercam", "mean"]


def check_layer(value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
    """A layer name, several (fused), or None (the model's CAM layer); one name in a list is
    that name, so a list of one explains exactly like the name."""
    if isinstance(value, tuple):
        if not value or any(not name for name in value):
            raise ValueError(f"layer: give layer names, got {list(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"layer: a layer is named twice in {list(value)}")
        return value[0] if len(value) == 1 else value
    return value


def check_methods(value: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError unless every name is a registered CAM method (and there is one)."""
    from braincam.cam.methods import METHODS

    if not value:
        raise ValueError("give at least one CAM method")
    unknown = [m for m in value if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown CAM method(s) {unknown}; choose from {sorted(METHODS)}")


class CamSettings(Section):
    """Settings of the heatmap evaluation (defaults follow the dMRI study where it has one)."""

    split: Split = "test"
    methods: tuple[str, ...] = DEFAULT_METHODS
    threshold: float = Field(
        0.2, gt=0, lt=1, description="box / thresholded-region rule: fraction of each map's max"
    )
    tolerance: float | None = Field(
        None, ge=0, description="pointing-game tolerance in pixels; None = 15 px at 224², scaled"
    )
    noise_std: float = Field(
        0.05, ge=0, description="noise on imputed voxels (perturbation check), z-score units"
    )
    strengths: tuple[float, ...] = Field(
        (0.25, 0.5, 0.75, 1.0),
        description="perturbation dose-response: increasing values in (0, 1], verdict at the last",
    )
    n_random: int = Field(20, ge=20, description="random regions per image (perturbation baseline)")
    shift: tuple[int, ...] | None = Field(
        None, description="perturbation translation in pixels per axis; None = 10 % of the size"
    )
    deletion_steps: int = Field(20, ge=1, description="steps of the deletion/insertion curves")
    faithfulness_baseline: Literal["blur", "zero", "mean"] = "blur"
    max_images: int | None = Field(
        256, ge=1, description="slices for perturbation/faithfulness; None = all"
    )
    sanity_images: int = Field(16, ge=1)
    rim_mm: float = Field(
        10.0, gt=0, le=50, description="shortcut alarm: width of the head's rim outside the brain"
    )
    shortcut_margin: float = Field(
        0.02, ge=0, lt=1, description="shortcut alarm: excess mass share over area that fires it"
    )
    regions: bool = Field(
        True, description="brain regions in MNI space; the same as listing 'regions' in checks"
    )
    checks: tuple[Check, ...] = Field(
        CHECKS, description="the check families to run (a family left out is recorded as skipped)"
    )
    sanity_cascade: SanityCascade = Field(
        "layers", description="randomize per parameter layer, per block, or all at once (full)"
    )
    atlas: Literal["AAL", "AAL3"] = "AAL"
    batch_size: int = Field(64, ge=1)
    layer: str | tuple[str, ...] | None = Field(
        None, description="CAM layer(s): None = the model's; several → one fused map per method"
    )
    fusion: Fusion = Field("layercam", description="fusion rule of several layers")

    @model_validator(mode="before")
    @classmethod
    def _fold_regions(cls, data: Any) -> Any:
        """``regions`` is ``'regions' in checks``: either spelling sets both; a contradiction
        (``regions: false`` with ``regions`` listed in ``checks``, or the reverse) is an error."""
        if not isinstance(data, dict) or ("regions" not in data and "checks" not in data):
            return data
        data = dict(data)
        checks = data.get("checks")
        if checks is not None and not isinstance(checks, list | tuple):
            return data  # the field's own validation reports the type
        if "regions" in data and checks is not None:
            if bool(data["regions"]) != ("regions" in checks):
                raise ValueError(
                    f"regions is {bool(data['regions'])} but checks "
                    f"{'lists' if 'regions' in checks else 'leaves out'} 'regions'; "
                    "give one of them"
                )
        elif checks is not None:
            data["regions"] = "regions" in checks
        elif data.get("regions") is False:
            data["checks"] = tuple(c for c in CHECKS if c != "regions")
        return data

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"a check is named twice in {list(value)}")
        ordered = [c for c in CHECKS if c in value]  # the order evaluate-cams runs them in
        return type(value)(ordered)

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < s <= 1 for s in value) or list(value) != sorted(set(value)):
            raise ValueError(f"strengths must be increasing values in (0, 1], got {list(value)}")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        check_methods(value)
        return value

    @field_validator("layer")
    @classmethod
    def _layer(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        return check_layer(value)

    def explain_config(self) -> ExplainConfig:
        """The heatmaps these settings evaluate (``braincam explain`` with the same maps)."""
        return ExplainConfig(
            methods=self.methods, split=self.split, layer=self.layer, fusion=self.fusion
        )


class CamEvalConfig(CamSettings):
    """Input of ``evaluate-cams`` (:func:`braincam.pipeline.evaluate_cams.evaluate_cams`)."""

    model_config = ConfigDict(frozen=True)

    seed: int = 0


class CamsConfig(CamSettings):
    """The ``cams`` section: heatmaps and their evaluation after training (``braincam run``)."""

    methods: list[str] = Field(list(DEFAULT_METHODS))  # type: ignore[assignment]
    checks: list[Check] = Field(list(CHECKS))  # type: ignore[assignment]
    enabled: bool = True

    def eval_config(self, seed: int) -> CamEvalConfig:
        """The step's settings: this section's values, and ``seed`` (the run's ``train.seed``)."""
        values = {k: getattr(self, k) for k in CamSettings.model_fields}
        values["checks"] = tuple(values["checks"])
        return CamEvalConfig(**values, seed=seed)


class ExplainConfig(FrozenSection):
    """Settings of ``braincam explain``."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    split: str = "test"
    #: which class each slice is explained for: "predicted", "true", or a class name
    target: str = "predicted"
    #: a layer name, several (one fused map per method, by ``fusion``), or None (the model's)
    layer: str | tuple[str, ...] | None = None
    batch_size: int = Field(16, ge=1)
    #: number of slices in each overlay montage (0: none)
    overlays: int = Field(12, ge=0)
    nifti: bool = True
    fusion: Fusion = "layercam"

    @field_validator("layer")
    @classmethod
    def _layer(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        return check_layer(value)

    def fingerprint(self) -> str:
        """Hash of the settings that change the maps (not of overlays/nifti)."""
        key: dict[str, object] = {"target": self.target, "layer": self.layer, "split": self.split}
        if isinstance(self.layer, tuple):  # the rule matters only when layers are fused
            key["fusion"] = self.fusion
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
