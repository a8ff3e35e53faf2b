"""Experiment configuration: YAML → validated pydantic models, saved with every run.

Every section forbids unknown keys, so a typo fails loudly. Validation errors are re-raised as
:class:`~braincam.errors.ConfigError` whose message names the key's path, e.g.
``train.optimizer.lr: must be > 0, got -1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from braincam.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OptimizerConfig(_Section):
    """Optimizer; the defaults are the dMRI study's (SGD, lr 1e-3, momentum 0.9)."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


class ScheduleConfig(_Section):
    """Learning-rate schedule, stepped once per epoch."""

    name: Literal["none", "cosine", "step"] = "none"
    step_size: int = Field(10, ge=1, description="epochs between decays (step)")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor (step)")
    min_lr: float = Field(0.0, ge=0, description="final learning rate (cosine)")


class EarlyStoppingConfig(_Section):
    """Stop when the validation loss has not improved for ``patience`` epochs."""

    enabled: bool = True
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0)


class FlipConfig(_Section):
    """Horizontal (left-right) flip; LR/RL phase encodings make models flip-tolerant."""

    p: float = Field(0.0, ge=0, le=1)


class NoiseConfig(_Section):
    """Additive Gaussian noise, std in units of the normalized (z-scored) input."""

    p: float = Field(0.0, ge=0, le=1)
    std: float = Field(0.1, ge=0)


class ResizedCropConfig(_Section):
    """Random resized crop: a box of ``scale`` × area and ``ratio`` aspect, resized back."""

    p: float = Field(0.0, ge=0, le=1)
    scale: tuple[float, float] = (0.7, 1.0)
    ratio: tuple[float, float] = (0.75, 1.3333)

    @model_validator(mode="after")
    def _ordered(self) -> ResizedCropConfig:
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {list(self.scale)}")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {list(self.ratio)}")
        return self


class ErasingConfig(_Section):
    """Random erasing (Zhong et al. 2017): a rectangle set to ``value``."""

    p: float = Field(0.0, ge=0, le=1)
    scale: tuple[float, float] = (0.02, 0.2)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> ErasingConfig:
        if not (0 < self.scale[0] <= self.scale[1] < 1):
            raise ValueError(f"scale must satisfy 0 < min <= max < 1, got {list(self.scale)}")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {list(self.ratio)}")
        return self


class AffineConfig(_Section):
    """Rotation, translation and scaling (the structural study's augmentations)."""

    p: float = Field(0.0, ge=0, le=1)
    degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.0, ge=0, le=0.5, description="max shift, fraction of the size")
    scale: tuple[float, float] = (1.0, 1.0)

    @model_validator(mode="after")
    def _ordered(self) -> AffineConfig:
        if not (0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"scale must satisfy 0 < min <= max, got {list(self.scale)}")
        return self


class AugmentConfig(_Section):
    """Training-time augmentations (all off by default); each one has a probability ``p``."""

    hflip: FlipConfig = FlipConfig()
    noise: NoiseConfig = NoiseConfig()
    resized_crop: ResizedCropConfig = ResizedCropConfig()
    erasing: ErasingConfig = ErasingConfig()
    affine: AffineConfig = AffineConfig()


class TrainConfig(_Section):
    """Everything ``braincam train`` needs besides the model name and the directories."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    augment: AugmentConfig = AugmentConfig()
    dropout: float = Field(0.5, ge=0, lt=1)
    weights: str | None = Field(None, description="local ImageNet weights file (never downloaded)")
    normalize: bool = Field(True, description="z-score each channel with train-split statistics")
    seed: int = 0
    deterministic: bool = True
    num_workers: int = Field(0, ge=0)
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: str = "32-true"
    limit_train_batches: float | int | None = Field(
        None, description="fraction or count of train batches per epoch (smoke tests)"
    )

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return value


class EvaluateConfig(_Section):
    """Which splits to evaluate after training."""

    splits: list[Literal["train", "val", "test"]] = ["val", "test"]
    batch_size: int = Field(64, ge=1)


class CamsConfig(_Section):
    """Heatmaps and their evaluation after training (``braincam explain`` + ``evaluate-cams``)."""

    enabled: bool = True
    methods: list[str] = Field(["cam", "gradcam", "gradcampp"], min_length=1)
    split: Literal["train", "val", "test"] = "test"
    threshold: float = Field(0.2, gt=0, lt=1, description="box threshold, fraction of the max")
    noise_std: float = Field(1.0, gt=0, description="perturbation noise, z-score units")
    max_images: int | None = Field(256, ge=1, description="slices for perturbation/faithfulness")
    sanity_images: int = Field(16, ge=1)
    regions: bool = True
    atlas: Literal["AAL", "AAL3"] = "AAL"

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        from braincam.cam import METHODS

        unknown = [m for m in value if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown CAM method(s) {unknown}; choose from {sorted(METHODS)}")
        return value


class ExperimentConfig(_Section):
    """A whole experiment: data (BIDS, or synthesized), preparation, models, training, evaluation.

    ``synth`` and ``prepare`` are passed as keyword arguments to ``braincam.synth.dwi`` and to
    ``braincam.pipeline.prepare.PrepareConfig``, which validate them.
    """

    name: str = "experiment"
    bids: str | None = Field(None, description="BIDS dataset; absent → synthesize one")
    out: str = "braincam-out"
    synth: dict[str, Any] | None = None
    prepare: dict[str, Any] = {}
    models: list[str] = Field(..., min_length=1)
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    cams: CamsConfig = CamsConfig()

    @model_validator(mode="after")
    def _data_source(self) -> ExperimentConfig:
        if self.bids is None and self.synth is None:
            raise ValueError("give either 'bids' (a BIDS dataset) or a 'synth' section")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be unique, got {self.models}")
        return self


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _format_error(err: dict[str, Any], prefix: str = "") -> str:
    loc = ".".join(str(p) for p in (*([prefix] if prefix else []), *err["loc"])) or "<root>"
    template = _MESSAGES.get(err["type"])
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in err.get("ctx", {}).items()}
    msg = template.format(**ctx) if template else err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "missing" or isinstance(err.get("input"), dict):
        return f"{loc}: {msg}"
    return f"{loc}: {msg}, got {err['input']!r}"


def validation_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """Turn a pydantic ``ValidationError`` into a ``ConfigError`` naming every bad key path."""
    lines = [_format_error(e, prefix) for e in exc.errors(include_url=False)]
    return ConfigError("; ".join(lines))


def parse_config(data: dict[str, Any], model: type[_Section] = ExperimentConfig) -> Any:
    """Validate a mapping into ``model`` (default ``ExperimentConfig``); ``ConfigError`` if bad."""
    if not isinstance(data, dict):
        raise ConfigError(f"<root>: expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file."""
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


def dump_config(config: _Section) -> str:
    """YAML text of a (resolved) config, every default written out."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def override(config: _Section, updates: dict[str, Any]) -> Any:
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
