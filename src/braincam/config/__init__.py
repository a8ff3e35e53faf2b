"""Experiment configuration: YAML → one tree of validated pydantic models, saved with every run.

=================  ==========================================================================
``base``           the strict base model, error messages with key paths, YAML load/dump/override
``synth``          ``SynthConfig`` (diffusion), ``AnatSynthConfig`` (structural), the section
``prepare``        ``PrepareConfig`` and what it derives: ``DTIParams``, ``AnatParams``,
                   ``SliceSpec``, ``VolumeSpec``
``train``          ``TrainConfig`` (optimizer, schedule, early stopping, augmentations)
``cams``           ``ExplainConfig``, ``CamEvalConfig`` and the ``cams`` section
``experiment``     ``ExperimentConfig``: every section of ``braincam run CONFIG.yaml``
=================  ==========================================================================

Every model forbids unknown keys, so a typo fails loudly. Validation errors are raised as
:class:`~braincam.errors.ConfigError` whose message names the key's path, e.g.
``train.optimizer.lr: must be > 0, got -1``.
"""

from __future__ import annotations

from braincam.config.base import (
    _MESSAGES,
    Section,
    _format_error,
    dump_config,
    load_config,
    override,
    parse_config,
    validation_error,
)
from braincam.config.cams import CamEvalConfig, CamsConfig, ExplainConfig
from braincam.config.experiment import EvaluateConfig, ExperimentConfig, ReportConfig
from braincam.config.prepare import (
    AnatParams,
    DTIParams,
    PrepareConfig,
    SliceSpec,
    VolumeSpec,
)
from braincam.config.synth import AnatSynthConfig, GroupEffect, SynthConfig
from braincam.config.train import (
    AffineConfig,
    AugmentConfig,
    CheckpointConfig,
    EarlyStoppingConfig,
    ErasingConfig,
    FlipConfig,
    NoiseConfig,
    OptimizerConfig,
    ResizedCropConfig,
    ScheduleConfig,
    TrainConfig,
)

_Section = Section  # the name of the base before the package split

__all__ = [
    "_MESSAGES",
    "AffineConfig",
    "AnatParams",
    "AnatSynthConfig",
    "AugmentConfig",
    "CamEvalConfig",
    "CamsConfig",
    "CheckpointConfig",
    "DTIParams",
    "EarlyStoppingConfig",
    "ErasingConfig",
    "EvaluateConfig",
    "ExperimentConfig",
    "ExplainConfig",
    "FlipConfig",
    "GroupEffect",
    "NoiseConfig",
    "OptimizerConfig",
    "PrepareConfig",
    "ReportConfig",
    "ResizedCropConfig",
    "ScheduleConfig",
    "Section",
    "SliceSpec",
    "SynthConfig",
    "TrainConfig",
    "VolumeSpec",
    "_format_error",
    "dump_config",
    "load_config",
    "override",
    "parse_config",
    "validation_error",
]
