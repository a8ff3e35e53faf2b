"""Structural preprocessing: N4, rigid registration, equalization, trimming, ingest, outputs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from braincam.errors import ConfigError, InputError
from braincam.modalities.anat import cohort
from braincam.modalities.anat import preprocess as st
from braincam.synth import anat as sa
from braincam.synth.anatomy import load_template, rotation_matrix

LAS = np.array([[-4.0, 0, 0, 90], [0, 4, 0, -120], [0, 0, 4, -70], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def template():
    return load_template(4.0)


def _contrast(tpl, weights: tuple[float, float, float]) -> np.ndarray:
    csf, gm, wm = weights
    return (tpl.csf * csf + tpl.gm * gm + tpl.wm * wm).astype(np.float32)


def _rigid(deg: tuple[float, float, float], mm: tuple[float, float, float], centre) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(np.deg2rad(deg))
    m[:3, 3] = np.asarray(centre) + np.asarray(mm) - m[:3, :3] @ np.asarray(centre)
    return m


# --------------------------------------------------------------------------- geometry helpers


def test_sitk_geometry_matches_nibabel_and_round_trips() -> None:
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    img = st.to_sitk(data, LAS)
    assert np.array_equal(st.from_sitk(img), data)
    ras = LAS @ np.array([2.0, 3.0, 4.0, 1.0])
    lps = img.TransformIndexToPhysicalPoint([2, 3, 4])
    assert np.allclose(lps, [-ras[0], -ras[1], ras[2]])
    m = _rigid((3.0, -2.0, 1.0), (1.5, -0.5, 2.0), (10.0, -20.0, 5.0))
    assert np.allclose(st.sitk_to_ras_matrix(st.ras_to_sitk_transform(m)), m, atol=1e-9)


def test_registration_error_measures_known_offsets() -> None:
    centre = np.array([0.0, -10.0, 15.0])
    true = _rigid((2.0, 0.0, 0.0), (1.0, 0.0, 0.0), centre)
    est = _rigid((2.0, 0.0, 1.5), (1.0, 0.0, 0.0), centre)
    err = st.registration_error(est, true, centre)
    assert err["rotation_deg"] == pytest.approx(1.5, abs=1e-6)
    assert err["translation_mm"] == pytest.approx(0.0, abs=1e-9)
    shifted = true.copy()
    shifted[:3, 3] += [0.0, 3.0, 4.0]
    assert st.registration_error(shifted, true, centre)["translation_mm"] == pytest.approx(5.0)


# --------------------------------------------------------------------------- N4


def test_n4_lowers_white_matter_cov(template) -> None:
    t1 = _contrast(template, (0.25, 0.65, 1.0)) * 1000
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in t1.shape], indexing="ij"))
    bias = np.exp(0.3 * grid[0] - 0.25 * grid[2] + 0.15 * grid[0] * grid[1]).astype(np.float32)
    noisy = t1 * bias + np.random.default_rng(0).normal(0, 10, t1.shape).astype(np.float32)
    wm = ndi.binary_erosion(template.wm > 0.9)

    def cov(x: np.ndarray) -> float:
        return float(x[wm].std() / x[wm].mean())

    corrected, field = st.n4_correct(noisy, template.affine, st.AnatParams())
    assert field.shape == t1.shape and np.all(field > 0)
    assert cov(noisy) > 0.1
    assert cov(corrected) < 0.6 * cov(noisy)
    # The estimated field follows the true one (up to N4's free global scale).
    head = template.tissue > 0.5
    assert np.corrcoef(np.log(field[head]), np.log(bias[head]))[0, 1] > 0.9


def test_n4_refuses_a_blank_image() -> None:
    with pytest.raises(InputError, match="empty"):
        st.n4_correct(np.zeros((20, 20, 20), np.float32), np.eye(4), st.AnatParams())


# --------------------------------------------------------------------------- registration


def test_registration_recovers_known_rigid_transform(template) -> None:
    """A T2-like image moved by 4°/3 mm is registered back to T1 within 1° and 1 mm."""
    t1 = _contrast(template, (0.25, 0.65, 1.0))
    t2 = _contrast(template, (1.6, 0.95, 0.7))
    affine = template.affine
    centre = affine[:3, :3] @ ((np.array(t1.shape) - 1) / 2) + affine[:3, 3]
    true = _rigid((4.0, -3.0, 2.5), (3.0, -2.0, 2.5), centre)
    # Moving content at world q is the fixed anatomy at T⁻¹(q): sample T2 through T⁻¹.
    moved = st.resample_to(t2, affine, t2.shape, affine, np.linalg.inv(true))
    reg = st.register_rigid(t1, affine, moved, affine, st.AnatParams(), st.foreground_mask(t1))
    err = st.registration_error(reg.matrix, true, centre)
    assert err["rotation_deg"] < 1.0, err
    assert err["translation_mm"] < 1.0, err
    # Identity would be far off: the test can fail.
    assert st.registration_error(np.eye(4), true, centre)["rotation_deg"] > 4.0


# --------------------------------------------------------------------------- equalization


@pytest.mark.parametrize("method", ["global", "adaptive", "none"])
def test_equalize_range_and_in_brain_only(template, method: str) -> None:
    t1 = _contrast(template, (0.25, 0.65, 1.0)) * 800 + 50  # background 50, not 0
    mask = template.tissue > 0.5
    out = st.equalize(t1, mask, method)
    assert out.dtype == np.float32 and out.shape == t1.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(out[~mask] == 0.0)
    assert out[mask].max() > 0.9 and np.ptp(out[mask]) > 0.8
    if method == "global":
        # Equalized: in-brain values spread evenly over [0, 1] (quartiles near 0.25/0.5/0.75).
        q = np.quantile(out[mask], [0.25, 0.5, 0.75])
        assert np.allclose(q, [0.25, 0.5, 0.75], atol=0.1)


def test_equalize_rejects_bad_mask_and_method() -> None:
    with pytest.raises(InputError, match="shapes"):
        st.equalize(np.ones((4, 4, 4)), np.ones((4, 4, 3), bool))
    with pytest.raises(ConfigError, match="equalize"):
        st.equalize(np.ones((4, 4, 4)), np.ones((4, 4, 4), bool), "median")


# --------------------------------------------------------------------------- trimming


def test_trim_range_follows_the_documented_rule() -> None:
    mask = np.zeros((10, 10, 12), bool)
    areas = [0, 2, 5, 20, 60, 100, 100, 80, 30, 9, 10, 0]  # pixels per axial slice
    for k, a in enumerate(areas):
        mask[:, :, k].flat[:a] = True
    assert mask.sum(axis=(0, 1)).tolist() == areas
    # ≥ 10 % of the largest slice (100 px): slices 3..10 (9 px at slice 9 sits inside the range).
    assert st.trim_range(mask, 2, 0.10) == (3, 10)
    assert st.trim_range(mask, 2, 0.5) == (4, 7)
    assert st.trim_range(mask, 2, 0.0) == (0, 11)
    with pytest.raises(InputError, match="empty"):
        st.trim_range(np.zeros((3, 3, 3), bool), 2)


def test_crop_axis_keeps_world_positions_and_slice_axis() -> None:
    data = np.random.default_rng(0).random((6, 7, 8))
    cropped, affine = st.crop_axis(data, LAS, 2, 3, 5)
    assert cropped.shape == (6, 7, 3)
    assert np.array_equal(cropped[:, :, 0], data[:, :, 3])
    assert np.allclose(affine @ [1, 2, 0, 1], LAS @ [1, 2, 3, 1])
    assert st.slice_axis(LAS, "axial") == 2 and st.slice_axis(LAS, "sagittal") == 0
    permuted = LAS[:, [2, 0, 1, 3]]  # voxel axis 0 now runs along z
    assert st.slice_axis(permuted, "axial") == 0


def test_params_validate() -> None:
    with pytest.raises(ConfigError, match="equalize"):
        st.AnatParams(equalize="local")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="smoothing_sigmas"):
        st.AnatParams(shrink_factors=(4, 2, 1), smoothing_sigmas=(1.0, 0.0))
    with pytest.raises(ConfigError, match="trim_threshold"):
        st.AnatParams(trim_threshold=1.5)


# --------------------------------------------------------------------------- subject level


@pytest.fixture(scope="module")
def bids(tmp_path_factory: pytest.TempPathFactory, template) -> Path:
    config = sa.AnatSynthConfig(subjects=3, seed=2, voxel_size=4.0)
    out = tmp_path_factory.mktemp("anat") / "bids"
    return sa.synthesize_anat(out, config, progress=False, template=template)


def test_missing_contrast_names_subject_and_file(bids: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    flair = sa.anat_paths(copy, "sub-02")["FLAIR"]
    flair.unlink()
    with pytest.raises(InputError, match="FLAIR") as info:
        cohort.ingest_anat(copy, label="group")
    assert info.value.subject == "sub-02" and info.value.path == str(flair)
    skipped = cohort.ingest_anat(copy, label="group", missing="skip")
    assert [r.participant_id for r in skipped.subjects] == ["sub-01", "sub-03"]
    assert [(f.participant_id, f.file) for f in skipped.failures] == [("sub-02", str(flair))]
    raw = sa.anat_paths(copy, "sub-02")
    with pytest.raises(InputError, match="missing FLAIR") as info:
        st.preprocess_anat(raw["T1w"], raw["T2w"], flair, tmp_path / "work")
    assert "subject=sub-02" in str(info.value) and str(flair) in str(info.value)


def test_unreadable_contrast_names_subject_and_file(bids: Path, tmp_path: Path) -> None:
    raw = sa.anat_paths(bids, "sub-01")
    bad = tmp_path / "sub-01_T2w.nii.gz"
    bad.write_bytes(raw["T2w"].read_bytes()[:300])  # truncated
    with pytest.raises(InputError, match="T2w") as info:
        st.preprocess_anat(raw["T1w"], bad, raw["FLAIR"], tmp_path / "work")
    assert info.value.subject == "sub-01" and info.value.path == str(bad)


def test_ingest_lists_bad_headers_and_keeps_the_others(bids: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    t2 = sa.anat_paths(copy, "sub-01")["T2w"]
    img = nib.load(t2)
    nib.save(nib.Nifti1Image(np.zeros((*img.shape, 2), np.int16), img.affine), t2)  # 4D
    mask = sa.anat_groundtruth_paths(copy, "sub-03")["lesion_mask"]
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), mask)  # wrong grid
    result = cohort.ingest_anat(copy, label="group")
    assert [r.participant_id for r in result.subjects] == ["sub-02"]
    found = {f.participant_id: f for f in result.failures}
    assert found["sub-01"].file == str(t2) and "3D" in found["sub-01"].error
    assert found["sub-03"].file == str(mask) and "grid" in found["sub-03"].error


def test_preprocess_subject_outputs_errors_cache_and_slices(bids: Path, tmp_path: Path) -> None:
    from braincam.data.slices import SliceSpec, extract_slices

    ingested = cohort.ingest_anat(bids, label="group")
    record = ingested.subjects[0]
    assert set(record.true_xfm) == {"T2w", "FLAIR"} and record.mask is not None
    params = st.AnatParams(equalize="global")
    work = tmp_path / "work"
    outcome = cohort.process_anat_subject(record, work, params)
    assert outcome.status == "computed", outcome.error
    paths = st.anat_derivative_paths(work, record.participant_id)
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
    kept = outcome.kept_slices
    raw_t1 = nib.load(record.t1)
    assert kept["kept"] == imgs[0].shape[2] < raw_t1.shape[2] == kept["total"]
    assert np.allclose(imgs[0].affine @ [0, 0, 0, 1], raw_t1.affine @ [0, 0, kept["first"], 1])
    # Registration against the recorded truth: well under 1° and 1 mm at 4 mm voxels.
    for moving in ("T2w", "FLAIR"):
        assert outcome.errors[moving]["rotation_deg"] < 1.0
        assert outcome.errors[moving]["translation_mm"] < 1.0
        side = json.loads(paths.xfm_json[moving].read_text())
        assert np.allclose(side["MatrixRAS"], outcome.transforms[moving])
    sidecar = json.loads(paths.sidecars["T2w"].read_text())
    assert sidecar["Parameters"]["equalize"] == "global" and sidecar["Transform"]
    summary = cohort.registration_summary([outcome])
    assert summary["median_error"]["T2w"]["subjects"] == 1

    # Cached: a second run skips and reports the same errors; other params recompute.
    # (threads are not part of the key: workers > 1 run one SimpleITK thread each).
    again = cohort.process_anat_subject(record, work, params.replace(threads=1))
    assert again.status == "skipped"
    for moving, err in outcome.errors.items():
        assert again.errors[moving] == pytest.approx(err)
    assert cohort.process_anat_subject(record, work, params.replace(trim_axis=None)).status == (
        "computed"
    )

    # The three volumes are the slice store's three channels, with the lesion mask.
    source = cohort.slice_sources([record], [outcome])[0]
    assert len(source.images) == 3 and source.mask == record.mask
    spec = SliceSpec(axes=("axial",), per_axis=4, size=32)
    slices = extract_slices([nib.load(p) for p in source.images], spec, nib.load(source.mask))
    assert slices.images.shape == (4, 3, 32, 32)
    assert not np.allclose(slices.images[:, 0], slices.images[:, 1])


def test_failed_subject_is_an_outcome_not_an_exception(bids: Path, tmp_path: Path) -> None:
    record = cohort.ingest_anat(bids, label="group").subjects[0]
    broken = replace(record, flair=tmp_path / "gone_FLAIR.nii.gz")
    outcome = cohort.process_anat_subject(broken, tmp_path / "work", st.AnatParams())
    assert outcome.status == "failed"
    assert outcome.file == str(tmp_path / "gone_FLAIR.nii.gz") and "FLAIR" in outcome.error


def test_study_config_loads_with_the_study_models() -> None:
    from braincam.config import load_config
    from braincam.models import get_spec

    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "configs" / "ms-subtypes-3class.yaml")
    families = {get_spec(m).family for m in config.models}
    assert families == {"alexnet", "resnet", "vgg"}
    heads = {m: get_spec(m).head for m in config.models}
    assert {heads["vgg16-gap"], heads["vgg16-fc"], heads["vgg19-gap"], heads["vgg19-fc"]} == {
        "gap",
        "fc",
    }
    assert all(get_spec(m).pretrained for m in config.models)  # ImageNet transfer possible
    assert config.prepare.split_ratios == (0.75, 0.10, 0.15)
    assert config.prepare.modality == "anat" and config.prepare.mask_desc == "lesion"
    assert config.synth is not None and config.synth.kind == "structural"
    assert config.train.augment.affine.p > 0
    assert config.cams.methods == ["cam", "gradcam", "gradcampp"] and config.cams.regions


# --------------------------------------------------------------------------- CLI and prepare


def test_cli_synth_structural_and_bad_kind(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from braincam.cli import app

    runner = CliRunner()
    out = tmp_path / "bids"
    args = ["synth", str(out), "--kind", "structural", "-n", "3", "--voxel-size", "4"]
    result = runner.invoke(app, [*args, "--groups", "hc,rr,sp", "--quiet"])
    assert result.exit_code == 0, result.output
    assert all(p.is_file() for p in sa.anat_paths(out, "sub-03").values())
    groups = (out / "participants.tsv").read_text().split()
    assert {"hc", "rr", "sp"} <= set(groups)
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--kind", "pet", "--quiet"])
    # The console script (cli._app.main) prints domain errors; CliRunner keeps the exception.
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)
    assert "--kind" in str(bad.exception)


def test_cli_prepare_anat_missing_contrast_is_a_clear_error(bids: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from braincam.cli import app

    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    sa.anat_paths(copy, "sub-03")["T2w"].unlink()
    args = ["prepare", str(copy), str(tmp_path / "work"), "--label", "group"]
    result = CliRunner().invoke(app, [*args, "--modality", "anat", "--no-progress"])
    assert result.exit_code != 0 and isinstance(result.exception, InputError)
    assert result.exception.subject == "sub-03" and "T2w" in str(result.exception)
    assert result.exception.path == str(copy / "sub-03" / "anat" / "sub-03_T2w.nii.gz")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:class .* has only")  # 2 subjects per class: tiny splits
def test_prepare_anat_end_to_end(tmp_path: Path, template) -> None:
    """6 subjects → N4/registration/equalization → 3-channel slice store + registration summary."""
    from braincam.data.slices import SliceStore
    from braincam.pipeline.prepare import PrepareConfig, prepare

    config = sa.AnatSynthConfig(subjects=6, seed=4, voxel_size=4.0)
    bids = sa.synthesize_anat(tmp_path / "bids", config, progress=False, template=template)
    pconf = PrepareConfig(
        modality="anat", axes=("axial",), slices_per_axis=6, size=32, workers=2, progress=False
    )
    result = prepare(bids, tmp_path / "work", pconf)
    assert result.ok, result.failures
    store = SliceStore.open(result.store_dir)
    assert store.channels == 3 and store.classes == ["control", "rrms", "spms"]
    assert (result.store_dir / "masks.npy").is_file()
    reg = result.summary["registration"]
    assert set(reg["subjects"]) == {f"sub-0{i}" for i in range(1, 7)}
    for moving in ("T2w", "FLAIR"):
        assert reg["median_error"][moving]["subjects"] == 6
        assert reg["median_error"][moving]["rotation_deg"] < 1.0
        assert reg["median_error"][moving]["translation_mm"] < 1.0
    again = prepare(bids, tmp_path / "work", pconf.replace(workers=1))
    assert again.summary["n_subjects"]["skipped"] == 6
