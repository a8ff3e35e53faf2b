"""A whole experiment (``braincam run CONFIG.yaml``): data, preparation, models, training,
evaluation, heatmaps and report — one tree of validated sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from braincam.config.base import Section as _Section
from braincam.config.cams import CamsConfig
from braincam.config.prepare import PrepareSection
from braincam.config.synth import SynthSection
from braincam.config.train import TrainConfig


class EvaluateConfig(_Section):
    """Which splits to evaluate after training."""

    splits: list[Literal["train", "val", "test"]] = ["val", "test"]  # noqa: RUF012  # pydantic copies
    batch_size: int = Field(64, ge=1)


class ReportConfig(_Section):
    """The HTML report written at the end of ``braincam run``."""

    title: str | None = Field(None, description="page title; None: 'braincam — <name>'")
    max_viewers: int = Field(
        6, ge=0, description="volume runs: interactive 3-D viewers of single-subject heatmaps"
    )


class ExperimentConfig(_Section):
    """A whole experiment: data (BIDS, or synthesized), preparation, models, training, evaluation.

    ``synth`` is a :class:`~braincam.config.synth.SynthConfig` (``kind: dwi``, the default) or an
    :class:`~braincam.config.synth.AnatSynthConfig` (``kind: structural``), plus ``workers``;
    ``prepare`` a :class:`~braincam.config.prepare.PrepareConfig`; ``cams`` the settings of
    ``braincam explain`` and ``evaluate-cams``.
    """

    name: str = "experiment"
    bids: str | None = Field(None, description="BIDS dataset; absent → synthesize one")
    out: str = "braincam-out"
    synth: SynthSection | None = None
    # A factory, not an instance: building a PrepareConfig asks the modality registry, which
    # must not happen while braincam.config itself is being imported (a worker process that
    # unpickles a modality imports it from there).
    prepare: PrepareSection = Field(default_factory=PrepareSection)
    models: list[str] = Field(..., min_length=1)
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    cams: CamsConfig = CamsConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _data_source(self) -> ExperimentConfig:
        if self.bids is None and self.synth is None:
            raise ValueError("give either 'bids' (a BIDS dataset) or a 'synth' section")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be unique, got {self.models}")
        return self
