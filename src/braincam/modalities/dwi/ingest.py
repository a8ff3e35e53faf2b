"""Diffusion inputs: a BIDS dataset or a TSV manifest → validated :class:`SubjectRecord` objects.

A bad subject never spoils the others: its problem becomes a
:class:`~braincam.cohort.ingest.Failure` (subject, step, file, error) and the remaining subjects
go on. Only problems that make the whole dataset unusable (no label column, no participants
table, no subject at all) raise :class:`InputError`.

BIDS files are found with ancpbids (pure Python, no dependencies, indexes a small dataset in
milliseconds; see docs/prepare.md for the comparison with pybids and bids2table). When a
subject has several sessions or runs, one DWI is used: the first in (session, run, acquisition,
file name) order unless ``session``/``run`` pick one. The helpers every modality's ingest
shares (labels, masks, failures) are :mod:`braincam.cohort.ingest`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from braincam.cohort.ingest import (
    Failure,
    IngestResult,
    check_dataset_description,
    check_mask,
    check_subject_label,
    find_mask,
    find_mask_roots,
    is_missing,
    labels_from_table,
    participant_ids,
    read_tsv,
    selected_participants,
)
from braincam.errors import InputError
from braincam.imaging.nifti import load_nifti_header
from braincam.modalities.dwi.validate import (
    DEFAULT_B0_THRESHOLD,
    DEFAULT_BVEC_TOLERANCE,
    check_dwi_header,
    read_gradients,
)

MANIFEST_COLUMNS = ("participant_id", "dwi", "bval", "bvec")


@dataclass(frozen=True)
class SubjectRecord:
    """One subject's validated inputs (header-level checks passed)."""

    participant_id: str
    label: str
    dwi: Path
    bval: Path
    bvec: Path
    shape: tuple[int, ...]
    session: str | None = None
    run: str | None = None
    mask: Path | None = None


def _validate_record(
    *,
    participant_id: str,
    label: str,
    dwi: Path,
    bval: Path,
    bvec: Path,
    session: str | None,
    run: str | None,
    mask: Path | None,
    b0_threshold: float,
    bvec_tolerance: float,
) -> SubjectRecord:
    """Header-level checks for one subject; raises InputError naming the subject and file."""
    shape = check_dwi_header(dwi, subject=participant_id)
    read_gradients(
        bval,
        bvec,
        shape[3],
        subject=participant_id,
        b0_threshold=b0_threshold,
        bvec_tolerance=bvec_tolerance,
    )
    if mask is not None:
        affine = load_nifti_header(dwi, subject=participant_id).affine
        check_mask(mask, shape, affine, subject=participant_id)
    return SubjectRecord(
        participant_id=participant_id,
        label=label,
        dwi=dwi,
        bval=bval,
        bvec=bvec,
        shape=shape,
        session=session,
        run=run,
        mask=mask,
    )


def _sibling(dwi: Path, ext: str) -> Path:
    name = re.sub(r"\.nii(\.gz)?$", ext, dwi.name)
    return dwi.with_name(name)


def _bids_dwi_files(bids_dir: Path) -> dict[str, list[tuple[tuple[str, str, str, str], Path]]]:
    """participant_id → [(sort key, dwi path)] for every raw DWI NIfTI in the dataset."""
    import ancpbids  # lazy: only BIDS ingest needs it

    layout = ancpbids.BIDSLayout(str(bids_dir))
    artifacts = layout.get(scope="raw", suffix="dwi", extension=[".nii.gz", ".nii"])
    found: dict[str, list[tuple[tuple[str, str, str, str], Path]]] = {}
    for art in artifacts:
        ent = art.get_entities()
        if "sub" not in ent:
            continue
        path = Path(art.get_absolute_path())
        check_subject_label(str(ent["sub"]), path=path)
        key = (
            str(ent.get("ses", "")),
            str(ent.get("run", "")).zfill(6),  # run-2 before run-10
            str(ent.get("acq", "")),
            path.name,
        )
        found.setdefault(f"sub-{ent['sub']}", []).append((key, path))
    return found


def _entity(path: Path, name: str) -> str | None:
    m = re.search(rf"_{name}-([a-zA-Z0-9]+)", path.name)
    return m.group(1) if m else None


def ingest_bids(
    bids_dir: str | Path,
    *,
    label: str,
    participant_labels: Sequence[str] | None = None,
    session: str | None = None,
    run: str | None = None,
    mask_desc: str | None = "effect",
    masks_dir: str | Path | None = None,
    b0_threshold: float = DEFAULT_B0_THRESHOLD,
    bvec_tolerance: float = DEFAULT_BVEC_TOLERANCE,
    allow_missing_description: bool = False,
) -> IngestResult:
    """Find each subject's DWI (+ bval/bvec, label, ground-truth mask) in a BIDS dataset.

    Labels come from ``participants.tsv`` column ``label``. One DWI per subject: the first by
    (session, run, acq, name), or the one matching ``session``/``run`` (BIDS labels without the
    ``ses-``/``run-`` prefix). Ground-truth masks ``sub-XX*_desc-<mask_desc>_mask.nii[.gz]`` are
    looked up under ``masks_dir`` or, by default, every folder of ``derivatives/``.
    """
    bids_dir = Path(bids_dir)
    # Accept "ses-01"/"run-1" as well as the bare labels.
    session = None if session is None else str(session).removeprefix("ses-")
    run = None if run is None else str(run).removeprefix("run-")
    if not bids_dir.is_dir():
        raise InputError("BIDS folder not found", path=bids_dir)
    check_dataset_description(bids_dir, allow_missing=allow_missing_description)
    participants_tsv = bids_dir / "participants.tsv"
    labels, failures = labels_from_table(
        read_tsv(participants_tsv, what="participants table"), label, path=participants_tsv
    )
    dup_subjects = {f.participant_id for f in failures}
    files = _bids_dwi_files(bids_dir)
    selected = selected_participants(files, participant_labels)
    mask_roots = (
        find_mask_roots(bids_dir, None if masks_dir is None else Path(masks_dir))
        if mask_desc
        else []
    )

    records: list[SubjectRecord] = []
    for pid in sorted(set(files) | set(labels)):
        if selected is not None and pid not in selected:
            continue
        if pid in dup_subjects:
            continue
        if pid not in files:
            err = InputError(
                "label given for a subject without DWI data",
                subject=pid,
                path=participants_tsv,
                value=labels[pid],
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
            continue
        candidates = sorted(files[pid])
        if session is not None:
            candidates = [c for c in candidates if c[0][0] == session]
        if run is not None:
            candidates = [c for c in candidates if c[0][1].lstrip("0") == str(run).lstrip("0")]
        if not candidates:
            err = InputError(
                "no DWI for the requested session/run",
                subject=pid,
                path=bids_dir / pid,
                value={"session": session, "run": run},
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
            continue
        dwi = candidates[0][1]
        if pid not in labels:
            err = InputError(
                "DWI data without a label in participants.tsv", subject=pid, path=dwi, value=label
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
            continue
        ses, rn = _entity(dwi, "ses"), _entity(dwi, "run")
        mask = None
        for root in mask_roots:
            mask = find_mask(root, pid, mask_desc or "", session=ses, run=rn)
            if mask is not None:
                break
        try:
            records.append(
                _validate_record(
                    participant_id=pid,
                    label=labels[pid],
                    dwi=dwi,
                    bval=_sibling(dwi, ".bval"),
                    bvec=_sibling(dwi, ".bvec"),
                    session=ses,
                    run=rn,
                    mask=mask,
                    b0_threshold=b0_threshold,
                    bvec_tolerance=bvec_tolerance,
                )
            )
        except InputError as exc:
            failures.append(Failure.from_error(exc, subject=pid, step="ingest", file=str(dwi)))
    if selected is not None:
        unknown = sorted(selected - set(files) - set(labels))
        for pid in unknown:
            err = InputError(
                "--participant-label names an unknown subject",
                subject=pid,
                path=bids_dir,
                value=pid,
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
    return IngestResult(records, failures, label_column=label, source=str(bids_dir))


def ingest_manifest(
    manifest: str | Path,
    *,
    label: str = "label",
    base_dir: str | Path | None = None,
    participant_labels: Sequence[str] | None = None,
    b0_threshold: float = DEFAULT_B0_THRESHOLD,
    bvec_tolerance: float = DEFAULT_BVEC_TOLERANCE,
) -> IngestResult:
    """Read a TSV manifest (``participant_id, <label>, dwi, bval, bvec[, mask]``).

    Relative paths resolve against ``base_dir`` (default: the manifest's folder). An optional
    ``mask`` column gives a ground-truth mask per subject.
    """
    manifest = Path(manifest)
    table = read_tsv(manifest, what="manifest")
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise InputError("manifest lacks required columns", path=manifest, value=missing)
    labels, failures = labels_from_table(table, label, path=manifest)
    base = Path(base_dir) if base_dir is not None else manifest.parent
    selected = selected_participants(labels, participant_labels)

    def resolve(value: str) -> Path:
        p = Path(str(value).strip())
        return p if p.is_absolute() else base / p

    records: list[SubjectRecord] = []
    table = table.assign(_pid=participant_ids(table, path=manifest))
    for _, row in table.sort_values("_pid", kind="mergesort").iterrows():
        pid = row["_pid"]
        if pid not in labels or (selected is not None and pid not in selected):
            continue
        empty = [c for c in ("dwi", "bval", "bvec") if is_missing(row[c])]
        if empty:
            err = InputError(
                "manifest row has no file for", subject=pid, path=manifest, value=empty
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
            continue
        mask = None
        if "mask" in table.columns and not is_missing(row["mask"]):
            mask = resolve(row["mask"])
        dwi = resolve(row["dwi"])
        try:
            records.append(
                _validate_record(
                    participant_id=pid,
                    label=labels[pid],
                    dwi=dwi,
                    bval=resolve(row["bval"]),
                    bvec=resolve(row["bvec"]),
                    session=_entity(dwi, "ses"),
                    run=_entity(dwi, "run"),
                    mask=mask,
                    b0_threshold=b0_threshold,
                    bvec_tolerance=bvec_tolerance,
                )
            )
        except InputError as exc:
            failures.append(Failure.from_error(exc, subject=pid, step="ingest", file=str(dwi)))
    if selected is not None:
        for pid in sorted(selected - set(table["_pid"])):
            err = InputError(
                "--participant-label names an unknown subject",
                subject=pid,
                path=manifest,
                value=pid,
            )
            failures.append(Failure.from_error(err, subject=pid, step="ingest"))
    return IngestResult(records, failures, label_column=label, source=str(manifest))
