"""Structural cohorts: find each subject's T1w/T2w/FLAIR, preprocess them all, summarize.

:func:`ingest_anat` reads a BIDS dataset into :class:`AnatRecord` objects (one bad subject is
listed as a failure, never stops the rest); :func:`run_anat_subjects` runs
:func:`braincam.modalities.anat.preprocess.preprocess_anat` per subject — cached by content hash, on
joblib workers if asked — and returns one :class:`AnatOutcome` each; :func:`slice_sources` and
:func:`registration_summary` hand the results to the slice store and to ``summary.json``.
The dMRI counterpart of this module is :mod:`braincam.modalities.dwi.dti` (its batch half).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from braincam.cohort.ingest import (
    Failure,
    IngestResult,
    check_mask,
    find_mask,
    find_mask_roots,
    labels_from_table,
    normalize_participant,
    read_tsv,
)
from braincam.errors import BraincamError, ConfigError, InputError
from braincam.io import read_json
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
from braincam.modalities.dwi.dti import file_sha256, peak_rss_mib
from braincam.modalities.dwi.validate import load_nifti_header

if TYPE_CHECKING:  # the slice store imports torch: only for annotations here
    from braincam.data.slices import SliceSource


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
    table_path = root / "participants.tsv"
    labels, failures = labels_from_table(
        read_tsv(table_path, what="participants table"), label, path=table_path
    )
    selected = (
        {normalize_participant(p) for p in participant_labels} if participant_labels else None
    )
    on_disk = {p.name for p in root.glob("sub-*") if p.is_dir()}
    truth_root = root / "derivatives" / "groundtruth"
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
        truth = {
            m: truth_root / pid / "anat" / f"{pid}_from-{m}_to-T1w_desc-true_xfm.json"
            for m in MOVING
        }
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


@dataclass(frozen=True)
class AnatOutcome:
    """What happened to one subject: ``computed``, ``skipped`` (cached) or ``failed``."""

    participant_id: str
    status: str
    images: tuple[str, ...] = ()
    mask: str = ""
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    transforms: dict[str, list] = field(default_factory=dict)
    kept_slices: dict[str, Any] = field(default_factory=dict)
    step: str = ""
    file: str = ""
    error: str = ""
    seconds: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def fa(self) -> str:
        """The grid-defining image (T1w), under the dMRI outcome's name for shared reporting."""
        return self.images[0] if self.images else ""


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


def process_anat_subject(
    record: AnatRecord, work_dir: str | Path, params: AnatParams, *, force: bool = False
) -> AnatOutcome:
    """Preprocess one subject, or skip it when cached. Never raises for bad input: errors
    become a ``failed`` outcome (step, file, message), so one subject cannot stop the batch."""
    from braincam.synth.anat import read_true_transform

    start = time.perf_counter()
    pid = record.participant_id
    paths = anat_derivative_paths(work_dir, pid)
    step = "hash"
    try:
        for c, p in record.images.items():
            if not Path(p).is_file():
                raise InputError(f"missing {c} image (file not found)", subject=pid, path=p)
        key = anat_cache_key(record, params)
        side = None if force else _cached(paths, key)
        if side is not None:
            xfm = {m: read_json(paths.xfm_json[m]) for m in MOVING}
            return AnatOutcome(
                pid,
                "skipped",
                tuple(str(paths.images[c]) for c in CONTRASTS),
                str(paths.mask),
                errors={
                    m: x["RegistrationError"] for m, x in xfm.items() if x.get("RegistrationError")
                },
                transforms={m: x["MatrixRAS"] for m, x in xfm.items()},
                kept_slices=side.get("SliceTrimming", {}),
                seconds=time.perf_counter() - start,
                peak_rss_mib=peak_rss_mib(),
            )
        step = "preprocess"
        truth = {m: read_true_transform(p) for m, p in record.true_xfm.items()}
        out = preprocess_anat(
            record.t1,
            record.t2,
            record.flair,
            work_dir,
            params,
            participant_id=pid,
            true_transforms=truth or None,
            extra_sidecar={"BraincamCacheKey": key},
        )
    except Exception as exc:  # one subject's failure must not stop the batch
        message = str(exc) if isinstance(exc, BraincamError) else f"{type(exc).__name__}: {exc}"
        return AnatOutcome(
            pid,
            "failed",
            step=step,
            file=getattr(exc, "path", None) or str(record.t1),
            error=message,
            seconds=time.perf_counter() - start,
            peak_rss_mib=peak_rss_mib(),
        )
    return AnatOutcome(
        pid,
        "computed",
        tuple(str(p) for p in out.images),
        str(paths.mask),
        errors=out.errors,
        transforms={m: v.tolist() for m, v in out.transforms.items()},
        kept_slices=out.kept_slices,
        seconds=time.perf_counter() - start,
        peak_rss_mib=peak_rss_mib(),
    )


def run_anat_subjects(
    records: Sequence[AnatRecord],
    work_dir: str | Path,
    params: AnatParams,
    *,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> list[AnatOutcome]:
    """Process every subject, in-process or on ``workers`` joblib processes (one SimpleITK
    thread each, so workers do not oversubscribe the cores); sorted by participant_id."""
    from braincam.progress import track

    if not records:
        return []
    work = str(work_dir)
    if workers > 1:
        from joblib import Parallel, delayed

        one = params.replace(threads=params.threads or 1)
        jobs = Parallel(n_jobs=workers, return_as="generator_unordered")(
            delayed(process_anat_subject)(r, work, one, force=force) for r in records
        )
    else:
        jobs = (process_anat_subject(r, work, params, force=force) for r in records)
    outcomes = list(
        track(jobs, "Structural preprocessing", total=len(records), disable=not progress)
    )
    return sorted(outcomes, key=lambda o: o.participant_id)


def slice_sources(
    records: Sequence[AnatRecord], outcomes: Sequence[AnatOutcome]
) -> list[SliceSource]:
    """Three-channel slice-store inputs (T1w, T2w, FLAIR; ground-truth mask), finished subjects."""
    from braincam.data.slices import SliceSource

    by_pid = {r.participant_id: r for r in records}
    return [
        SliceSource(
            o.participant_id,
            by_pid[o.participant_id].label,
            images=list(o.images),
            mask=by_pid[o.participant_id].mask,
        )
        for o in outcomes
        if o.status != "failed"
    ]


def registration_summary(outcomes: Sequence[AnatOutcome]) -> dict[str, Any]:
    """Per-subject transforms and errors, and the median errors per moving contrast (the
    ``registration`` block of the ``prepare`` summary for structural data)."""
    done = [o for o in outcomes if o.status != "failed"]
    median: dict[str, dict[str, float]] = {}
    for m in MOVING:
        rows = [o.errors[m] for o in done if m in o.errors]
        if rows:
            median[m] = {
                k: round(float(np.median([r[k] for r in rows])), 4)
                for k in ("rotation_deg", "translation_mm")
            }
            median[m]["subjects"] = len(rows)
    return {
        "subjects": {
            o.participant_id: {
                "transforms": o.transforms,
                "errors": o.errors or None,
                "kept_slices": o.kept_slices,
            }
            for o in done
        },
        "median_error": median or None,
    }
