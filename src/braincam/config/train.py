"""The ``train`` section: optimizer, schedule, early stopping, augmentations, Lightning Trainer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from braincam.config.base import Section as _Section


class OptimizerConfig(_Section):
    """Optimizer; the defaults are the dMRI study's (SGD, lr 1e-3, momentum 0.9)."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


class ScheduleConfig(_Section):
    """Learning-rate schedule, stepped once per epoch, after ``warmup_epochs`` of linear warm-up
    (epoch ``e < W`` trains at ``lr × (e + 1) / (W + 1)``; the schedule then runs over the
    remaining epochs). See :func:`braincam.training.module.lr_factor`."""

    name: Literal["none", "cosine", "step"] = "none"
    step_size: int = Field(10, ge=1, description="epochs between decays (step)")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor (step)")
    min_lr: float = Field(0.0, ge=0, description="final learning rate (cosine)")
    warmup_epochs: int = Field(0, ge=0, description="epochs of linear warm-up before the schedule")


#: What selects the best checkpoint (and drives early stopping) → "min" or "max".
MONITORS: dict[str, Literal["min", "max"]] = {
    "val_loss": "min",  # slice-level cross-entropy (the studies' choice)
    "val_loss_smooth": "min",  # exponential moving average of val_loss over epochs
    "val_subject_loss": "min",  # cross-entropy of the subjects' mean slice probabilities
    "val_subject_acc": "max",  # subject-level accuracy (ties keep the earliest epoch)
}


class CheckpointConfig(_Section):
    """Which validation figure picks ``best.ckpt`` and drives early stopping.

    Slices of one subject are not independent, so a subject-level figure (or a smoothed loss)
    is a steadier guide on small validation splits than the slice-level loss.
    """

    monitor: Literal["val_loss", "val_loss_smooth", "val_subject_loss", "val_subject_acc"] = (
        "val_loss"
    )
    smoothing: float = Field(
        0.5, ge=0, lt=1, description="val_loss_smooth: weight of the previous average"
    )

    @property
    def mode(self) -> Literal["min", "max"]:
        """Whether lower (``min``) or higher (``max``) is better for the monitored figure."""
        return MONITORS[self.monitor]


class EarlyStoppingConfig(_Section):
    """Stop when the monitored validation figure (``checkpoint.monitor``) has not improved for
    ``patience`` epochs."""

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
    """Rotation, translation and scaling (the structural study's augmentations).

    Volumes: a rotation of up to ±``degrees`` about each of the three axes, a shift of up to
    ``translate`` × the size along each, and a scale factor drawn in ``scale`` per axis."""

    p: float = Field(0.0, ge=0, le=1)
    degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.0, ge=0, le=0.5, description="max shift, fraction of the size")
    scale: tuple[float, float] = (1.0, 1.0)

    @model_validator(mode="after")
    def _ordered(self) -> AffineConfig:
        if not (0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"scale must satisfy 0 < min <= max, got {list(self.scale)}")
        return self


class BiasFieldConfig(_Section):
    """Volumes only: a smooth multiplicative intensity inhomogeneity, ``exp`` of a polynomial
    of degree ``order`` in the three coordinates (scaled to [-1, 1]) whose coefficients are
    drawn uniformly in ±``coefficients`` (MONAI's ``RandBiasField``)."""

    p: float = Field(0.0, ge=0, le=1)
    coefficients: float = Field(0.3, ge=0, le=2)
    order: int = Field(3, ge=1, le=5)


class AugmentConfig(_Section):
    """Training-time augmentations (all off by default); each one has a probability ``p``.

    Slices take all but ``bias_field``; volumes (:mod:`braincam.data.augment3d`) take
    ``hflip``, ``affine``, ``bias_field`` and ``noise``."""

    hflip: FlipConfig = FlipConfig()
    noise: NoiseConfig = NoiseConfig()
    resized_crop: ResizedCropConfig = ResizedCropConfig()
    erasing: ErasingConfig = ErasingConfig()
    affine: AffineConfig = AffineConfig()
    bias_field: BiasFieldConfig = BiasFieldConfig()

    @model_serializer(mode="wrap")
    def _without_default_bias_field(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A train config is stored with each run and compared to decide whether a run can be
        # reused: a run made before bias_field existed must still match, so the key is written
        # only when it is set.
        data = handler(self)
        if isinstance(data, dict) and self.bias_field == BiasFieldConfig():
            data.pop("bias_field", None)
        return data


class TrainConfig(_Section):
    """Everything ``braincam train`` needs besides the model name and the directories."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    augment: AugmentConfig = AugmentConfig()
    dropout: float = Field(0.5, ge=0, lt=1)
    bn_recalibrate: bool = Field(
        False,
        description="before each validation, recompute BatchNorm statistics over the train "
        "split with the current weights (evaluation then matches them)",
    )
    weights: str | None = Field(None, description="local ImageNet weights file (never downloaded)")
    normalize: bool = Field(True, description="z-score each channel with train-split statistics")
    seed: int = 0
    deterministic: bool = True
    num_workers: int = Field(0, ge=0)
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = Field(
        "32-true", description="Lightning precision; the mixed ones autocast (bf16 also on CPU)"
    )
    channels_last: bool = Field(
        False, description="model and batches in channels_last memory format (tensor cores)"
    )
    limit_train_batches: float | int | None = Field(
        None, description="fraction or count of train batches per epoch (smoke tests)"
    )

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return value
