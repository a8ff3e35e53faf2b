"""Ingest, the part every modality shares: labels from ``participants.tsv``, ground-truth
masks, and failures.

A bad subject never spoils the others: its problem becomes a :class:`Failure` (subject, step,
file, error) and the remaining subjects go on. Each modality finds its own inputs with these
helpers and returns an :class:`IngestResult` (diffusion: :mod:`braincam.modalities.dwi.ingest`;
structural: :mod:`braincam.modalities.anat.ingest`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braincam.errors import InputError
from braincam.guard import check_participant_id, is_bids_label
from braincam.imaging.nifti import load_nifti_header

_MISSING = {"", "n/a", "na", "nan", "none"}


@dataclass(frozen=True)
class Failure:
    """A problem with one subject (or ``*`` for the whole dataset) at one step."""

    participant_id: str
    step: str
    file: str
    error: str

    @classmethod
    def from_error(cls, exc: Exception, *, subject: str, step: str, file: str = "") -> Failure:
        """Build a Failure from an exception (InputError carries its own file)."""
        path = getattr(exc, "path", None) or file
        return cls(participant_id=subject, step=step, file=str(path or ""), error=str(exc))


@dataclass
class IngestResult:
    """Valid subjects (sorted by participant_id), failures, and the label classes seen."""

    subjects: list[Any]  # the modality's records (dwi: SubjectRecord, anat: AnatRecord)
    failures: list[Failure] = field(default_factory=list)
    label_column: str = "label"
    source: str = ""

    @property
    def classes(self) -> list[str]:
        """Sorted label names among the valid subjects."""
        return sorted({s.label for s in self.subjects})


def normalize_participant(value: object) -> str:
    """``"01"`` or ``"sub-01"`` → ``"sub-01"``; not a BIDS label (``sub-`` + alphanumerics)
    raises InputError naming the value."""
    return check_participant_id(value)


def participant_ids(table: pd.DataFrame, *, path: Path) -> pd.Series:
    """The table's ``participant_id`` column as BIDS IDs; every bad row is named (1-based)."""
    ids, bad = [], []
    for row, value in enumerate(table["participant_id"], start=1):
        try:
            ids.append(check_participant_id(value, path=path, row=row))
        except InputError:
            bad.append((row, str(value)))
    if bad:
        rows = ", ".join(f"row {r}: {v!r}" for r, v in bad)
        raise InputError(
            f"participant_id is not a BIDS label ('sub-' followed by letters and digits) in {rows}",
            path=path,
            value=bad[0][1],
        )
    return pd.Series(ids, index=table.index, dtype=object)


def check_subject_label(label: str, *, path: Path) -> None:
    """A subject found on disk (``sub-<label>`` folder or file entity) must carry a BIDS label."""
    if not is_bids_label(label):
        raise InputError(
            "subject folder is not a BIDS label ('sub-' followed by letters and digits)",
            path=path,
            value=f"sub-{label}",
        )


def check_dataset_description(bids_dir: Path, *, allow_missing: bool = False) -> None:
    """A BIDS dataset has a readable ``dataset_description.json`` at its root.

    Missing: InputError, or a warning when ``allow_missing`` (``--allow-missing-description``,
    ``PrepareConfig.allow_missing_description``). Present but not a JSON object: always
    InputError.
    """
    path = bids_dir / "dataset_description.json"
    if not path.is_file():
        message = (
            "not a BIDS dataset: dataset_description.json is missing "
            "(pass --allow-missing-description to read it anyway)"
        )
        if not allow_missing:
            raise InputError(message, path=path)
        warnings.warn(f"{path}: dataset_description.json is missing; reading anyway", stacklevel=3)
        return
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            "unreadable dataset_description.json", path=path, value=f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(content, dict):
        raise InputError(
            "dataset_description.json must hold a JSON object",
            path=path,
            value=type(content).__name__,
        )


def is_missing(value: object) -> bool:
    return (
        value is None
        or (isinstance(value, float) and np.isnan(value))
        or (str(value).strip().lower() in _MISSING)
    )


def read_tsv(path: Path, *, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what}: {exc}", path=path) from exc


def labels_from_table(
    table: pd.DataFrame, label: str, *, path: Path
) -> tuple[dict[str, str], list[Failure]]:
    """Map participant → label; duplicates and missing labels become failures."""
    if "participant_id" not in table.columns:
        raise InputError("table lacks a participant_id column", path=path, value=list(table))
    if label not in table.columns:
        raise InputError(
            f"label column {label!r} not found; available columns",
            path=path,
            value=[c for c in table.columns if c != "participant_id"],
        )
    failures: list[Failure] = []
    ids = participant_ids(table, path=path)
    dup = ids.duplicated(keep=False)
    for pid in sorted(set(ids[dup])):
        err = InputError("duplicate subject", subject=pid, path=path, value=int((ids == pid).sum()))
        failures.append(Failure.from_error(err, subject=pid, step="ingest"))
    labels: dict[str, str] = {}
    for pid, value in zip(ids[~dup], table.loc[~dup, label], strict=True):
        if is_missing(value):
            err = InputError(
                f"missing label in column {label!r}", subject=pid, path=path, value=value
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
        else:
            labels[pid] = str(value).strip()
    return labels, failures


def selected_participants(
    ids: Iterable[str], participant_labels: Sequence[str] | None
) -> set[str] | None:
    if not participant_labels:
        return None
    return {normalize_participant(p) for p in participant_labels}


def find_mask(
    root: Path, participant_id: str, desc: str, *, session: str | None, run: str | None
) -> Path | None:
    """The subject's ``*_desc-<desc>_mask.nii[.gz]`` under ``root/sub-XX`` (None if absent).

    Among several, prefer the one whose name carries the chosen session and run.
    """
    subject_dir = root / participant_id
    if not subject_dir.is_dir():
        return None
    pattern = f"{participant_id}_*desc-{desc}_mask.nii*" if desc else f"{participant_id}_*mask.nii*"
    found = sorted(p for p in subject_dir.rglob(pattern) if not p.name.startswith("."))
    if not found:
        return None

    def score(p: Path) -> tuple[int, str]:
        s = 0
        if session and f"_ses-{session}_" in p.name:
            s -= 2
        if run and f"_run-{run}_" in p.name:
            s -= 1
        return s, str(p)

    return min(found, key=score)


def find_mask_roots(data_root: Path, masks_dir: Path | None) -> list[Path]:
    """Folders searched for ground-truth masks: ``masks_dir`` or every ``derivatives/*``."""
    if masks_dir is not None:
        if not masks_dir.is_dir():
            raise InputError("mask folder not found", path=masks_dir)
        return [masks_dir]
    deriv = data_root / "derivatives"
    return sorted(p for p in deriv.iterdir() if p.is_dir()) if deriv.is_dir() else []


def check_mask(mask: Path, shape: tuple[int, ...], affine: np.ndarray, *, subject: str) -> None:
    img = load_nifti_header(mask, subject=subject)
    if tuple(img.shape[:3]) != tuple(shape[:3]) or not np.allclose(img.affine, affine, atol=1e-3):
        raise InputError(
            "ground-truth mask is not on the DWI's voxel grid (shape/affine differ)",
            subject=subject,
            path=mask,
            value=tuple(int(s) for s in img.shape),
        )
