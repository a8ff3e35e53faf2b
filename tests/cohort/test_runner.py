"""The batch runner: one path for every modality — cache, resume, failures, workers, order."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from braincam.cohort.ingest import Failure
from braincam.cohort.runner import process_subject, run_subjects, write_failures
from builders.modality import TOY, ToyParams, ToyRecord


def _records(tmp_path: Path, texts: dict[str, str]) -> list[ToyRecord]:
    out = []
    for pid, text in texts.items():
        path = tmp_path / "in" / f"{pid}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out.append(ToyRecord(pid, "a", path))
    return out


def test_computed_then_skipped_then_forced(tmp_path: Path) -> None:
    (record,) = _records(tmp_path, {"sub-01": "fine"})
    work = tmp_path / "work"
    first = process_subject(TOY, record, work, ToyParams())
    assert first.status == "computed" and first.details == {"cached": False}
    assert Path(first.images[0]).read_text() == "fine" and first.seconds >= 0
    again = process_subject(TOY, record, work, ToyParams())
    assert again.status == "skipped" and again.images == first.images
    assert process_subject(TOY, record, work, ToyParams(), force=True).status == "computed"
    # Other parameters → another cache key → recomputed.
    assert process_subject(TOY, record, work, ToyParams(gain=2)).status == "computed"


def test_failure_is_an_outcome_naming_step_and_file(tmp_path: Path) -> None:
    bad, gone = _records(tmp_path, {"sub-01": "bad", "sub-02": "x"})
    gone.image.unlink()
    out = process_subject(TOY, bad, tmp_path / "w", ToyParams())
    assert out.status == "failed" and out.step == "read" and "bad content" in out.error
    assert out.file == str(bad.image)  # the error names no file: the modality's primary input
    missing = process_subject(TOY, gone, tmp_path / "w", ToyParams())
    assert missing.status == "failed" and missing.step == "hash"
    assert missing.error.startswith("FileNotFoundError") and missing.file == str(gone.image)


def test_run_subjects_sorted_with_workers_and_worker_params(tmp_path: Path) -> None:
    records = _records(tmp_path, {f"sub-0{i}": f"s{i}" for i in (3, 1, 2)})
    serial = run_subjects(TOY, records, tmp_path / "a", ToyParams(), progress=False)
    assert [o.participant_id for o in serial] == ["sub-01", "sub-02", "sub-03"]
    parallel = run_subjects(TOY, records, tmp_path / "b", ToyParams(), workers=2, progress=False)
    assert [o.participant_id for o in parallel] == ["sub-01", "sub-02", "sub-03"]
    assert all(o.status == "computed" for o in parallel)
    side = (tmp_path / "b" / "sub-01.json").read_text()
    assert '"workers_seen": 2' in side  # each worker got Modality.worker_params(params, 2)
    assert run_subjects(TOY, [], tmp_path / "c", ToyParams()) == []


def test_write_failures_header_only_and_rows(tmp_path: Path) -> None:
    path = write_failures(tmp_path, [])
    assert path.read_text().strip() == "participant_id\tstep\tfile\terror"
    write_failures(tmp_path, [Failure("sub-01", "dti", "/x.nii.gz", "boom")])
    table = pd.read_csv(path, sep="\t")
    assert table.to_dict("records") == [
        {"participant_id": "sub-01", "step": "dti", "file": "/x.nii.gz", "error": "boom"}
    ]
