"""Ingest and header-level validation: BIDS (sessions, runs, labels, masks) and TSV manifests.

The helpers at the top write tiny DWI datasets; test_dmri.py and test_prepare.py import them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braincam.errors import InputError
from braincam.modalities.dwi.ingest import ingest_bids, ingest_manifest
from braincam.modalities.dwi.validate import read_gradients
from builders.dwi import (  # noqa: F401
    AFFINE,
    EVALS,
    LABELS,
    SHAPE,
    brain_ball,
    dwi_data,
    failure_of,
    gradient_scheme,
    make_bids,
    write_dwi,
    write_mask,
)

# ------------------------------------------------------------------------------------------
# BIDS
# ------------------------------------------------------------------------------------------


def test_bids_ingest_finds_subjects_with_labels_and_masks(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS, with_masks=True)
    result = ingest_bids(root, label="group")
    assert result.failures == []
    assert [s.participant_id for s in result.subjects] == sorted(LABELS)
    assert {s.participant_id: s.label for s in result.subjects} == LABELS
    assert result.classes == ["old", "young"]
    sub = result.subjects[0]
    assert sub.dwi == root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    assert sub.bval.name == "sub-01_dwi.bval" and sub.bvec.name == "sub-01_dwi.bvec"
    assert sub.shape == (*SHAPE, 14)
    expected_mask = root / "derivatives/groundtruth/sub-01/dwi/sub-01_desc-effect_mask.nii.gz"
    assert sub.mask == expected_mask


def test_label_column_is_chosen_by_user(tmp_path: Path) -> None:
    sex = {"sub-01": "F", "sub-02": "F", "sub-03": "M", "sub-04": "M"}
    root = make_bids(tmp_path / "bids", LABELS, extra_columns={"sex": sex})
    result = ingest_bids(root, label="sex")
    assert {s.participant_id: s.label for s in result.subjects} == sex
    with pytest.raises(InputError, match="label column 'diagnosis' not found") as info:
        ingest_bids(root, label="diagnosis")
    assert "participants.tsv" in str(info.value) and "sex" in str(info.value)


def test_participant_label_selects_subjects(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS)
    result = ingest_bids(root, label="group", participant_labels=["02", "sub-03"])
    assert [s.participant_id for s in result.subjects] == ["sub-02", "sub-03"]
    assert result.failures == []
    unknown = ingest_bids(root, label="group", participant_labels=["01", "99"])
    assert [s.participant_id for s in unknown.subjects] == ["sub-01"]
    assert "sub-99" in failure_of(unknown, "sub-99").error


def test_sessions_and_runs_first_by_default_or_chosen(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS, sessions=("02", "01"), runs=("2", "1"))
    first = ingest_bids(root, label="group")
    assert first.failures == []
    for s in first.subjects:
        assert (s.session, s.run) == ("01", "1")
        assert s.dwi.name == f"{s.participant_id}_ses-01_run-1_dwi.nii.gz"
    chosen = ingest_bids(root, label="group", session="ses-02", run="2")
    for s in chosen.subjects:
        assert s.dwi.name == f"{s.participant_id}_ses-02_run-2_dwi.nii.gz"
    missing = ingest_bids(root, label="group", session="07")
    assert missing.subjects == []
    assert "requested session/run" in failure_of(missing, "sub-01").error


def test_masks_from_another_folder_and_disabled(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS)
    other = tmp_path / "masks"
    write_mask(other / "sub-02" / "dwi" / "sub-02_desc-lesion_mask.nii.gz")
    result = ingest_bids(root, label="group", masks_dir=other, mask_desc="lesion")
    masks = {s.participant_id: s.mask for s in result.subjects}
    assert masks["sub-02"] == other / "sub-02" / "dwi" / "sub-02_desc-lesion_mask.nii.gz"
    assert masks["sub-01"] is None
    with_gt = make_bids(tmp_path / "bids2", LABELS, with_masks=True)
    assert all(s.mask is None for s in ingest_bids(with_gt, label="group", mask_desc=None).subjects)


def test_mask_on_another_grid_fails_the_subject(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS, with_masks=True)
    bad = root / "derivatives/groundtruth/sub-03/dwi/sub-03_desc-effect_mask.nii.gz"
    write_mask(bad, shape=(5, 5, 5))
    result = ingest_bids(root, label="group")
    f = failure_of(result, "sub-03")
    assert "voxel grid" in f.error and f.file == str(bad) and "(5, 5, 5)" in f.error
    assert "sub-03" not in [s.participant_id for s in result.subjects]


# ------------------------------------------------------------------------------------------
# Labels: missing, duplicate, without data, data without label
# ------------------------------------------------------------------------------------------


def _rewrite_participants(root: Path, rows: list[tuple[str, str]]) -> Path:
    path = root / "participants.tsv"
    pd.DataFrame(rows, columns=["participant_id", "group"]).to_csv(path, sep="\t", index=False)
    return path


def test_missing_label_fails_only_that_subject(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS)
    tsv = _rewrite_participants(
        root, [("sub-01", "young"), ("sub-02", "n/a"), ("sub-03", "young"), ("sub-04", "old")]
    )
    result = ingest_bids(root, label="group")
    f = failure_of(result, "sub-02")
    assert "missing label" in f.error and "subject=sub-02" in f.error and "n/a" in f.error
    assert f.file == str(tsv)
    assert [s.participant_id for s in result.subjects] == ["sub-01", "sub-03", "sub-04"]


def test_duplicate_subject_is_a_failure(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS)
    tsv = _rewrite_participants(
        root,
        [
            ("sub-01", "young"),
            ("sub-02", "old"),
            ("02", "young"),
            ("sub-03", "young"),
            ("sub-04", "old"),
        ],
    )
    result = ingest_bids(root, label="group")
    f = failure_of(result, "sub-02")
    assert "duplicate subject" in f.error and f.file == str(tsv) and "value=2" in f.error
    assert "sub-02" not in [s.participant_id for s in result.subjects]
    assert len(result.subjects) == 3


def test_label_without_data_and_data_without_label(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS)
    _rewrite_participants(
        root, [("sub-01", "young"), ("sub-02", "old"), ("sub-03", "young"), ("sub-09", "old")]
    )
    result = ingest_bids(root, label="group")
    ghost = failure_of(result, "sub-09")
    assert "without DWI data" in ghost.error and "participants.tsv" in ghost.file
    assert "value='old'" in ghost.error
    orphan = failure_of(result, "sub-04")
    assert "without a label" in orphan.error and orphan.file.endswith("sub-04_dwi.nii.gz")
    assert [s.participant_id for s in result.subjects] == ["sub-01", "sub-02", "sub-03"]


def test_no_participants_table_is_fatal(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS)
    (root / "participants.tsv").unlink()
    with pytest.raises(InputError, match="participants table not found"):
        ingest_bids(root, label="group")


# ------------------------------------------------------------------------------------------
# Header-level file checks through ingest (each names subject, file and value)
# ------------------------------------------------------------------------------------------


def _ingest_with_broken(tmp_path: Path, breaker) -> tuple[object, Path]:
    root = make_bids(tmp_path / "bids", LABELS)
    folder = root / "sub-03" / "dwi"
    broken = breaker(folder)
    return ingest_bids(root, label="group"), broken


def _check(result, broken: Path, *needles: str) -> None:
    f = failure_of(result, "sub-03")
    assert f.file == str(broken)
    assert "subject=sub-03" in f.error and f"file={broken}" in f.error
    for needle in needles:
        assert needle in f.error, f.error
    assert [s.participant_id for s in result.subjects] == ["sub-01", "sub-02", "sub-04"]


def test_unreadable_nifti(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.nii.gz"
        p.write_bytes(b"this is not a nifti file at all")
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "unreadable NIfTI", "value=")


def test_non_4d_dwi(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.nii.gz"
        nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE), p)
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "must be a 4D", f"value={SHAPE!r}")


def test_bval_missing(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.bval"
        p.unlink()
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "bval file missing")


def test_bvec_missing(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.bvec"
        p.unlink()
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "bvec file missing")


def test_bval_count_differs_from_volumes(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.bval"
        bvals, _ = gradient_scheme()
        np.savetxt(p, bvals[None, :-3], fmt="%g")
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "bval count", "14 volumes", "value=11")


def test_bvec_count_differs_from_volumes(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.bvec"
        _, bvecs = gradient_scheme()
        np.savetxt(p, bvecs[:-1].T, fmt="%.8f")
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "bvec table must be 3 × 14", "(3, 13)")


def test_no_b0_volume(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.bval"
        bvals, _ = gradient_scheme()
        np.savetxt(p, np.where(bvals == 0, 300.0, bvals)[None], fmt="%g")
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "no b=0 volume", "value=300.0")


def test_bvecs_not_unit_length(tmp_path: Path) -> None:
    def breaker(folder: Path) -> Path:
        p = folder / "sub-03_dwi.bvec"
        _, bvecs = gradient_scheme()
        bvecs[5] *= 1.5
        np.savetxt(p, bvecs.T, fmt="%.8f")
        return p

    _check(*_ingest_with_broken(tmp_path, breaker), "volume 5", "not unit length", "value=1.5")


def test_b0_threshold_and_tolerance_are_parameters(tmp_path: Path) -> None:
    paths = write_dwi(tmp_path, "sub-01_dwi")
    bvals, bvecs = gradient_scheme()
    bvals[:2] = 40.0
    bvecs[4] *= 1.05
    np.savetxt(paths["bval"], bvals[None], fmt="%g")
    np.savetxt(paths["bvec"], bvecs.T, fmt="%.8f")
    grads = read_gradients(
        paths["bval"], paths["bvec"], 14, subject="sub-01", b0_threshold=50, bvec_tolerance=0.1
    )
    assert grads.b0_mask(50).sum() == 2 and grads.bvecs.shape == (14, 3)
    with pytest.raises(InputError, match="no b=0"):
        read_gradients(paths["bval"], paths["bvec"], 14, subject="sub-01", b0_threshold=10)
    with pytest.raises(InputError, match="not unit length"):
        read_gradients(paths["bval"], paths["bvec"], 14, subject="sub-01", bvec_tolerance=0.01)


# ------------------------------------------------------------------------------------------
# Manifest
# ------------------------------------------------------------------------------------------


def test_manifest_ingest_resolves_relative_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rows = []
    for i, (pid, label) in enumerate(sorted(LABELS.items())):
        write_dwi(data / pid, "scan", seed=i)
        rows.append(
            {
                "participant_id": pid.removeprefix("sub-"),
                "diagnosis": label,
                "dwi": f"{pid}/scan.nii.gz",
                "bval": f"{pid}/scan.bval",
                "bvec": f"{pid}/scan.bvec",
                "mask": "",
            }
        )
    rows[1]["mask"] = str(write_mask(tmp_path / "m.nii.gz"))
    manifest = tmp_path / "manifest.tsv"
    pd.DataFrame(rows).to_csv(manifest, sep="\t", index=False)
    result = ingest_manifest(manifest, label="diagnosis", base_dir=data)
    assert result.failures == []
    assert [s.participant_id for s in result.subjects] == sorted(LABELS)
    assert {s.participant_id: s.label for s in result.subjects} == LABELS
    assert result.subjects[0].dwi == data / "sub-01" / "scan.nii.gz"
    assert result.subjects[1].mask == tmp_path / "m.nii.gz" and result.subjects[0].mask is None
    subset = ingest_manifest(manifest, label="diagnosis", base_dir=data, participant_labels=["04"])
    assert [s.participant_id for s in subset.subjects] == ["sub-04"]


def test_manifest_bad_rows_are_failures(tmp_path: Path) -> None:
    rows = []
    for i, (pid, label) in enumerate(sorted(LABELS.items())):
        paths = write_dwi(tmp_path / pid, "scan", seed=i)
        rows.append(
            {"participant_id": pid, "label": label, **{k: str(v) for k, v in paths.items()}}
        )
    rows[2]["bval"] = str(tmp_path / "nowhere.bval")
    rows.append(dict(rows[0]))  # duplicate sub-01
    manifest = tmp_path / "manifest.tsv"
    pd.DataFrame(rows).to_csv(manifest, sep="\t", index=False)
    result = ingest_manifest(manifest, label="label")
    assert [s.participant_id for s in result.subjects] == ["sub-02", "sub-04"]
    assert "duplicate subject" in failure_of(result, "sub-01").error
    f = failure_of(result, "sub-03")
    assert "bval file missing" in f.error and f.file == str(tmp_path / "nowhere.bval")
    with pytest.raises(InputError, match="lacks required columns") as info:
        pd.DataFrame(rows).drop(columns="bvec").to_csv(manifest, sep="\t", index=False)
        ingest_manifest(manifest, label="label")
    assert "bvec" in str(info.value)
