"""The batch runner: preprocess every subject of a cohort with its modality, whatever it is.

In-process, on ``workers`` joblib processes, or on an existing Dask cluster; each subject is
cached by content (a re-run skips it), and a subject's failure is an outcome, never an
exception, so one bad subject cannot stop the batch. :func:`write_failures` writes them to
``WORK/failures.tsv``. Worker processes die with the process that started them
(:mod:`braincam.cohort.workers`); an OSError writing an output (full or read-only disk, a file
in the way) is not the subject's fault and stops the batch as one
:class:`~braincam.errors.OutputError`. The modality
(:class:`braincam.modalities.base.Modality`) supplies the ingest, the cache key and the
preprocessing; this module supplies everything around them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from braincam.cohort.ingest import Failure
from braincam.errors import BraincamError, ConfigError
from braincam.guard import OUTPUT_ERRNOS, output_error
from braincam.io import atomic_path
from braincam.modalities.base import Modality, Step
from braincam.progress import track
from braincam.provenance import peak_rss_mib

FAILURE_COLUMNS = ("participant_id", "step", "file", "error")
# How long to wait for a Dask scheduler before giving up (distributed retries until then).
DASK_CONNECT_TIMEOUT = "10s"


@dataclass(frozen=True)
class SubjectOutcome:
    """What happened to one subject: ``computed``, ``skipped`` (cached) or ``failed``.

    ``images`` are the channel volumes (channel order), ``mask`` the brain mask, ``details``
    the modality's typed record (e.g. the structural registration); the rest say where and
    why a subject failed, and what it cost.
    """

    participant_id: str
    status: str
    images: tuple[str, ...] = ()
    mask: str = ""
    details: Any = None
    step: str = ""
    file: str = ""
    error: str = ""
    seconds: float = 0.0
    peak_rss_mib: float = 0.0


def process_subject(
    modality: Modality,
    record: Any,
    work_dir: str | Path,
    params: Any,
    *,
    force: bool = False,
) -> SubjectOutcome:
    """Preprocess one subject, or skip it when its cache is valid. Never raises for bad input:
    errors become a ``failed`` outcome (step, file, message); this runs inside workers."""
    start = time.perf_counter()
    pid = record.participant_id
    work = Path(work_dir)
    step = Step("hash")
    try:
        key = modality.cache_key(record, params)
        done = None if force else modality.load_cached(record, work, key)
        status = "skipped"
        if done is None:
            status = "computed"
            step.name = "preprocess"
            done = modality.preprocess(record, work, params, key, step)
    except Exception as exc:  # one subject's failure must not stop the batch
        if is_output_failure(exc, step.name):
            # A full or read-only disk is not this subject's fault: stop the batch with one
            # message (atomic writes leave no partial file under a final name).
            raise output_error(exc) from None  # type: ignore[arg-type]
        error = str(exc) if isinstance(exc, BraincamError) else f"{type(exc).__name__}: {exc}"
        return SubjectOutcome(
            pid,
            "failed",
            step=step.name,
            file=getattr(exc, "path", None) or str(modality.primary_input(record)),
            error=error,
            seconds=time.perf_counter() - start,
            peak_rss_mib=peak_rss_mib(),
        )
    return SubjectOutcome(
        pid,
        status,
        images=tuple(done.images),
        mask=done.mask,
        details=done.details,
        seconds=time.perf_counter() - start,
        peak_rss_mib=peak_rss_mib(),
    )


def is_output_failure(exc: BaseException, step: str) -> bool:
    """True when ``exc`` is an OSError about writing outputs: met while writing (step
    ``write``), or with an errno that always means "cannot write" (full or read-only disk, a
    file or folder in the way) — not braincam's own errors, which are about the input."""
    if not isinstance(exc, OSError) or isinstance(exc, BraincamError):
        return False
    return step == "write" or exc.errno in OUTPUT_ERRNOS


def run_subjects(
    modality: Modality,
    records: Sequence[Any],
    work_dir: str | Path,
    params: Any,
    *,
    workers: int = 1,
    dask_scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[SubjectOutcome]:
    """Process every subject: in-process, on ``workers`` joblib processes, or on a Dask cluster.

    Parallelism is across subjects (DIPY's tensor fit has no worker option; SimpleITK runs one
    thread per worker, see :meth:`Modality.worker_params`). Outcomes are returned sorted by
    participant_id whatever the completion order.
    """
    if not records:
        return []
    work = str(work_dir)
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
                [modality] * len(records),
                list(records),
                work_dir=work,
                params=params,
                force=force,
                pure=False,
            )
            outcomes = _collect(
                (f.result() for f in as_completed(futures, loop=client.loop)),
                modality,
                len(records),
                progress=progress,
            )
        finally:
            client.close()
    elif workers > 1:
        from joblib import delayed

        from braincam.cohort.workers import parallel as worker_pool

        # loky processes that die with this one; joblib caps BLAS threads per worker at
        # cpu_count // n_jobs.
        one = modality.worker_params(params, workers)
        parallel = worker_pool(workers, return_as="generator_unordered")
        jobs = parallel(
            delayed(process_subject)(modality, r, work, one, force=force) for r in records
        )
        outcomes = _collect(jobs, modality, len(records), progress=progress)
    else:
        outcomes = _collect(
            (process_subject(modality, r, work, params, force=force) for r in records),
            modality,
            len(records),
            progress=progress,
        )
    return sorted(outcomes, key=lambda o: o.participant_id)


def _collect(
    jobs: Iterable[SubjectOutcome], modality: Modality, total: int, *, progress: bool
) -> list[SubjectOutcome]:
    return list(track(jobs, modality.progress_label, total=total, disable=not progress))


def write_failures(work_dir: str | Path, failures: Sequence[Failure]) -> Path:
    """``WORK/failures.tsv`` (header only when there is none), atomically."""
    path = Path(work_dir) / "failures.tsv"
    df = pd.DataFrame([asdict(f) for f in failures], columns=list(FAILURE_COLUMNS))
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)
    return path
