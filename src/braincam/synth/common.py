"""What every synthetic cohort shares: participant ids, the native grid, Rician noise, the BIDS
files of a dataset and its ground truth, and the rule for writing over an earlier cohort."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from braincam.errors import InputError
from braincam.io import write_json, write_text_atomic
from braincam.synth.anatomy import SubjectTransform, Template, random_subject_transform


class GridSettings(Protocol):
    """The settings of a synthetic cohort that define its native grid (both configs have them)."""

    voxel_size: float
    orientation: str
    rotation_deg: float
    translation_mm: float
    scale_range: float
    warp_mm: float
    warp_smoothness_mm: float


BIDS_VERSION = "1.9.0"


def add_rician_noise(
    rng: np.random.Generator, signal: NDArray[np.float32], sigma: float
) -> NDArray[np.float32]:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma``."""
    if sigma <= 0:
        return signal
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.hypot(real, imag)


def participant_ids(n: int) -> list[str]:
    """``sub-01`` … (zero-padded to the width of ``n``, at least two digits)."""
    width = max(2, len(str(n)))
    return [f"sub-{i + 1:0{width}d}" for i in range(n)]


def software() -> dict[str, str]:
    from braincam.provenance import library_versions

    return {"Name": "braincam", "Version": library_versions()["braincam"]}


def write_cohort_files(
    out: Path,
    *,
    name: str,
    people: Sequence[Any],
    group_description: str,
    levels: dict[str, str],
) -> Path:
    """The BIDS files every synthetic cohort has; returns the ground-truth derivatives folder.

    Writes ``dataset_description.json``, ``participants.tsv`` / ``.json`` (participant_id, age,
    group; ``people`` need those three attributes) and the ground truth's own description.
    """
    soft = software()
    write_json(
        out / "dataset_description.json",
        {
            "Name": name,
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC0",
            "GeneratedBy": [{**soft, "Description": "braincam synth (simulated data)"}],
        },
    )
    rows = ["participant_id\tage\tgroup"] + [
        f"{p.participant_id}\t{p.age}\t{p.group}" for p in people
    ]
    write_text_atomic(out / "participants.tsv", "\n".join(rows) + "\n")
    write_json(
        out / "participants.json",
        {
            "participant_id": {"Description": "Unique participant identifier"},
            "age": {"Description": "Age at the (simulated) scan", "Units": "year"},
            "group": {"Description": group_description, "Levels": levels},
        },
    )
    gt = out / "derivatives" / "groundtruth"
    write_json(
        gt / "dataset_description.json",
        {
            "Name": "braincam synth ground truth",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{**soft, "Description": "braincam synth ground truth"}],
            "SourceDatasets": [{"URL": "../../"}],
        },
    )
    return gt


def native_shape(
    template: Template, config: GridSettings, margin_mm: float = 0.0
) -> tuple[int, int, int]:
    """Even-sized field of view that holds every drawn brain (size, tilt and warp included) and
    ``margin_mm`` around it (a synthetic skull and scalp)."""
    lo, hi = template.brain_bbox_mm(threshold=0.05)
    half = (hi - lo) / 2.0 + template.voxel_size
    tilt = np.sin(np.deg2rad(config.rotation_deg * np.sqrt(3.0))) * half.max()
    half = np.sqrt(half**2 + tilt**2) * (1 + config.scale_range) * 1.02
    half = half + config.warp_mm + 4.0 + margin_mm
    return tuple(int(2 * np.ceil(h / config.voxel_size)) for h in half)  # type: ignore[return-value]


def native_affine(config: GridSettings, centre_mm: NDArray, shape: tuple[int, ...]) -> NDArray:
    """Voxel → scanner mm with the array's middle on ``centre_mm`` (LAS or RAS axes)."""
    signs = np.array([-1.0 if config.orientation == "LAS" else 1.0, 1.0, 1.0])
    affine = np.diag([*(signs * config.voxel_size), 1.0])
    middle = (np.asarray(shape[:3]) - 1) / 2.0
    affine[:3, 3] = centre_mm - affine[:3, :3] @ middle
    return affine


def _is_synth_dataset(out: Path) -> bool:
    desc = out / "dataset_description.json"
    try:
        generated = json.loads(desc.read_text()).get("GeneratedBy")
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
    return "braincam synth" in json.dumps(generated)


def _check_output(out: Path, overwrite: bool) -> bool:
    """Refuse a non-empty directory unless ``overwrite`` and it is an earlier synth output.

    Returns whether an earlier dataset has to be cleared before writing.
    """
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError("the output path exists and is not a directory", path=out)
    if not any(out.iterdir()):
        return False
    if not overwrite:
        raise InputError(
            "the output directory is not empty (use overwrite=True / --overwrite to replace an "
            "earlier braincam synth dataset)",
            path=out,
        )
    if not _is_synth_dataset(out):
        raise InputError(
            "refusing to overwrite a directory that is not a braincam synth dataset", path=out
        )
    return True


def _remove_previous(out: Path) -> None:
    """Remove the subjects and ground truth of an earlier cohort so none is left stale."""
    for sub in out.glob("sub-*"):
        shutil.rmtree(sub)
    shutil.rmtree(out / "derivatives" / "groundtruth", ignore_errors=True)


def clear_previous(out: Path, overwrite: bool) -> None:
    """Check ``out`` (see :func:`_check_output`) and clear an earlier synth dataset in it.

    Also used by :mod:`braincam.synth.anat`.
    """
    if _check_output(out, overwrite):
        _remove_previous(out)


def subject_transform(
    rng: np.random.Generator, template: Template, config: GridSettings
) -> SubjectTransform:
    """A subject's anatomy: the template moved and warped as ``config`` says (both kinds)."""
    return random_subject_transform(
        rng,
        template,
        rotation_deg=config.rotation_deg,
        translation_mm=config.translation_mm,
        scale_range=config.scale_range,
        warp_mm=config.warp_mm,
        warp_smoothness_mm=config.warp_smoothness_mm,
    )
