"""`braincam synth`: determinism, BIDS validity, ground truth, effect, geometry, regions, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from typer.testing import CliRunner

from braincam.cli import app
from braincam.errors import ConfigError, InputError
from braincam.synth.anatomy import (
    REGIONS,
    grid_coordinates,
    load_template,
    random_subject_transform,
    region_mask,
    sample_volume,
)
from braincam.synth.dwi import (
    SynthConfig,
    dwi_signal,
    gradient_scheme,
    groundtruth_paths,
    mni_region_path,
    synthesize,
    tensor_eigenvalues,
)

# Tiny and coarse so the whole file stays fast; 4 subjects gives two per group.
TINY = SynthConfig(subjects=4, seed=11, voxel_size=4.0, directions=12, b0_volumes=2)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _participants(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "participants.tsv", sep="\t", dtype={"participant_id": str})


@pytest.fixture(scope="module")
def template():
    """Loaded once: building the template is the slow part of a tiny cohort."""
    return load_template(TINY.voxel_size)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, template) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bids"
    return synthesize(out, TINY, progress=False, template=template)


@pytest.fixture(scope="module")
def no_effect(tmp_path_factory: pytest.TempPathFactory, template) -> Path:
    """Same seed and subjects as ``cohort`` but effect size 0: identical anatomy."""
    config = TINY.replace(effect_size=0.0)
    out = tmp_path_factory.mktemp("synth0") / "bids"
    return synthesize(out, config, progress=False, template=template)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(cohort: Path, tmp_path: Path, template) -> None:
    # Two worker processes this time: the files must not depend on how the work was spread.
    again = synthesize(tmp_path / "again", TINY, progress=False, template=template, workers=2)
    first, second = _hashes(cohort), _hashes(again)
    assert first.keys() == second.keys()
    assert first == second
    # No temporary files left behind by the atomic writes.
    assert not [k for k in first if ".tmp" in k]


def test_other_seed_and_overwrite(cohort: Path, tmp_path: Path, template) -> None:
    out = synthesize(tmp_path / "o", TINY.replace(subjects=3), progress=False, template=template)
    assert (out / "sub-03").is_dir()
    other = TINY.replace(subjects=2, seed=12)
    synthesize(out, other, overwrite=True, progress=False, template=template)
    assert not (out / "sub-03").exists()  # no stale subject from the earlier cohort
    assert not (out / "derivatives/groundtruth/sub-03").exists()
    assert len(_participants(out)) == 2
    a = nib.load(cohort / "sub-01/dwi/sub-01_dwi.nii.gz").get_fdata()
    b = nib.load(out / "sub-01/dwi/sub-01_dwi.nii.gz").get_fdata()
    assert a.shape == b.shape
    assert not np.array_equal(a, b)


# --------------------------------------------------------------------------- BIDS validity


def test_dataset_description_and_participants(cohort: Path) -> None:
    desc = json.loads((cohort / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw"
    assert desc["BIDSVersion"]
    assert desc["Name"]
    assert desc["GeneratedBy"][0]["Name"] == "braincam"
    gt_desc = json.loads((cohort / "derivatives/groundtruth/dataset_description.json").read_text())
    assert gt_desc["DatasetType"] == "derivative"
    assert gt_desc["GeneratedBy"][0]["Name"] == "braincam"

    table = _participants(cohort)
    assert list(table.columns) == ["participant_id", "age", "group"]
    assert list(table["participant_id"]) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert sorted(table["group"]) == ["old", "old", "young", "young"]
    young = table[table["group"] == "young"]["age"]
    old = table[table["group"] == "old"]["age"]
    assert young.between(*TINY.young_ages).all()
    assert old.between(*TINY.old_ages).all()
    sidecar = json.loads((cohort / "participants.json").read_text())
    assert {"participant_id", "age", "group"} <= set(sidecar)


def test_dwi_files_and_gradient_tables(cohort: Path) -> None:
    for pid in _participants(cohort)["participant_id"]:
        base = cohort / pid / "dwi" / f"{pid}_dwi"
        img = nib.load(f"{base}.nii.gz")
        assert img.ndim == 4
        n_vol = img.shape[3]
        assert n_vol == TINY.directions + TINY.b0_volumes
        assert img.get_data_dtype() == np.int16
        json.loads(Path(f"{base}.json").read_text())
        bvals = np.loadtxt(f"{base}.bval")
        bvecs = np.loadtxt(f"{base}.bvec")
        assert bvals.shape == (n_vol,)
        assert bvecs.shape == (3, n_vol)  # FSL: three rows
        assert np.sum(bvals == 0) == TINY.b0_volumes
        norms = np.linalg.norm(bvecs, axis=0)
        np.testing.assert_allclose(norms[bvals > 0], 1.0, atol=1e-5)
        np.testing.assert_allclose(norms[bvals == 0], 0.0, atol=1e-12)
        data = np.asarray(img.dataobj)
        assert np.isfinite(data).all() and data.min() >= 0
        # b=0 volumes are brighter than diffusion-weighted ones inside the brain.
        fa = nib.load(groundtruth_paths(cohort, pid)["true_fa"]).get_fdata()
        brain = fa > 0.2
        assert data[brain][:, bvals == 0].mean() > 1.5 * data[brain][:, bvals > 0].mean()


def test_gradient_scheme_is_well_spread() -> None:
    bvals, bvecs = gradient_scheme(32, 5, 1000.0)
    assert bvals.shape == (37,) and bvecs.shape == (37, 3)
    assert bvals[0] == 0 and np.sum(bvals == 0) == 5
    dirs = bvecs[bvals > 0]
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-12)
    cos = np.abs(dirs @ dirs.T)
    np.fill_diagonal(cos, 0.0)
    # Antipodally distinct: no two axes closer than 15 degrees (32 axes allow ~24).
    assert np.degrees(np.arccos(cos.max())) > 15.0


def test_tensor_has_exactly_the_requested_fa_and_md() -> None:
    fa = np.array([0.0, 0.15, 0.45, 0.75, 0.9])
    md = np.array([0.7e-3, 0.8e-3, 3e-3, 0.7e-3, 1e-3])
    l1, l2 = tensor_eigenvalues(fa, md)
    lam = np.stack([l1, l2, l2], axis=1)
    mean = lam.mean(axis=1)
    fa_back = np.sqrt(1.5 * ((lam - mean[:, None]) ** 2).sum(1) / (lam**2).sum(1))
    np.testing.assert_allclose(mean, md, rtol=1e-12)
    np.testing.assert_allclose(fa_back, fa, atol=1e-12)
    # Signal along and across the fibre follow exp(-b λ∥) and exp(-b λ⊥).
    e = np.array([[1.0, 0.0, 0.0]])
    g = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    s = dwi_signal(np.array([1000.0]), fa[3:4], md[3:4], e, np.array([0, 1000, 1000]), g)
    np.testing.assert_allclose(
        s[0], 1000 * np.exp(-np.array([0, 1000 * l1[3], 1000 * l2[3]])), rtol=1e-5
    )


@pytest.mark.parametrize("orientation", ["LAS", "RAS"])
def test_noise_free_dti_fit_recovers_fa_and_directions(
    tmp_path: Path, template, orientation: str
) -> None:
    """DIPY on noise-free data with the written bval/bvec gives the true FA, and principal
    directions that follow the orientation field: the bvec frame matches the image (FSL)."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    from braincam.synth.anatomy import white_matter_orientation

    config = TINY.replace(subjects=2, snr=float("inf"), orientation=orientation)
    out = synthesize(tmp_path / "clean", config, progress=False, template=template)
    base = out / "sub-01" / "dwi" / "sub-01_dwi"
    img = nib.load(f"{base}.nii.gz")
    bvecs = np.loadtxt(f"{base}.bvec")
    if np.linalg.det(img.affine[:3, :3]) > 0:
        bvecs[0] = -bvecs[0]  # FSL → voxel axes for a positive-determinant image
    gtab = gradient_table(np.loadtxt(f"{base}.bval"), bvecs=bvecs.T)
    paths = groundtruth_paths(out, "sub-01")
    true_fa = nib.load(paths["true_fa"]).get_fdata()
    wm = true_fa > 0.4
    fit = TensorModel(gtab, fit_method="OLS").fit(img.get_fdata(), mask=wm)
    np.testing.assert_allclose(fit.fa[wm], true_fa[wm], atol=0.01)

    draw = json.loads(paths["true_fa"].with_suffix("").with_suffix(".json").read_text())
    linear = np.asarray(draw["LinearMNIToNative"])
    mni = nib.load(paths["native_to_mni"]).get_fdata()[wm]
    expected = white_matter_orientation(mni) @ linear.T
    axes = img.affine[:3, :3] / TINY.voxel_size
    expected = expected @ axes
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cos = np.abs(np.sum(fit.evecs[wm][..., 0] * expected, axis=1))
    assert np.median(cos) > 0.97


# --------------------------------------------------------------------------- ground truth


def test_groundtruth_in_native_space(cohort: Path) -> None:
    table = _participants(cohort)
    for pid, group in zip(table["participant_id"], table["group"], strict=True):
        dwi = nib.load(cohort / pid / "dwi" / f"{pid}_dwi.nii.gz")
        paths = groundtruth_paths(cohort, pid)
        assert all(p.is_file() for p in paths.values()), paths
        for key in ("effect_mask", "region_mask", "true_fa", "native_to_mni"):
            img = nib.load(paths[key])
            assert img.shape[:3] == dwi.shape[:3], key
            np.testing.assert_allclose(img.affine, dwi.affine, atol=1e-6)
        effect = np.asarray(nib.load(paths["effect_mask"]).dataobj)
        region = np.asarray(nib.load(paths["region_mask"]).dataobj)
        assert effect.dtype == np.uint8
        assert region.any()
        assert effect.any() == (group == "old")
        assert nib.load(paths["native_to_mni"]).shape == (*dwi.shape[:3], 3)
        assert nib.load(paths["mni_to_native"]).shape[3] == 3
    assert mni_region_path(cohort).is_file()


def test_effect_reduces_fa_by_the_fraction(cohort: Path, no_effect: Path) -> None:
    table = _participants(cohort)
    ratios_between = {"young": [], "old": []}
    for pid, group in zip(table["participant_id"], table["group"], strict=True):
        fa = nib.load(groundtruth_paths(cohort, pid)["true_fa"]).get_fdata()
        fa0 = nib.load(groundtruth_paths(no_effect, pid)["true_fa"]).get_fdata()
        region = nib.load(groundtruth_paths(cohort, pid)["region_mask"]).get_fdata() > 0
        effect = nib.load(groundtruth_paths(cohort, pid)["effect_mask"]).get_fdata() > 0
        # Same seed, same anatomy: the only change is FA × (1 − effect) inside the mask.
        np.testing.assert_allclose(fa[~effect], fa0[~effect], atol=1e-6)
        if group == "old":
            np.testing.assert_allclose(fa[effect], fa0[effect] * (1 - TINY.effect_size), atol=1e-6)
        ratios_between[group].append(fa[region].mean())
    # Across subjects (different anatomy), old/young in the region ≈ 1 − effect size.
    ratio = np.mean(ratios_between["old"]) / np.mean(ratios_between["young"])
    assert abs(ratio - (1 - TINY.effect_size)) < 0.1


def test_coordinate_maps_compose_to_identity(cohort: Path) -> None:
    for pid in ["sub-01", "sub-02"]:
        paths = groundtruth_paths(cohort, pid)
        fwd = nib.load(paths["native_to_mni"])
        inv = nib.load(paths["mni_to_native"])
        fa = nib.load(paths["true_fa"]).get_fdata()
        brain = fa > 0.1
        native = grid_coordinates(fa.shape, fwd.affine)[brain]
        mni = fwd.get_fdata()[brain]
        inv_data = inv.get_fdata()
        back = np.stack(
            [sample_volume(inv_data[..., k], inv.affine, mni) for k in range(3)], axis=-1
        )
        err = np.linalg.norm(back - native, axis=1)
        # Linear interpolation of a smooth map on a 4 mm grid: well under a voxel.
        assert np.median(err) < 0.5
        assert np.percentile(err, 99) < 2.0
        # And the maps really move points (not identities).
        assert np.median(np.linalg.norm(mni - native, axis=1)) > 1.0


def test_inverse_warp_converges(template) -> None:
    rng = np.random.default_rng(0)
    transform = random_subject_transform(rng, template, warp_mm=5.0, warp_smoothness_mm=15.0)
    points = template.points()[template.tissue > 0.5]
    assert transform.inverse_residual_mm(points) < 0.05
    back = transform.to_native(transform.to_mni(points[:500]))
    np.testing.assert_allclose(back, points[:500], atol=0.05)


# --------------------------------------------------------------------------- geometry


def _centre_slab_hits(mask_img: nib.Nifti1Image, half_width_mm: float) -> list[int]:
    """Voxels of the mask in the centre slab of each canonical axis (x, y, z)."""
    canon = nib.as_closest_canonical(mask_img)
    mask = np.asarray(canon.dataobj) > 0
    vox = np.abs(np.diag(canon.affine)[:3])
    hits = []
    for axis in range(3):
        idx = np.arange(mask.shape[axis])
        near = np.abs(idx - (mask.shape[axis] - 1) / 2) * vox[axis] <= half_width_mm
        hits.append(int(np.take(mask, np.flatnonzero(near), axis=axis).sum()))
    return hits


def test_default_region_lies_in_centre_slabs(cohort: Path) -> None:
    """16 centre slices at 2.5 mm span ±20 mm around the volume middle on each axis."""
    assert TINY.effect_region == "frontal-wm" == SynthConfig().effect_region
    for pid in _participants(cohort)["participant_id"]:
        img = nib.load(groundtruth_paths(cohort, pid)["region_mask"])
        assert all(h > 0 for h in _centre_slab_hits(img, 20.0)), pid


@pytest.mark.slow
def test_default_cohort_region_in_16_centre_slices(tmp_path: Path) -> None:
    """At the default voxel size: the 16 centre slices of every axis cut the region."""
    out = synthesize(tmp_path / "d", SynthConfig(subjects=2, seed=5), progress=False)
    for pid in ["sub-01", "sub-02"]:
        canon = nib.as_closest_canonical(nib.load(groundtruth_paths(out, pid)["region_mask"]))
        mask = np.asarray(canon.dataobj) > 0
        for axis in range(3):
            start = mask.shape[axis] // 2 - 8
            slab = np.take(mask, np.arange(start, start + 16), axis=axis)
            assert slab.sum() > 20, (pid, axis)


def test_field_of_view_holds_the_brain_and_is_centred(cohort: Path) -> None:
    for pid in _participants(cohort)["participant_id"]:
        fa = nib.load(groundtruth_paths(cohort, pid)["true_fa"]).get_fdata()
        tissue = fa > 0
        for axis in range(3):
            assert not np.take(tissue, [0, -1], axis=axis).any(), (pid, axis)
        idx = np.argwhere(tissue)
        centre = (idx.min(0) + idx.max(0)) / 2
        np.testing.assert_allclose(centre, (np.array(fa.shape) - 1) / 2, atol=2.0)


def test_subjects_do_not_align_voxel_for_voxel(cohort: Path) -> None:
    a = nib.load(groundtruth_paths(cohort, "sub-01")["true_fa"]).get_fdata()
    b = nib.load(groundtruth_paths(cohort, "sub-02")["true_fa"]).get_fdata()
    wm_a, wm_b = a > 0.35, b > 0.35
    dice = 2 * (wm_a & wm_b).sum() / (wm_a.sum() + wm_b.sum())
    assert 0.2 < dice < 0.9


# --------------------------------------------------------------------------- regions


def test_named_regions_exist_and_bad_name_lists_them(template) -> None:
    for name in REGIONS:
        if not name.startswith(("sphere", "random")):
            assert region_mask(name, template).sum() > 10, name
    ball = region_mask("sphere:0,20,20,10", template)
    assert 0 < ball.sum() <= 4 / 3 * np.pi * 10**3 / 4.0**3 * 1.5
    with pytest.raises(InputError) as err:
        region_mask("frontal-lobe", template)
    for name in REGIONS:
        assert name in str(err.value)
    with pytest.raises(InputError):
        region_mask("sphere:1,2", template)


def test_region_from_nifti_at_another_resolution(template, tmp_path: Path) -> None:
    # A 12 mm ball at MNI (0, 20, 20) on a 3 mm grid in LPS-like orientation.
    affine = np.array([[-3.0, 0, 0, 90], [0, 3.0, 0, -126], [0, 0, 3.0, -72], [0, 0, 0, 1]])
    shape = (61, 73, 61)
    pts = grid_coordinates(shape, affine)
    ball = (np.linalg.norm(pts - np.array([0.0, 20.0, 20.0]), axis=-1) <= 12).astype(np.uint8)
    path = tmp_path / "ball_3mm.nii.gz"
    nib.save(nib.Nifti1Image(ball, affine), path)
    from_file = region_mask(path, template)
    expected = np.linalg.norm(template.points() - np.array([0.0, 20.0, 20.0]), axis=-1) <= 12
    dice = 2 * (from_file & expected).sum() / (from_file.sum() + expected.sum())
    assert dice > 0.7
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), affine), empty)
    with pytest.raises(InputError):
        region_mask(empty, template)


def test_bad_region_fails_before_writing(tmp_path: Path, template) -> None:
    out = tmp_path / "never"
    config = TINY.replace(effect_region="nowhere")
    with pytest.raises(InputError, match="corpus-callosum"):
        synthesize(out, config, progress=False, template=template)
    assert not out.exists()


def test_bad_parameters_raise_config_error(tmp_path: Path, template) -> None:
    for bad in (dict(effect_size=1.5), dict(subjects=1), dict(snr=-1.0), dict(orientation="X")):
        with pytest.raises(ConfigError):
            synthesize(tmp_path / "x", TINY.replace(**bad), progress=False, template=template)
    with pytest.raises(ConfigError, match="voxel"):  # template at another voxel size
        synthesize(tmp_path / "x", TINY.replace(voxel_size=3.0), template=template)
    assert not (tmp_path / "x").exists()


def test_refuses_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        synthesize(tmp_path, TINY, progress=False)
    with pytest.raises(InputError, match="not a braincam synth"):
        synthesize(tmp_path, TINY, overwrite=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_template_matches_nilearn_loaders() -> None:
    from nilearn import datasets

    from braincam.synth.anatomy import mni152_arrays

    maps, affine = mni152_arrays()
    ref = datasets.load_mni152_wm_template(resolution=1)
    np.testing.assert_allclose(affine, ref.affine)
    np.testing.assert_allclose(maps["wm"], ref.get_fdata(dtype=np.float32), atol=1e-6)
    t1 = datasets.load_mni152_template(resolution=1).get_fdata(dtype=np.float32)
    np.testing.assert_allclose(maps["t1"], t1, atol=1e-6)


# --------------------------------------------------------------------------- CLI


def test_cli_with_mask_file_and_global_effects(tmp_path: Path) -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    pts = grid_coordinates((91, 109, 91), affine)
    ball = (np.linalg.norm(pts - np.array([20.0, 0.0, 20.0]), axis=-1) <= 15).astype(np.uint8)
    mask_path = tmp_path / "roi.nii"
    nib.save(nib.Nifti1Image(ball, affine), mask_path)
    out = tmp_path / "cli"
    args = ["synth", str(out), "--subjects", "2", "--voxel-size", "4", "--directions", "6"]
    args += ["--b0", "1", "--effect-region", str(mask_path), "--global-md-change", "0.1"]
    args += ["--seed", "3", "--quiet", "--orientation", "RAS"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = _participants(out)
    old = table[table["group"] == "old"]["participant_id"].item()
    effect = nib.load(groundtruth_paths(out, old)["effect_mask"])
    assert np.asarray(effect.dataobj).sum() > 0
    assert nib.aff2axcodes(effect.affine) == ("R", "A", "S")
    assert np.loadtxt(out / old / "dwi" / f"{old}_dwi.bval").shape == (7,)

    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "b"), "--effect-region", "nope"])
    assert bad.exit_code != 0
    assert isinstance(bad.exception, InputError)


# --------------------------------------------------------------------------- random spheres


@pytest.mark.parametrize("placement", ["any", "deep", "cortical"])
def test_random_sphere_in_white_matter_by_seed(template, placement: str) -> None:
    from braincam.synth.anatomy import (
        RANDOM_BAND_MM,
        RANDOM_CORTICAL_MM,
        RANDOM_DEEP_MM,
        RANDOM_RADIUS_MM,
        draw_random_sphere,
        sphere_mask,
    )

    named = np.zeros(template.shape, dtype=bool)
    for name in REGIONS:
        if not name.startswith(("sphere", "random")):
            named |= region_mask(name, template)
    wm = template.wm >= 0.5
    depth = ndi.distance_transform_edt(wm) * template.voxel_size
    to_gm = ndi.distance_transform_edt(template.gm < 0.5) * template.voxel_size
    centres = []
    for seed in range(5):
        sphere = draw_random_sphere(template, seed, placement)
        again = draw_random_sphere(template, seed, placement)
        assert np.array_equal(sphere.centre, again.centre) and sphere.radius == again.radius
        assert RANDOM_RADIUS_MM[0] <= sphere.radius <= RANDOM_RADIUS_MM[1]
        mask = sphere_mask(sphere, template)
        assert mask.any() and not (mask & ~wm).any()  # white matter only
        dist = np.linalg.norm(template.points() - sphere.centre, axis=-1)
        assert dist[mask].max() <= sphere.radius  # inside the ball
        assert np.array_equal(mask, wm & (dist <= sphere.radius))  # ... and all of its WM
        ijk = tuple(
            np.rint(
                np.linalg.solve(template.affine[:3, :3], sphere.centre - template.affine[:3, 3])
            ).astype(int)
        )
        assert wm[ijk] and not named[ijk]  # centred in WM, outside every named region
        assert (mask & named).sum() <= 0.25 * mask.sum()
        assert abs(sphere.centre[2] - template.brain_center_mm()[2]) <= RANDOM_BAND_MM
        if placement == "deep":
            assert depth[ijk] >= RANDOM_DEEP_MM
        if placement == "cortical":
            reach = max(RANDOM_CORTICAL_MM, template.voxel_size)  # a voxel on coarse grids
            assert depth[ijk] <= reach and to_gm[ijk] <= reach
        centres.append(tuple(sphere.centre))
    assert len(set(centres)) >= 4  # seeds move the sphere


def test_random_region_spec_and_bad_spelling(template) -> None:
    from braincam.synth.anatomy import draw_random_sphere, sphere_mask

    expected = sphere_mask(draw_random_sphere(template, 7, "deep"), template)
    assert np.array_equal(region_mask("random:deep", template, seed=7), expected)
    assert not np.array_equal(region_mask("random:deep", template, seed=8), expected)
    with pytest.raises(InputError):
        region_mask("random:frontal", template)


def test_random_region_written_to_groundtruth(template, tmp_path: Path) -> None:
    from braincam.synth.anatomy import RandomSphere, sphere_mask

    config = TINY.model_copy(update={"effect_region": "random:cortical", "seed": 5})
    out = synthesize(tmp_path / "bids", config, progress=False, template=template)
    record = json.loads((out / "derivatives/groundtruth/synth_config.json").read_text())
    drawn = record["effect_sphere"]
    assert record["config"]["effect_region"] == "random:cortical"
    sphere = RandomSphere(np.asarray(drawn["centre_mm"]), drawn["radius_mm"], "cortical")
    mni = np.asarray(nib.load(mni_region_path(out)).dataobj) > 0
    # Rounded to the micrometre in the JSON: the recorded sphere rebuilds the written mask.
    assert np.array_equal(mni, sphere_mask(sphere, template))
    people = _participants(out)
    for pid, group in zip(people["participant_id"], people["group"], strict=True):
        effect = np.asarray(nib.load(groundtruth_paths(out, pid)["effect_mask"]).dataobj) > 0
        region = np.asarray(nib.load(groundtruth_paths(out, pid)["region_mask"]).dataobj) > 0
        assert region.any()
        assert effect.any() == (group == "old")
