"""Real heads, synthetically: the skull/scalp layer of `synth --kind anat`, and structural
`prepare`'s brain mask — extraction removes the head, "keep" shows it to the network."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from braincam.config.prepare import AnatParams
from braincam.config.synth import AnatSynthConfig, GroupEffect, HeadConfig
from braincam.imaging.groundtruth import anat_groundtruth_paths
from braincam.imaging.masks import dice
from braincam.modalities.anat.preprocess import preprocess_anat
from braincam.synth.anat import SCALE, synthesize_anat

VOXEL = 3.0
HEAD = HeadConfig(enabled=True, gap_mm=2.0, skull_mm=5.0, scalp_mm=5.0, shortcut_mm=6.0)


@pytest.fixture(scope="module")
def head_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = AnatSynthConfig(
        subjects=3,
        seed=3,
        voxel_size=VOXEL,
        effects=(GroupEffect(), GroupEffect(), GroupEffect()),  # the scalp is the only difference
        misregistration_deg=0.0,
        misregistration_mm=0.0,
        head=HEAD,
    )
    return synthesize_anat(tmp_path_factory.mktemp("head") / "bids", cfg, progress=False)


def _subject(bids: Path, pid: str) -> tuple[dict[str, Path], np.ndarray, dict]:
    gt = anat_groundtruth_paths(bids, pid)
    brain = np.asarray(nib.load(gt["dseg"]).dataobj) > 0
    info = json.loads(gt["lesion_json"].read_text())
    images = {c: bids / pid / "anat" / f"{pid}_{c}.nii.gz" for c in ("T1w", "T2w", "FLAIR")}
    return images, brain, info


def _outer_edge_mm(t1: np.ndarray, brain: np.ndarray) -> float:
    """How far bright (scalp) voxels reach beyond the brain, in mm (99th percentile)."""
    distance = ndi.distance_transform_edt(~brain) * VOXEL
    bright = (t1 > 0.6 * SCALE) & (distance > 0)
    return float(np.percentile(distance[bright], 99))


def test_head_config_extent_and_validation() -> None:
    assert HeadConfig().extent_mm() == 0.0  # off by default: synthetic brains have no head
    assert HEAD.extent_mm() == pytest.approx(2 + 5 + 5 + 2 * 6)
    assert HEAD.scalp_of(0) == 5.0 and HEAD.scalp_of(2) == 17.0
    with pytest.raises(ValueError, match="shortcut_mm"):
        HeadConfig(shortcut_mm=-1.0)


def test_synthetic_head_has_dark_bone_and_a_scalp_whose_thickness_is_the_shortcut(
    head_cohort: Path,
) -> None:
    edges = {}
    for pid in ("sub-01", "sub-02", "sub-03"):
        images, brain, info = _subject(head_cohort, pid)
        t1 = np.asarray(nib.load(images["T1w"]).dataobj, dtype=np.float32)
        distance = ndi.distance_transform_edt(~brain) * VOXEL
        bone = (distance >= 3.5) & (distance <= 5.5)  # inside [gap, gap + skull] = [2, 7] mm
        assert np.median(t1[bone]) < 0.2 * SCALE  # cortical bone is dark on T1w
        role = ["control", "rrms", "spms"].index(info["group"])
        assert info["ScalpMM"] == pytest.approx(5.0 + 6.0 * role)
        edges[role] = _outer_edge_mm(t1, brain)
    # the scalp's outer edge moves out by the shortcut per group (to within a voxel)
    assert edges[1] - edges[0] == pytest.approx(6.0, abs=VOXEL)
    assert edges[2] - edges[1] == pytest.approx(6.0, abs=VOXEL)


def test_extraction_removes_the_head_and_keep_shows_it(head_cohort: Path, tmp_path: Path) -> None:
    images, brain, _ = _subject(head_cohort, "sub-01")
    args = (images["T1w"], images["T2w"], images["FLAIR"])
    fast = {"n4": False, "register": False, "trim_axis": None}
    zero = preprocess_anat(*args, tmp_path / "zero", AnatParams(**fast), participant_id="sub-01")
    keep = preprocess_anat(
        *args,
        tmp_path / "keep",
        AnatParams(**fast, outside_brain="keep"),
        participant_id="sub-01",
    )
    mask = np.asarray(nib.load(zero.paths.mask).dataobj) > 0
    assert dice(mask, brain) > 0.9
    distance = ndi.distance_transform_edt(~brain) * VOXEL
    scalp = (distance > 8.0) & (distance < 11.0)  # inside sub-01's scalp band (7–12 mm)
    assert mask[scalp].mean() < 0.02  # the brain mask leaves the scalp out
    t1_zero = np.asarray(nib.load(zero.paths.images["T1w"]).dataobj)
    t1_keep = np.asarray(nib.load(keep.paths.images["T1w"]).dataobj)
    assert (t1_zero[~mask] == 0).all() and t1_zero[mask].max() > 0
    assert np.median(t1_keep[scalp]) > 0.3  # "keep": the network sees the (bright) scalp
    # both record how the mask was made; the brain mask is the same file either way
    assert zero.brain["method"].startswith("mni152-affine") and zero.brain["quality"] > 0.5
    assert zero.brain["head_volume_ml"] > zero.brain["volume_ml"]
    assert np.array_equal(mask, np.asarray(nib.load(keep.paths.mask).dataobj) > 0)
    side = json.loads(zero.paths.sidecars["T1w"].read_text())
    assert side["BrainMaskMethod"]["method"] == zero.brain["method"]
    assert side["Parameters"]["brain_mask"] == "extract"


def test_foreground_mask_is_the_otsu_head_option(head_cohort: Path, tmp_path: Path) -> None:
    images, brain, _ = _subject(head_cohort, "sub-02")
    out = preprocess_anat(
        images["T1w"],
        images["T2w"],
        images["FLAIR"],
        tmp_path,
        AnatParams(n4=False, register=False, trim_axis=None, brain_mask="foreground"),
        participant_id="sub-02",
    )
    assert out.brain["method"] == "otsu-foreground"
    assert "quality" not in out.brain
    # the Otsu "brain" mask of a head is a head mask: it takes in the scalp (as on the real
    # head of BENCHMARKS.md, "Brain extraction": Dice 0.69) — why extraction is the default
    mask = np.asarray(nib.load(out.paths.mask).dataobj) > 0
    distance = ndi.distance_transform_edt(~brain) * VOXEL
    scalp = (distance > 8.0) & (distance < 16.0)  # inside sub-02's scalp band (7–18 mm)
    assert mask[scalp].mean() > 0.5
    assert dice(mask, brain) < 0.85
