"""Structural synthetic cohort: determinism, BIDS layout, lesions, true transforms, groups."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from braincam.errors import ConfigError, InputError
from braincam.imaging.resample import resample_to
from braincam.synth import anat as sa
from braincam.synth.anatomy import Template, load_template

# 4 mm voxels and 3 subjects (one per group) keep the whole file fast.
TINY = sa.AnatSynthConfig(subjects=3, seed=5, voxel_size=4.0)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(TINY.voxel_size)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, template: Template) -> Path:
    out = tmp_path_factory.mktemp("anat") / "bids"
    return sa.synthesize_anat(out, TINY, progress=False, template=template)


@pytest.fixture(scope="module")
def tiny_cohort(template: Template) -> sa._AnatCohort:
    return sa._prepare_cohort(TINY, template)


def test_bids_layout_and_participants(cohort: Path) -> None:
    table = pd.read_csv(cohort / "participants.tsv", sep="\t", dtype=str)
    assert list(table.columns) == ["participant_id", "age", "group"]
    assert sorted(table["group"]) == ["control", "rrms", "spms"]
    desc = json.loads((cohort / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and "braincam synth" in json.dumps(desc["GeneratedBy"])
    for pid in table["participant_id"]:
        raw = sa.anat_paths(cohort, pid)
        assert [p.name for p in raw.values()] == [
            f"{pid}_T1w.nii.gz",
            f"{pid}_T2w.nii.gz",
            f"{pid}_FLAIR.nii.gz",
        ]
        imgs = [nib.load(p) for p in raw.values()]
        # One grid for all three contrasts; the misregistration is in the content, not the header.
        assert all(i.shape == imgs[0].shape and np.allclose(i.affine, imgs[0].affine) for i in imgs)
        assert all(i.get_data_dtype() == np.int16 for i in imgs)
        for path in raw.values():
            assert path.with_name(path.name.replace(".nii.gz", ".json")).is_file()
        gt = sa.anat_groundtruth_paths(cohort, pid)
        assert all(p.is_file() for p in gt.values()), [p for p in gt.values() if not p.is_file()]
        mask = nib.load(gt["lesion_mask"])
        assert mask.shape == imgs[0].shape and np.allclose(mask.affine, imgs[0].affine)
        assert mask.get_data_dtype() == np.uint8
    gt_desc = json.loads((cohort / "derivatives/groundtruth/dataset_description.json").read_text())
    assert gt_desc["DatasetType"] == "derivative"


def test_same_seed_same_bytes_other_seed_differs(
    cohort: Path, tmp_path: Path, tiny_cohort: sa._AnatCohort, template: Template
) -> None:
    again = sa.synthesize_anat(
        tmp_path / "again", TINY, progress=False, workers=2, template=template
    )
    assert _hashes(again) == _hashes(cohort)
    other = TINY.replace(seed=6)
    person = sa.draw_anat_participants(other)[0]
    t1 = np.asarray(nib.load(sa.anat_paths(cohort, person.participant_id)["T1w"]).dataobj)
    assert not np.array_equal(sa.simulate_subject(tiny_cohort, other, person).images["T1w"], t1)


def test_groups_differ_as_documented(cohort: Path) -> None:
    table = pd.read_csv(cohort / "participants.tsv", sep="\t", dtype=str)
    stats = {}
    for pid, group in zip(table["participant_id"], table["group"], strict=True):
        gt = sa.anat_groundtruth_paths(cohort, pid)
        info = json.loads(gt["lesion_json"].read_text())
        voxels = int(np.asarray(nib.load(gt["lesion_mask"]).dataobj).sum())
        stats[group] = (info["LesionCount"], voxels, info)
    assert stats["control"][:2] == (0, 0)
    assert stats["rrms"][1] > 0 and stats["spms"][1] > 0
    assert stats["spms"][2]["VentricleEnlargement"] > stats["rrms"][2]["VentricleEnlargement"]
    levels = json.loads((cohort / "participants.json").read_text())["group"]["Levels"]
    assert set(levels) == {"control", "rrms", "spms"} and "periventricular" in levels["spms"]


def test_lesions_where_the_mask_says(cohort: Path) -> None:
    """T1w (not moved) is darker in the lesions than in normal WM of the same subject."""
    table = pd.read_csv(cohort / "participants.tsv", sep="\t", dtype=str)
    pid = table.loc[table["group"] == "spms", "participant_id"].item()
    gt = sa.anat_groundtruth_paths(cohort, pid)
    lesion = np.asarray(nib.load(gt["lesion_mask"]).dataobj) > 0
    wm = ndi.binary_erosion(np.asarray(nib.load(gt["dseg"]).dataobj) == 3)
    t1 = np.asarray(nib.load(sa.anat_paths(cohort, pid)["T1w"]).dataobj, dtype=float)
    assert lesion.sum() > 0 and wm.sum() > 0
    assert t1[lesion].mean() < 0.8 * t1[wm].mean()


def test_lesion_contrast_in_all_three_images(tiny_cohort: sa._AnatCohort) -> None:
    """Without misregistration, noise or bias: T2w/FLAIR brighter, T1w darker in the mask."""
    config = TINY.replace(misregistration_deg=0.0, misregistration_mm=0.0, snr=np.inf,
                          bias_strength=0.0)  # fmt: skip
    person = next(p for p in sa.draw_anat_participants(config) if p.group == "spms")
    subj = sa.simulate_subject(tiny_cohort, config, person)
    lesion = subj.lesion_mask > 0
    wm = ndi.binary_erosion(subj.dseg == 3)
    assert lesion.sum() >= 5
    means = {c: (subj.images[c][lesion].mean(), subj.images[c][wm].mean()) for c in sa.SUFFIXES}
    assert means["T1w"][0] < means["T1w"][1]
    assert means["T2w"][0] > means["T2w"][1]
    assert means["FLAIR"][0] > means["FLAIR"][1]
    # Mostly periventricular: the recorded flags match the group's setting in direction.
    flags = [les.periventricular for les in subj.lesions]
    assert sum(flags) >= len(flags) / 2


def test_true_transform_convention(tiny_cohort: sa._AnatCohort) -> None:
    """Resampling the moved T2w through the recorded transform gives back the unmoved T2w."""
    clean = TINY.replace(snr=np.inf, bias_strength=0.0)
    person = sa.draw_anat_participants(clean)[1]
    moved = sa.simulate_subject(tiny_cohort, clean, person)
    still = sa.simulate_subject(
        tiny_cohort, clean.replace(misregistration_deg=0.0, misregistration_mm=0.0), person
    )
    xfm = moved.true_xfm["T2w"]
    assert not np.allclose(xfm, np.eye(4))
    shape = moved.images["T2w"].shape
    back = resample_to(moved.images["T2w"], moved.affine, shape, moved.affine, xfm)
    naive = moved.images["T2w"].astype(float)
    ref = still.images["T2w"].astype(float)
    inner = ndi.binary_erosion(still.dseg > 0, iterations=2)
    err_back = np.abs(back - ref)[inner].mean()
    err_naive = np.abs(naive - ref)[inner].mean()
    assert err_back < 0.5 * err_naive


def test_enlarge_ventricles_scales_near_the_centre() -> None:
    centre = np.array([0.0, -15.0, 12.0])
    sigma = np.array([20.0, 30.0, 12.0])
    p = centre + np.array([[1.0, 0, 0], [0, 0.5, 0]])
    out = sa.enlarge_ventricles(p, centre, sigma, 0.25)
    # The template is sampled 1/(1 + e) as far from the centre: structures look 25 % wider.
    ratio = np.linalg.norm(out - centre, axis=1) / np.linalg.norm(p - centre, axis=1)
    assert np.allclose(ratio, 1 / 1.25, atol=2e-3)
    assert np.array_equal(sa.enlarge_ventricles(p, centre, sigma, 0.0), p)


def test_bias_field_is_smooth_and_bounded() -> None:
    field = sa.bias_field(np.random.default_rng(0), (20, 24, 22), 0.25)
    assert field.min() >= 1 / 1.25 - 1e-6 and field.max() <= 1.25 + 1e-6
    assert field.max() / field.min() > 1.2
    assert np.abs(np.diff(np.log(field), axis=0)).max() < 0.1
    assert np.all(sa.bias_field(np.random.default_rng(0), (4, 4, 4), 0.0) == 1)


def test_configurable_group_names_and_validation() -> None:
    config = TINY.replace(subjects=6, groups=("hc", "rr", "sp"))
    config.validate()
    people = sa.draw_anat_participants(config)
    assert sorted(p.group for p in people) == ["hc", "hc", "rr", "rr", "sp", "sp"]
    assert all(p.group == config.groups[p.role] for p in people)
    with pytest.raises(ConfigError, match="groups"):
        TINY.replace(groups=("a", "a", "b")).validate()
    with pytest.raises(ConfigError, match="bias_strength"):
        TINY.replace(bias_strength=1.5).validate()
    bad = (sa.GroupEffect(), sa.GroupEffect(radius_mm=(5.0, 2.0)), sa.GroupEffect())
    with pytest.raises(ConfigError, match=r"effects\[rrms\]\.radius_mm"):
        TINY.replace(effects=bad).validate()


def test_refuses_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        sa.synthesize_anat(tmp_path, TINY, progress=False)


def test_effect_masks_are_the_changes_planted(tiny_cohort: sa._AnatCohort) -> None:
    """The atrophy and ventricle masks against the tissue simulated with and without each
    effect (same subject, same lesions): the atrophy mask is where the GM loss is at least half
    the planted fraction; the ventricle mask is tissue that became ventricle."""
    from braincam.synth.anatomy import grid_coordinates, sample_volume

    config = TINY.replace(snr=np.inf, bias_strength=0.0)
    person = next(p for p in sa.draw_anat_participants(config) if p.group == "spms")
    effect = config.effects[person.role]
    assert effect.atrophy > 0 and effect.ventricle_enlargement > 0
    subj = sa.simulate_subject(tiny_cohort, config, person)
    transform = subj.params["_transform"]
    grid = grid_coordinates(subj.lesion_mask.shape, subj.affine)

    def tissue(**changes: float) -> dict[str, np.ndarray]:
        fractions, _ = sa._tissue_at(
            tiny_cohort, grid, transform, effect.replace(**changes), subj.lesions
        )
        return fractions

    planted, no_atrophy = tissue(), tissue(atrophy=0.0)
    loss = no_atrophy["gm"] - planted["gm"]
    np.testing.assert_array_equal(subj.atrophy_mask > 0, loss >= 0.5 * effect.atrophy - 1e-7)
    assert 0 < subj.atrophy_mask.sum() < (no_atrophy["gm"] > 0).sum()
    # the ventricle gain: voxels that hold the warped template's ventricles but not the
    # unwarped ones; there the CSF fraction rose (on average by 0.16 at 4 mm, where partial
    # volume blurs the ventricles' edge; a few edge voxels held CSF already)
    gain = subj.ventricle_mask > 0
    assert gain.sum() > 0
    unwarped = tissue(ventricle_enlargement=0.0)
    rise = planted["csf"][gain] - unwarped["csf"][gain]
    assert rise.mean() > 0.1 and (rise > 0).mean() > 0.8
    assert not (gain & (subj.lesion_mask > 0)).any()
    mni = transform.to_mni(grid)
    vent = sample_volume(tiny_cohort.ventricles, tiny_cohort.template.affine, mni) >= 0.5
    assert not (gain & vent).any()  # were not ventricle before the enlargement
    masks = sa.planted_change_masks(tiny_cohort, mni, effect)
    np.testing.assert_array_equal(masks["ventricles"], subj.ventricle_mask)
    # more enlargement, more gain; none without the effects
    more = sa.planted_change_masks(tiny_cohort, mni, effect.replace(ventricle_enlargement=0.7))
    assert more["ventricles"].sum() > gain.sum()
    none = sa.planted_change_masks(
        tiny_cohort, mni, effect.replace(atrophy=0.0, ventricle_enlargement=0.0)
    )
    assert none["atrophy"].sum() == 0 and none["ventricles"].sum() == 0


def test_effect_masks_are_written_per_group(cohort: Path) -> None:
    table = pd.read_csv(cohort / "participants.tsv", sep="\t", dtype=str)
    sizes = {}
    for pid, group in zip(table["participant_id"], table["group"], strict=True):
        gt = sa.anat_groundtruth_paths(cohort, pid)
        atrophy = np.asarray(nib.load(gt["atrophy_mask"]).dataobj)
        gain = np.asarray(nib.load(gt["ventricle_mask"]).dataobj)
        assert atrophy.dtype == gain.dtype == np.uint8
        assert gt["atrophy_mask"].name == f"{pid}_desc-atrophy_mask.nii.gz"
        assert gt["ventricle_mask"].name == f"{pid}_desc-ventricles_mask.nii.gz"
        info = json.loads(gt["lesion_json"].read_text())
        voxel_ml = TINY.voxel_size**3 / 1000
        assert info["VentricleGainML"] == pytest.approx(gain.sum() * voxel_ml, abs=1e-4)
        sizes[group] = (int(atrophy.sum()), int(gain.sum()))
    assert sizes["control"] == (0, 0)  # the control group has neither effect
    assert sizes["rrms"][0] > 0 and sizes["spms"][0] > 0
    assert sizes["spms"][1] > sizes["rrms"][1] > 0
