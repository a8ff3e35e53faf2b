"""``prepare``: ingest → per-subject preprocessing (parallel, cached) → splits → slice store (or
volume store, ``representation: volume``) → summary, for any registered modality (``dwi``: DTI
FA maps; ``anat``: T1w/T2w/FLAIR).

One function, :func:`prepare`, drives the whole step; :class:`PrepareConfig` holds every option
(the CLI maps its flags onto it). The modality (:mod:`braincam.modalities`) finds, validates and
preprocesses each subject; the batch runner (:mod:`braincam.cohort.runner`) runs them all. Bad
subjects are collected as failures — written to ``WORK/failures.tsv`` and the summary — while
the good ones finish.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from braincam.cohort.ingest import Failure, IngestResult
from braincam.cohort.runner import SubjectOutcome, run_subjects, write_failures
from braincam.config.prepare import PrepareConfig
from braincam.errors import BraincamError, InputError, OutputError
from braincam.guard import OUTPUT_ERRNOS, ensure_dir, output_error
from braincam.imaging.derivatives import (
    derivatives_root,
    remove_stale_temps,
    write_dataset_description,
)
from braincam.layout import WorkLayout
from braincam.modalities import Modality, modality_names
from braincam.provenance import library_versions
from braincam.summary_schema import update_summary

if TYPE_CHECKING:
    from braincam.data.slices import SliceSource


@dataclass
class PrepareResult:
    """What ``prepare`` did; ``ok`` is False when any subject or step failed."""

    work_dir: Path
    subjects: list[Any]  # the modality's records (dwi: SubjectRecord, anat: AnatRecord)
    outcomes: list[SubjectOutcome]
    failures: list[Failure]
    splits: pd.DataFrame | None = None
    store_dir: Path | None = None
    slices_per_split: dict[str, int] = field(default_factory=dict)
    mask_slices: dict[str, int] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def completed(self) -> list[str]:
        """Subjects whose preprocessed volumes exist (computed now or skipped as cached)."""
        return [o.participant_id for o in self.outcomes if o.status in ("computed", "skipped")]


def slice_sources(
    records: dict[str, Any], outcomes: dict[str, SubjectOutcome], participant_ids: Any
) -> list[SliceSource]:
    """The slice store's inputs: each subject's channel volumes (any modality), its
    ground-truth mask and its brain mask, in the order of ``participant_ids``."""
    from braincam.data.slices import SliceSource

    return [
        SliceSource(
            participant_id=pid,
            label=records[pid].label,
            images=[Path(p) for p in outcomes[pid].images],
            mask=records[pid].mask,
            brain_mask=Path(outcomes[pid].mask) if outcomes[pid].mask else None,
        )
        for pid in participant_ids
    ]


def _build_slices(
    work_dir: Path,
    records: dict[str, Any],
    outcomes: dict[str, SubjectOutcome],
    splits: pd.DataFrame,
    config: PrepareConfig,
) -> tuple[Path, pd.DataFrame, dict]:
    from braincam.data.slice_build import build_slice_store
    from braincam.data.slices import SliceSpec, store_summary

    sources = slice_sources(records, outcomes, splits["participant_id"])
    spec = SliceSpec(
        axes=config.axes,
        per_axis=config.slices_per_axis,
        size=config.size,
        voxel_size=config.voxel_size,
    )
    store_dir = work_dir / "slices"
    store = build_slice_store(store_dir, sources, splits, spec, progress=config.progress)
    index = pd.read_csv(store_dir / "index.tsv", sep="\t", dtype={"participant_id": str})
    return store_dir, index, store_summary(store)


def _build_volumes(
    work_dir: Path,
    records: dict[str, Any],
    outcomes: dict[str, SubjectOutcome],
    splits: pd.DataFrame,
    config: PrepareConfig,
) -> tuple[Path, dict]:
    """The volume store (``representation: volume``) from the same sources as the slices."""
    from braincam.data.volumes import build_volume_store, volume_summary

    sources = slice_sources(records, outcomes, splits["participant_id"])
    store_dir = WorkLayout(work_dir).volumes
    store = build_volume_store(
        store_dir, sources, splits, config.volume_spec(), progress=config.progress
    )
    return store_dir, volume_summary(store)


def prepare(
    bids_dir: str | Path,
    work_dir: str | Path,
    config: PrepareConfig | None = None,
) -> PrepareResult:
    """Run the whole preparation step; see docs/prepare.md for the outputs and summary schema.

    Raises InputError/ConfigError only for problems that stop everything (no participants
    table, unknown label column, a label that cannot be split, unreachable Dask scheduler) —
    before WORK is created; OutputError when WORK cannot be written (a file in the way, a
    read-only or full disk). Per-subject problems end up in ``result.failures``.
    """
    t0 = time.perf_counter()
    config = config or PrepareConfig()
    data_dir, work_dir = Path(bids_dir), Path(work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise OutputError("work directory is an existing file, not a folder", path=work_dir)
    # Everything that can stop the whole run is checked before WORK is created or touched.
    modality = config.get_modality()
    ingested = modality.ingest(data_dir, config)
    check_labels(ingested, config)
    with writing_outputs(work_dir):
        return _prepare(work_dir, config, modality, ingested, t0)


def check_labels(ingested: IngestResult, config: PrepareConfig) -> None:
    """Before any expensive step: the valid subjects must be splittable (≥ 2 classes, ≥ 3
    subjects), else InputError naming the label column, the table and the classes found."""
    from braincam.data.splits import validate_labels

    if not ingested.subjects:
        return  # every subject failed at ingest: the failures say why
    labels = pd.DataFrame(
        {
            "participant_id": [r.participant_id for r in ingested.subjects],
            "label": [r.label for r in ingested.subjects],
        }
    )
    try:
        validate_labels(labels)
    except InputError as exc:
        source = config.manifest or Path(ingested.source) / "participants.tsv"
        raise InputError(
            f"label column {config.label!r} cannot be split: {exc}", path=source
        ) from None


@contextmanager
def writing_outputs(work_dir: Path) -> Iterator[None]:
    """Turn an OSError met while writing into WORK (full or read-only disk, a file in the way)
    into one OutputError naming the path; errors that are not about outputs pass through."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        name = str(exc.filename or "")
        in_work = bool(name) and (
            Path(name).resolve() == work_dir.resolve()
            or work_dir.resolve() in Path(name).resolve().parents
        )
        if exc.errno in OUTPUT_ERRNOS or in_work:
            raise output_error(exc) from None
        raise


def _prepare(
    work_dir: Path,
    config: PrepareConfig,
    modality: Modality,
    ingested: IngestResult,
    t0: float,
) -> PrepareResult:
    ensure_dir(work_dir)
    # A killed run (SIGKILL skips `finally`) may have left temp files; they are never outputs.
    remove_stale_temps(derivatives_root(work_dir))
    remove_stale_temps(work_dir, recursive=False)
    failures = list(ingested.failures)
    records = {r.participant_id: r for r in ingested.subjects}

    write_dataset_description(work_dir)
    t_fit = time.perf_counter()
    outcomes = run_subjects(
        modality,
        ingested.subjects,
        work_dir,
        modality.params(config),
        workers=config.workers,
        dask_scheduler=config.dask_scheduler,
        force=config.force,
        progress=config.progress,
    )
    fit_seconds = time.perf_counter() - t_fit
    by_pid = {o.participant_id: o for o in outcomes}
    for o in outcomes:
        if o.status == "failed":
            failures.append(Failure(o.participant_id, o.step, o.file, o.error))
    done = [pid for pid, o in by_pid.items() if o.status != "failed"]

    splits = None
    store_dir = None
    index = None
    store_info: dict | None = None
    if done:
        from braincam.data.splits import make_splits, save_splits

        labels = pd.DataFrame({"participant_id": done, "label": [records[p].label for p in done]})
        try:
            splits = make_splits(labels, config.split_ratios, config.seed)
            save_splits(splits, work_dir / "splits.tsv")
        except InputError as exc:
            failures.append(Failure.from_error(exc, subject="*", step="split"))
            splits = None
    layout = WorkLayout(work_dir)
    if splits is None:
        # Outputs of an earlier run no longer match these inputs; never leave them to be used.
        (work_dir / "splits.tsv").unlink(missing_ok=True)
        shutil.rmtree(layout.slices, ignore_errors=True)
        shutil.rmtree(layout.volumes, ignore_errors=True)
    volume_info: dict | None = None
    if splits is not None:
        # A work directory holds the store of one representation (train, evaluate and explain
        # then know which one to read): the other one is stale.
        other = layout.slices if config.representation == "volume" else layout.volumes
        shutil.rmtree(other, ignore_errors=True)
        try:
            if config.representation == "volume":
                store_dir, volume_info = _build_volumes(work_dir, records, by_pid, splits, config)
            else:
                store_dir, index, store_info = _build_slices(
                    work_dir, records, by_pid, splits, config
                )
        except BraincamError as exc:
            step = "volumes" if config.representation == "volume" else "slices"
            failures.append(
                Failure.from_error(exc, subject=getattr(exc, "subject", None) or "*", step=step)
            )

    slices_per_split: dict[str, int] = {}
    mask_slices: dict[str, int] = {}
    slices_per_subject: dict[str, int] = {}
    if index is not None:
        slices_per_split = {str(k): int(v) for k, v in index.groupby("split").size().items()}
        slices_per_subject = {
            str(k): int(v) for k, v in index.groupby("participant_id").size().items()
        }
        if "mask_pixels" in index.columns:
            with_mask = {p for p in done if records[p].mask is not None}
            hit = index[index["mask_pixels"] > 0].groupby("participant_id").size()
            mask_slices = {p: int(hit.get(p, 0)) for p in sorted(with_mask)}

    write_failures(work_dir, failures)
    summary = _summary(
        modality,
        ingested,
        config,
        outcomes,
        failures,
        splits,
        slices_per_split,
        slices_per_subject,
        mask_slices,
        timing={
            "dti_seconds": round(fit_seconds, 3),
            "total_seconds": round(time.perf_counter() - t0, 3),
        },
        store_dir=store_dir,
        work_dir=work_dir,
        store_info=store_info,
    )
    if config.representation == "volume":
        summary["volume_store"] = volume_info
        summary["outputs"]["volumes"] = (
            None if store_dir is None else str(store_dir.relative_to(work_dir))
        )
        summary["outputs"]["slices"] = None
    summary.update(modality.summary(outcomes))  # e.g. anat: "registration"
    update_summary(work_dir, "prepare", summary)
    return PrepareResult(
        work_dir=work_dir,
        subjects=ingested.subjects,
        outcomes=outcomes,
        failures=failures,
        splits=splits,
        store_dir=store_dir,
        slices_per_split=slices_per_split,
        mask_slices=mask_slices,
        summary=summary,
    )


def _summary(
    modality: Modality,
    ingested: IngestResult,
    config: PrepareConfig,
    outcomes: list[SubjectOutcome],
    failures: list[Failure],
    splits: pd.DataFrame | None,
    slices_per_split: dict[str, int],
    slices_per_subject: dict[str, int],
    mask_slices: dict[str, int],
    *,
    timing: dict[str, float],
    store_dir: Path | None,
    work_dir: Path,
    store_info: dict | None = None,
) -> dict:
    """The ``prepare`` section of summary.json (schema in docs/prepare.md)."""
    split_of = (
        {} if splits is None else dict(zip(splits["participant_id"], splits["split"], strict=True))
    )
    by_pid = {o.participant_id: o for o in outcomes}
    participants = []
    for r in ingested.subjects:
        o = by_pid.get(r.participant_id)
        inputs: dict[str, Any] = dict.fromkeys(modality_names())  # "dwi", "anat": None
        inputs.update(modality.input_files(r))
        participants.append(
            {
                "participant_id": r.participant_id,
                "label": r.label,
                "session": r.session,
                "run": r.run,
                **inputs,
                "status": o.status if o else "not run",
                # The first channel (dwi: the FA map; anat: T1w), under its historical key.
                "fa": str(Path(o.images[0]).relative_to(work_dir)) if o and o.images else None,
                "split": split_of.get(r.participant_id),
                "slices": slices_per_subject.get(r.participant_id, 0),
                "ground_truth_mask": None if r.mask is None else str(r.mask),
                "mask_slices": mask_slices.get(r.participant_id),
                "seconds": round(o.seconds, 3) if o else None,
                "peak_rss_mib": round(o.peak_rss_mib, 1) if o else None,
            }
        )
    split_members = {
        s: sorted(p for p, sp in split_of.items() if sp == s) for s in ("train", "val", "test")
    }
    completed = [o.participant_id for o in outcomes if o.status != "failed"]
    return {
        "source": {
            "type": "manifest" if config.manifest is not None else "bids",
            "path": ingested.source,
        },
        "label_column": ingested.label_column,
        "classes": sorted({p["label"] for p in participants if p["status"] != "failed"}),
        "subjects": completed,
        "n_subjects": {
            "ingested": len(ingested.subjects),
            "computed": sum(o.status == "computed" for o in outcomes),
            "skipped": sum(o.status == "skipped" for o in outcomes),
            "failed": len({f.participant_id for f in failures} - {"*"}),
        },
        "participants": participants,
        "splits": split_members,
        "slices_per_split": slices_per_split,
        "mask_slices": mask_slices,
        "slice_store": store_info,
        "failures": [asdict(f) for f in failures],
        "outputs": {
            "derivatives": str(derivatives_root(work_dir).relative_to(work_dir)),
            "splits": "splits.tsv" if splits is not None else None,
            "slices": None if store_dir is None else str(store_dir.relative_to(work_dir)),
            "failures": "failures.tsv",
        },
        "parameters": config.to_dict(),
        "timing": timing,
        "versions": library_versions(),
    }
