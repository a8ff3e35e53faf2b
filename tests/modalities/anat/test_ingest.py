"""Finding T1w/T2w/FLAIR per subject: missing contrasts, bad headers."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braincam.errors import InputError
from braincam.modalities.anat.ingest import ingest_anat
from braincam.modalities.anat.preprocess import preprocess_anat
from braincam.synth import anat as sa


def test_missing_contrast_names_subject_and_file(bids: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    flair = sa.anat_paths(copy, "sub-02")["FLAIR"]
    flair.unlink()
    with pytest.raises(InputError, match="FLAIR") as info:
        ingest_anat(copy, label="group")
    assert info.value.subject == "sub-02" and info.value.path == str(flair)
    skipped = ingest_anat(copy, label="group", missing="skip")
    assert [r.participant_id for r in skipped.subjects] == ["sub-01", "sub-03"]
    assert [(f.participant_id, f.file) for f in skipped.failures] == [("sub-02", str(flair))]
    raw = sa.anat_paths(copy, "sub-02")
    with pytest.raises(InputError, match="missing FLAIR") as info:
        preprocess_anat(raw["T1w"], raw["T2w"], flair, tmp_path / "work")
    assert "subject=sub-02" in str(info.value) and str(flair) in str(info.value)


def test_ingest_lists_bad_headers_and_keeps_the_others(bids: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    t2 = sa.anat_paths(copy, "sub-01")["T2w"]
    img = nib.load(t2)
    nib.save(nib.Nifti1Image(np.zeros((*img.shape, 2), np.int16), img.affine), t2)  # 4D
    mask = sa.anat_groundtruth_paths(copy, "sub-03")["lesion_mask"]
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), mask)  # wrong grid
    result = ingest_anat(copy, label="group")
    assert [r.participant_id for r in result.subjects] == ["sub-02"]
    found = {f.participant_id: f for f in result.failures}
    assert found["sub-01"].file == str(t2) and "3D" in found["sub-01"].error
    assert found["sub-03"].file == str(mask) and "grid" in found["sub-03"].error


def test_anat_needs_dataset_description_unless_allowed(bids: Path, tmp_path: Path) -> None:
    from braincam.config import PrepareConfig
    from braincam.modalities import get_modality

    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    (copy / "dataset_description.json").unlink()
    anat = get_modality("anat")
    with pytest.raises(InputError, match=r"dataset_description\.json is missing"):
        anat.ingest(copy, PrepareConfig(modality="anat"))
    config = PrepareConfig(modality="anat", allow_missing_description=True)
    with pytest.warns(UserWarning, match=r"dataset_description\.json is missing"):
        result = anat.ingest(copy, config)
    assert [r.participant_id for r in result.subjects] == ["sub-01", "sub-02", "sub-03"]


def test_anat_subject_folder_must_be_a_bids_label(bids: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    (copy / "sub-01").rename(copy / "sub-0_1")
    with pytest.raises(InputError, match="not a BIDS label") as info:
        ingest_anat(copy, label="group")
    assert info.value.path == str(copy / "sub-0_1")
