"""Structural cohorts: find each subject's T1w/T2w/FLAIR (and ground truth) in a BIDS dataset.

:func:`ingest_anat` reads a BIDS dataset into :class:`AnatRecord` objects (one bad subject is
listed as a failure, never stops the rest). Preprocessing them is
:mod:`braincam.modalities.anat.modality` through the common batch runner
(:mod:`braincam.cohort.runner`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from braincam.cohort.ingest import (
    Failure,
    IngestResult,
    check_dataset_description,
    check_mask,
    check_subject_label,
    find_mask,
    find_mask_roots,
    labels_from_table,
    normalize_participant,
    read_tsv,
)
from braincam.errors import ConfigError, InputError
from braincam.imaging.groundtruth import anat_groundtruth_paths
from braincam.imaging.nifti import load_nifti_header
from braincam.modalities.anat.preprocess import CONTRASTS, MOVING


@dataclass(frozen=True)
class AnatRecord:
    """One subject's structural inputs (paths exist; contents are checked by preprocess)."""

    participant_id: str
    label: str
    t1: Path
    t2: Path
    flair: Path
    mask: Path | None = None  # ground-truth (lesion) mask on the T1w grid
    true_xfm: dict[str, Path] = field(default_factory=dict)  # moving → ground-truth JSON
    session: str | None = None  # same fields as SubjectRecord, so prepare's summary reads both
    run: str | None = None

    @property
    def images(self) -> dict[str, Path]:
        return {"T1w": self.t1, "T2w": self.t2, "FLAIR": self.flair}


def find_contrast(subject_dir: Path, participant_id: str, suffix: str) -> Path | None:
    """The subject's raw ``anat/*_<suffix>.nii[.gz]`` (first by name; sessions included)."""
    if not subject_dir.is_dir():
        return None
    found = sorted(
        p
        for p in subject_dir.rglob(f"{participant_id}_*{suffix}.nii*")
        if p.parent.name == "anat"
        and not p.name.startswith(".")
        and p.name.endswith((f"_{suffix}.nii", f"_{suffix}.nii.gz"))
    )
    return found[0] if found else None


def check_anat_headers(record: AnatRecord) -> None:
    """Header-level checks at ingest (as for DWI): each contrast a readable 3D NIfTI, the
    ground-truth mask on the T1w grid. InputError naming the subject and file otherwise."""
    pid = record.participant_id
    for contrast, path in record.images.items():
        shape = tuple(int(n) for n in load_nifti_header(path, subject=pid).shape)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3 or min(shape) < 2:
            raise InputError(f"{contrast} must be a 3D image", subject=pid, path=path, value=shape)
    if record.mask is not None:
        t1 = load_nifti_header(record.t1, subject=pid)
        check_mask(record.mask, t1.shape, t1.affine, subject=pid)


def ingest_anat(
    bids_dir: str | Path,
    *,
    label: str = "group",
    participant_labels: Sequence[str] | None = None,
    mask_desc: str | None = "lesion",
    masks_dir: str | Path | None = None,
    missing: Literal["error", "skip"] = "error",
    allow_missing_description: bool = False,
) -> IngestResult:
    """Find every subject's T1w, T2w and FLAIR (and ground truth) in a BIDS dataset.

    Labels come from ``participants.tsv``. A subject lacking a contrast raises InputError naming
    the subject and the expected file (``missing="error"``), or is skipped and listed as a
    failure (``missing="skip"``). Ground-truth masks ``*_desc-<mask_desc>_mask`` are looked up
    under ``masks_dir`` or every folder of ``derivatives/``. Returns an
    :class:`~braincam.cohort.ingest.IngestResult` whose ``subjects`` are :class:`AnatRecord`
    objects.
    """
    if missing not in ("error", "skip"):
        raise ConfigError(f"missing must be 'error' or 'skip'; got {missing!r}")
    root = Path(bids_dir)
    if not root.is_dir():
        raise InputError("BIDS folder not found", path=root)
    check_dataset_description(root, allow_missing=allow_missing_description)
    table_path = root / "participants.tsv"
    labels, failures = labels_from_table(
        read_tsv(table_path, what="participants table"), label, path=table_path
    )
    selected = (
        {normalize_participant(p) for p in participant_labels} if participant_labels else None
    )
    on_disk = {p.name for p in root.glob("sub-*") if p.is_dir()}
    for name in sorted(on_disk):
        check_subject_label(name.removeprefix("sub-"), path=root / name)
    mask_roots = (
        find_mask_roots(root, None if masks_dir is None else Path(masks_dir)) if mask_desc else []
    )
    records = []
    for pid in sorted(set(labels) | on_disk):
        if selected is not None and pid not in selected:
            continue
        if pid not in labels:
            if any(f.participant_id == pid for f in failures):
                continue
            err = InputError(
                "anatomical data without a label in participants.tsv",
                subject=pid,
                path=table_path,
                value=label,
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
            continue
        found = {s: find_contrast(root / pid, pid, s) for s in CONTRASTS}
        absent = [s for s, p in found.items() if p is None]
        if absent:
            expected = root / pid / "anat" / f"{pid}_{absent[0]}.nii.gz"
            err = InputError(
                f"missing contrast(s) {', '.join(absent)}", subject=pid, path=expected, value=absent
            )
            if missing == "error":
                raise err
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
            continue
        mask = None
        for deriv in mask_roots:
            mask = find_mask(deriv, pid, mask_desc or "", session=None, run=None)
            if mask is not None:
                break
        groundtruth = anat_groundtruth_paths(root, pid)
        truth = {m: groundtruth[f"xfm_{m}"] for m in MOVING}
        record = AnatRecord(
            pid,
            labels[pid],
            found["T1w"],  # type: ignore[arg-type]
            found["T2w"],  # type: ignore[arg-type]
            found["FLAIR"],  # type: ignore[arg-type]
            mask,
            {m: p for m, p in truth.items() if p.is_file()},
        )
        try:
            check_anat_headers(record)
        except InputError as exc:  # a bad file spoils only its subject
            failures.append(Failure.from_error(exc, subject=pid, step="ingest"))
            continue
        records.append(record)
    if selected is not None:
        for pid in sorted(selected - set(labels) - on_disk):
            err = InputError(
                "--participant-label names an unknown subject", subject=pid, path=root, value=pid
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
    return IngestResult(records, failures, label_column=label, source=str(root))
