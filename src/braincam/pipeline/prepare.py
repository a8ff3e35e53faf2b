"""``prepare``: ingest → per-subject FA (parallel, cached) → splits → slice store → summary.

One function, :func:`prepare`, drives the whole step; :class:`PrepareConfig` holds every option
(the CLI maps its flags onto it). Bad subjects are collected as failures — written to
``WORK/failures.tsv`` and the summary — while the good ones finish.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from braincam.cohort.ingest import (
    Failure,
    IngestResult,
    SubjectRecord,
    ingest_bids,
    ingest_manifest,
)
from braincam.config.prepare import PrepareConfig
from braincam.errors import BraincamError, ConfigError, InputError
from braincam.io import atomic_path, update_summary
from braincam.modalities.dwi.dti import (
    DTIParams,
    SubjectOutcome,
    derivatives_root,
    process_subject,
    remove_stale_temps,
    write_dataset_description,
)
from braincam.progress import make_progress
from braincam.provenance import library_versions

FAILURE_COLUMNS = ("participant_id", "step", "file", "error")
# How long to wait for a Dask scheduler before giving up (distributed retries until then).
DASK_CONNECT_TIMEOUT = "10s"


@dataclass
class PrepareResult:
    """What ``prepare`` did; ``ok`` is False when any subject or step failed."""

    work_dir: Path
    subjects: list[SubjectRecord]
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
        """Subjects whose FA map exists (computed now or skipped as cached)."""
        return [o.participant_id for o in self.outcomes if o.status in ("computed", "skipped")]


def _run_parallel(
    jobs: Iterable[SubjectOutcome], total: int, *, progress: bool
) -> list[SubjectOutcome]:
    outcomes: list[SubjectOutcome] = []
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("DTI fit (subjects)", total=total)
        for outcome in jobs:
            outcomes.append(outcome)
            bar.advance(task)
    return outcomes


def run_subjects(
    records: Sequence[SubjectRecord],
    work_dir: str | Path,
    params: DTIParams,
    *,
    workers: int = 1,
    dask_scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[SubjectOutcome]:
    """Process every subject: in-process, on ``workers`` joblib processes, or on a Dask cluster.

    Parallelism is across subjects because DIPY's tensor fit has no worker option. Outcomes are
    returned sorted by participant_id whatever the completion order.
    """
    work = str(work_dir)
    if not records:
        return []
    if dask_scheduler:
        from distributed import Client, as_completed

        try:
            client = Client(dask_scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"cannot connect to the Dask scheduler {dask_scheduler!r}: {exc}"
            ) from exc
        try:
            futures = client.map(
                process_subject,
                list(records),
                work_dir=work,
                params=params,
                force=force,
                pure=False,
            )
            outcomes = _run_parallel(
                (f.result() for f in as_completed(futures, loop=client.loop)),
                len(records),
                progress=progress,
            )
        finally:
            client.close()
    elif workers > 1:
        from joblib import Parallel, delayed

        # loky processes; joblib caps BLAS threads per worker at cpu_count // n_jobs.
        parallel = Parallel(n_jobs=workers, return_as="generator_unordered")
        jobs = parallel(delayed(process_subject)(r, work, params, force=force) for r in records)
        outcomes = _run_parallel(jobs, len(records), progress=progress)
    else:
        outcomes = _run_parallel(
            (process_subject(r, work, params, force=force) for r in records),
            len(records),
            progress=progress,
        )
    return sorted(outcomes, key=lambda o: o.participant_id)


def write_failures(work_dir: str | Path, failures: Sequence[Failure]) -> Path:
    """``WORK/failures.tsv`` (header only when there is none), atomically."""
    path = Path(work_dir) / "failures.tsv"
    df = pd.DataFrame([asdict(f) for f in failures], columns=list(FAILURE_COLUMNS))
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)
    return path


def _ingest(data_dir: Path, config: PrepareConfig) -> IngestResult:
    if config.modality == "anat":
        from braincam.modalities.anat.cohort import ingest_anat

        # "effect" is the dMRI default; a structural cohort's ground truth is its lesion mask.
        desc = "lesion" if config.mask_desc == "effect" else config.mask_desc
        return ingest_anat(
            data_dir,
            label=config.label,
            participant_labels=config.participant_labels,
            mask_desc=desc,
            masks_dir=config.masks_dir,
            missing=config.missing_contrast,  # type: ignore[arg-type]
        )
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
    )


def _build_slices(
    work_dir: Path,
    records: dict[str, SubjectRecord],
    outcomes: dict[str, SubjectOutcome],
    splits: pd.DataFrame,
    config: PrepareConfig,
) -> tuple[Path, pd.DataFrame, dict]:
    from braincam.data.slices import SliceSource, SliceSpec, build_slice_store, store_summary

    sources = [
        SliceSource(
            participant_id=pid,
            label=records[pid].label,
            # anat outcomes carry three co-registered channels (T1w, T2w, FLAIR); dMRI one FA map.
            images=[Path(p) for p in getattr(outcomes[pid], "images", ())]
            or [Path(outcomes[pid].fa)],
            mask=records[pid].mask,
        )
        for pid in splits["participant_id"]
    ]
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


def prepare(
    bids_dir: str | Path,
    work_dir: str | Path,
    config: PrepareConfig | None = None,
) -> PrepareResult:
    """Run the whole preparation step; see docs/prepare.md for the outputs and summary schema.

    Raises InputError/ConfigError only for problems that stop everything (no participants
    table, unknown label column, unreachable Dask scheduler); per-subject problems end up in
    ``result.failures``.
    """
    t0 = time.perf_counter()
    config = config or PrepareConfig()
    data_dir, work_dir = Path(bids_dir), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    # A killed run (SIGKILL skips `finally`) may have left temp files; they are never outputs.
    remove_stale_temps(derivatives_root(work_dir))
    remove_stale_temps(work_dir, recursive=False)

    ingested = _ingest(data_dir, config)
    failures = list(ingested.failures)
    records = {r.participant_id: r for r in ingested.subjects}

    write_dataset_description(work_dir)
    t_fit = time.perf_counter()
    if config.modality == "anat":
        from braincam.modalities.anat.cohort import run_anat_subjects

        outcomes = run_anat_subjects(
            ingested.subjects,
            work_dir,
            config.anat_params(),
            workers=config.workers,
            force=config.force,
            progress=config.progress,
        )
    else:
        outcomes = run_subjects(
            ingested.subjects,
            work_dir,
            config.dti_params(),
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
    if splits is None:
        # Outputs of an earlier run no longer match these inputs; never leave them to be used.
        (work_dir / "splits.tsv").unlink(missing_ok=True)
        shutil.rmtree(work_dir / "slices", ignore_errors=True)
    if splits is not None:
        try:
            store_dir, index, store_info = _build_slices(work_dir, records, by_pid, splits, config)
        except BraincamError as exc:
            failures.append(
                Failure.from_error(exc, subject=getattr(exc, "subject", None) or "*", step="slices")
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
    if config.modality == "anat":
        from braincam.modalities.anat.cohort import registration_summary

        # Estimated transforms per subject and, with ground truth, errors (per subject, median).
        summary["registration"] = registration_summary(outcomes)
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
        participants.append(
            {
                "participant_id": r.participant_id,
                "label": r.label,
                "session": r.session,
                "run": r.run,
                "dwi": str(r.dwi) if hasattr(r, "dwi") else None,
                "anat": {k: str(v) for k, v in r.images.items()} if hasattr(r, "images") else None,
                "status": o.status if o else "not run",
                "fa": str(Path(o.fa).relative_to(work_dir)) if o and o.fa else None,
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
