"""Diffusion MRI as a :class:`~braincam.modalities.base.Modality`: DWI → DTI → one FA channel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from braincam.cohort.ingest import IngestResult
from braincam.modalities.base import PrepareConfig, Preprocessed, Step
from braincam.modalities.dwi.dti import (
    DTIParams,
    cache_key,
    compute_maps,
    derivative_paths,
    input_hashes,
    is_cached,
)
from braincam.modalities.dwi.ingest import SubjectRecord, ingest_bids, ingest_manifest

if TYPE_CHECKING:
    from braincam.cohort.runner import SubjectOutcome


class Diffusion:
    """DTI fractional anisotropy from a DWI series (bval/bvec), brain mask by median_otsu."""

    name = "dwi"
    channels = ("FA",)
    outputs = "FA maps"
    progress_label = "DTI fit (subjects)"

    def check_config(self, config: PrepareConfig) -> None:
        self.params(config)  # validates fit_method and mask parameters early

    def params(self, config: PrepareConfig) -> DTIParams:
        return config.dti_params()

    def worker_params(self, params: DTIParams, workers: int) -> DTIParams:
        return params

    def ingest(self, data_dir: Path, config: PrepareConfig) -> IngestResult:
        if config.manifest is not None:
            return ingest_manifest(
                config.manifest,
                label=config.label,
                base_dir=data_dir,
                participant_labels=config.participant_labels,
                b0_threshold=config.b0_threshold,
                bvec_tolerance=config.bvec_tolerance,
            )
        return ingest_bids(
            data_dir,
            label=config.label,
            participant_labels=config.participant_labels,
            session=config.session,
            run=config.run,
            mask_desc=config.mask_desc,
            masks_dir=config.masks_dir,
            b0_threshold=config.b0_threshold,
            bvec_tolerance=config.bvec_tolerance,
            allow_missing_description=config.allow_missing_description,
        )

    def primary_input(self, record: SubjectRecord) -> Path:
        return record.dwi

    def cache_key(self, record: SubjectRecord, params: DTIParams) -> str:
        return cache_key(input_hashes(record), params)

    def load_cached(self, record: SubjectRecord, work_dir: Path, key: str) -> Preprocessed | None:
        paths = derivative_paths(work_dir, record.participant_id)
        return Preprocessed((str(paths.fa),), str(paths.mask)) if is_cached(paths, key) else None

    def preprocess(
        self, record: SubjectRecord, work_dir: Path, params: DTIParams, key: str, step: Step
    ) -> Preprocessed:
        return compute_maps(record, work_dir, params, key, step)

    def input_files(self, record: SubjectRecord) -> dict[str, Any]:
        return {"dwi": str(record.dwi)}

    def summary(self, outcomes: Sequence[SubjectOutcome]) -> dict[str, Any]:
        return {}


DWI = Diffusion()
