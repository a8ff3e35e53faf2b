"""Structural MRI as a :class:`~braincam.modalities.base.Modality`: T1w, T2w and FLAIR → N4 →
rigid co-registration to T1w → equalization → trimming → three channels on the T1w grid."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from braincam.cohort.ingest import IngestResult
from braincam.errors import ConfigError, InputError
from braincam.imaging.groundtruth import read_true_transform
from braincam.imaging.hashing import file_sha256
from braincam.io import read_json
from braincam.modalities.anat.ingest import AnatRecord, ingest_anat
from braincam.modalities.anat.preprocess import (
    CACHE_VERSION,
    CONTRASTS,
    MOVING,
    AnatParams,
    AnatPaths,
    anat_derivative_paths,
    params_dict,
    preprocess_anat,
)
from braincam.modalities.base import PrepareConfig, Preprocessed, Step

if TYPE_CHECKING:
    from braincam.cohort.runner import SubjectOutcome


@dataclass(frozen=True)
class AnatDetails:
    """The structural record of one subject: estimated transforms (moving → 4×4 RAS, T1w mm →
    moving mm), registration errors (only with ground truth) and the slice trimming."""

    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    transforms: dict[str, list] = field(default_factory=dict)
    kept_slices: dict[str, Any] = field(default_factory=dict)
    brain: dict[str, Any] = field(default_factory=dict)  # how the brain mask was made


def anat_cache_key(record: AnatRecord, params: AnatParams) -> str:
    """Hash of the inputs' content (and ground-truth transforms), parameters and versions."""
    import SimpleITK as sitk
    import skimage

    payload = {
        "inputs": {c: file_sha256(p) for c, p in record.images.items()},
        "truth": {m: file_sha256(p) for m, p in sorted(record.true_xfm.items())},
        # Threads are an execution detail (workers > 1 run one each): not part of the key.
        "params": {k: v for k, v in params_dict(params).items() if k != "threads"},
        "simpleitk": sitk.Version.VersionString(),
        "skimage": skimage.__version__,
        "cache_version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cached(paths: AnatPaths, key: str) -> dict | None:
    if not all(p.is_file() for p in paths.all()):
        return None
    try:
        side = read_json(paths.sidecars["T1w"])
        return side if side.get("BraincamCacheKey") == key else None
    except (OSError, ValueError):
        return None


class Structural:
    """T1w/T2w/FLAIR: N4, co-registration to T1w, histogram equalization, slice trimming."""

    name = "anat"
    channels = CONTRASTS
    outputs = "T1w/T2w/FLAIR"
    progress_label = "Structural preprocessing"

    def check_config(self, config: PrepareConfig) -> None:
        if config.manifest is not None or config.dask_scheduler:
            raise ConfigError("modality anat reads BIDS with joblib workers only")
        if config.missing_contrast not in ("error", "skip"):
            raise ConfigError(
                f"missing_contrast must be error or skip, got {config.missing_contrast!r}"
            )
        self.params(config)

    def params(self, config: PrepareConfig) -> AnatParams:
        return config.anat_params()

    def worker_params(self, params: AnatParams, workers: int) -> AnatParams:
        # One SimpleITK thread per worker, so workers do not oversubscribe the cores.
        return params.replace(threads=params.threads or 1)

    def ingest(self, data_dir: Path, config: PrepareConfig) -> IngestResult:
        # "effect" is the dMRI default; a structural cohort's ground truth is its lesion mask.
        desc = "lesion" if config.mask_desc == "effect" else config.mask_desc
        return ingest_anat(
            data_dir,
            label=config.label,
            participant_labels=config.participant_labels,
            mask_desc=desc,
            masks_dir=config.masks_dir,
            missing=config.missing_contrast,  # type: ignore[arg-type]
            allow_missing_description=config.allow_missing_description,
        )

    def primary_input(self, record: AnatRecord) -> Path:
        return record.t1

    def cache_key(self, record: AnatRecord, params: AnatParams) -> str:
        for c, p in record.images.items():
            if not Path(p).is_file():
                raise InputError(
                    f"missing {c} image (file not found)", subject=record.participant_id, path=p
                )
        return anat_cache_key(record, params)

    def load_cached(self, record: AnatRecord, work_dir: Path, key: str) -> Preprocessed | None:
        paths = anat_derivative_paths(work_dir, record.participant_id)
        side = _cached(paths, key)
        if side is None:
            return None
        xfm = {m: read_json(paths.xfm_json[m]) for m in MOVING}
        details = AnatDetails(
            errors={
                m: x["RegistrationError"] for m, x in xfm.items() if x.get("RegistrationError")
            },
            transforms={m: x["MatrixRAS"] for m, x in xfm.items()},
            kept_slices=side.get("SliceTrimming", {}),
            brain=side.get("BrainMaskMethod", {}),
        )
        images = tuple(str(paths.images[c]) for c in CONTRASTS)
        return Preprocessed(images, str(paths.mask), details)

    def preprocess(
        self, record: AnatRecord, work_dir: Path, params: AnatParams, key: str, step: Step
    ) -> Preprocessed:
        truth = {m: read_true_transform(p) for m, p in record.true_xfm.items()}
        out = preprocess_anat(
            record.t1,
            record.t2,
            record.flair,
            work_dir,
            params,
            participant_id=record.participant_id,
            true_transforms=truth or None,
            extra_sidecar={"BraincamCacheKey": key},
        )
        details = AnatDetails(
            errors=out.errors,
            transforms={m: v.tolist() for m, v in out.transforms.items()},
            kept_slices=out.kept_slices,
            brain=out.brain,
        )
        return Preprocessed(tuple(str(p) for p in out.images), str(out.paths.mask), details)

    def input_files(self, record: AnatRecord) -> dict[str, Any]:
        return {"anat": {k: str(v) for k, v in record.images.items()}}

    def summary(self, outcomes: Sequence[SubjectOutcome]) -> dict[str, Any]:
        # Estimated transforms per subject and, with ground truth, errors (per subject, median).
        return {"registration": registration_summary(outcomes)}


def registration_summary(outcomes: Sequence[SubjectOutcome]) -> dict[str, Any]:
    """Per-subject transforms and errors, and the median errors per moving contrast (the
    ``registration`` block of the ``prepare`` summary for structural data)."""
    done = [o for o in outcomes if o.status != "failed"]
    median: dict[str, dict[str, float]] = {}
    for m in MOVING:
        rows = [o.details.errors[m] for o in done if m in o.details.errors]
        if rows:
            median[m] = {
                k: round(float(np.median([r[k] for r in rows])), 4)
                for k in ("rotation_deg", "translation_mm")
            }
            median[m]["subjects"] = len(rows)
    return {
        "subjects": {
            o.participant_id: {
                "transforms": o.details.transforms,
                "errors": o.details.errors or None,
                "kept_slices": o.details.kept_slices,
                "brain_mask": o.details.brain or None,
            }
            for o in done
        },
        "median_error": median or None,
    }


ANAT = Structural()
