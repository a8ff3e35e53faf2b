"""The structural Modality through the common runner: outputs, errors, cache, channels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braincam.modalities.anat.ingest import ingest_anat
from braincam.modalities.anat.modality import registration_summary
from braincam.modalities.anat.preprocess import AnatParams, anat_derivative_paths
from braincam.pipeline.prepare import slice_sources
from builders.anat import process_anat_subject


def test_preprocess_subject_outputs_errors_cache_and_slices(bids: Path, tmp_path: Path) -> None:
    from braincam.data.slicing import SliceSpec, extract_slices

    ingested = ingest_anat(bids, label="group")
    record = ingested.subjects[0]
    assert set(record.true_xfm) == {"T2w", "FLAIR"} and record.mask is not None
    params = AnatParams(equalize="global")
    work = tmp_path / "work"
    outcome = process_anat_subject(record, work, params)
    assert outcome.status == "computed", outcome.error
    paths = anat_derivative_paths(work, record.participant_id)
    assert all(p.is_file() for p in paths.all())
    imgs = [nib.load(p) for p in outcome.images]
    assert [Path(p).name.split("_desc-")[1] for p in outcome.images] == [
        "preproc_T1w.nii.gz",
        "preproc_T2w.nii.gz",
        "preproc_FLAIR.nii.gz",
    ]
    assert all(i.shape == imgs[0].shape and np.allclose(i.affine, imgs[0].affine) for i in imgs)
    brain = np.asarray(nib.load(paths.mask).dataobj) > 0
    for img in imgs:
        data = np.asarray(img.dataobj)
        assert data.min() >= 0 and data.max() <= 1 and np.all(data[~brain] == 0)
    # Trimmed along the axial axis by the recorded rule; world positions kept.
    kept = outcome.details.kept_slices
    raw_t1 = nib.load(record.t1)
    assert kept["kept"] == imgs[0].shape[2] < raw_t1.shape[2] == kept["total"]
    assert np.allclose(imgs[0].affine @ [0, 0, 0, 1], raw_t1.affine @ [0, 0, kept["first"], 1])
    # Registration against the recorded truth: well under 1° and 1 mm at 4 mm voxels.
    for moving in ("T2w", "FLAIR"):
        assert outcome.details.errors[moving]["rotation_deg"] < 1.0
        assert outcome.details.errors[moving]["translation_mm"] < 1.0
        side = json.loads(paths.xfm_json[moving].read_text())
        assert np.allclose(side["MatrixRAS"], outcome.details.transforms[moving])
    sidecar = json.loads(paths.sidecars["T2w"].read_text())
    assert sidecar["Parameters"]["equalize"] == "global" and sidecar["Transform"]
    summary = registration_summary([outcome])
    assert summary["median_error"]["T2w"]["subjects"] == 1

    # Cached: a second run skips and reports the same errors; other params recompute.
    # (threads are not part of the key: workers > 1 run one SimpleITK thread each).
    again = process_anat_subject(record, work, params.replace(threads=1))
    assert again.status == "skipped"
    for moving, err in outcome.details.errors.items():
        assert again.details.errors[moving] == pytest.approx(err)
    assert process_anat_subject(record, work, params.replace(trim_axis=None)).status == ("computed")

    # The three volumes are the slice store's three channels, with the lesion mask.
    pid = record.participant_id
    source = slice_sources({pid: record}, {pid: outcome}, [pid])[0]
    assert len(source.images) == 3 and source.mask == record.mask
    spec = SliceSpec(axes=("axial",), per_axis=4, size=32)
    slices = extract_slices([nib.load(p) for p in source.images], spec, nib.load(source.mask))
    assert slices.images.shape == (4, 3, 32, 32)
    assert not np.allclose(slices.images[:, 0], slices.images[:, 1])


def test_failed_subject_is_an_outcome_not_an_exception(bids: Path, tmp_path: Path) -> None:
    record = ingest_anat(bids, label="group").subjects[0]
    broken = replace(record, flair=tmp_path / "gone_FLAIR.nii.gz")
    outcome = process_anat_subject(broken, tmp_path / "work", AnatParams())
    assert outcome.status == "failed"
    assert outcome.file == str(tmp_path / "gone_FLAIR.nii.gz") and "FLAIR" in outcome.error
