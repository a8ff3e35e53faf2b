"""The volume store: the brain-box grid, masks aligned with images, volume ↔ NIfTI in the
subject's space, fingerprint/caching, and ``prepare`` with ``representation: volume``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from braincam.config import PrepareConfig, VolumeSpec
from braincam.data.slices import SliceSource
from braincam.data.splits import make_splits
from braincam.data.volumes import (
    VolumeStore,
    brain_box_grid,
    build_volume_store,
    is_volume_store,
)
from braincam.errors import InputError

# LAS, anisotropic, off-centre: the store must find the canonical RAS axes and the brain.
SRC_SHAPE = (30, 26, 20)
SRC_AFFINE = np.array(
    [[-2.0, 0, 0, 40.0], [0, 2.5, 0, -30.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]]
)  # fmt: skip
SPEC = VolumeSpec(shape=(24, 24, 24), spacing=2.0)
MARK_VOXEL = (12, 14, 9)  # a bright voxel of the source image, on the grid of the marks below


def _world(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.asarray(ijk, float) @ affine[:3, :3].T + affine[:3, 3]


def _subject(root: Path, pid: str, label: str, seed: int) -> SliceSource:
    """A brain ellipsoid (its mask), a 2-voxel blob of value 3 (the ground truth, class b only)
    and one bright voxel at MARK_VOXEL."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.arange(s) for s in SRC_SHAPE), indexing="ij")
    brain = ((i - 14) / 9.0) ** 2 + ((j - 12) / 8.0) ** 2 + ((k - 9) / 6.0) ** 2 < 1
    data = brain * (1.0 + 0.01 * rng.standard_normal(SRC_SHAPE))
    blob = (np.abs(i - 17) <= 1) & (np.abs(j - 9) <= 1) & (np.abs(k - 8) <= 1)
    if label == "b":
        data = np.where(blob, 3.0, data)
    data[MARK_VOXEL] = 10.0
    paths = {n: root / f"{pid}_{n}.nii.gz" for n in ("fa", "mask", "brain")}
    nib.save(nib.Nifti1Image(data.astype(np.float32), SRC_AFFINE), paths["fa"])
    nib.save(nib.Nifti1Image((blob & (label == "b")).astype(np.uint8), SRC_AFFINE), paths["mask"])
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), SRC_AFFINE), paths["brain"])
    return SliceSource(pid, label, [paths["fa"], paths["fa"]], paths["mask"], paths["brain"])


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[list[SliceSource], pd.DataFrame]:
    sources = [_subject(tmp_path, f"sub-{n:02d}", "ab"[n % 2], n) for n in range(6)]
    labels = pd.DataFrame(
        {"participant_id": [s.participant_id for s in sources], "label": [s.label for s in sources]}
    )
    return sources, make_splits(labels, (0.5, 0.25, 0.25), seed=0)


def _build(tmp_path: Path, cohort, spec: VolumeSpec = SPEC, **kw) -> VolumeStore:
    sources, splits = cohort
    return build_volume_store(tmp_path / "volumes", sources, splits, spec, progress=False, **kw)


def test_the_grid_is_isotropic_ras_and_centred_on_the_brain(tmp_path: Path, cohort) -> None:
    store = _build(tmp_path, cohort)
    assert store.images.shape == (6, 2, 24, 24, 24) and store.images.dtype == np.float32
    affine = store.affines[0]
    # LAS source → RAS grid: positive diagonal, spacing 2 mm.
    np.testing.assert_allclose(affine[:3, :3], np.diag([2.0, 2.0, 2.0]))
    # The brain's bounding box centre (source voxels 5..23, 5..19, 4..14) is the grid centre.
    brain = np.argwhere(store.brain[0] > 0)
    centre_grid = (brain.min(0) + brain.max(0)) / 2.0
    np.testing.assert_allclose(centre_grid, (np.asarray(SPEC.shape) - 1) / 2.0, atol=1.0)
    src_brain = np.argwhere(nib.load(cohort[0][0].brain_mask).get_fdata() > 0)
    box_centre = (_world(src_brain.min(0), SRC_AFFINE) + _world(src_brain.max(0), SRC_AFFINE)) / 2
    np.testing.assert_allclose(_world((np.asarray(SPEC.shape) - 1) / 2.0, affine), box_centre)
    assert store.meta["cropped"] == []


def test_a_known_voxel_lands_where_its_world_coordinate_says(tmp_path: Path, cohort) -> None:
    spec = VolumeSpec(shape=(24, 24, 24), spacing=2.0, order=0)  # nearest: the peak stays whole
    store = _build(tmp_path, cohort, spec)
    row = store.row("sub-00")
    world = _world(MARK_VOXEL, SRC_AFFINE)
    expected = np.linalg.solve(store.affines[row], [*world, 1.0])[:3]
    peak = np.unravel_index(np.argmax(store.images[row, 0]), spec.shape)
    assert np.abs(np.asarray(peak) - expected).max() <= 0.5 + 1e-9
    assert store.images[row, 0][peak] == pytest.approx(10.0)
    assert store.images[row, 1][peak] == pytest.approx(10.0)  # every channel on the same grid


def test_masks_are_aligned_with_the_images(tmp_path: Path, cohort) -> None:
    store = _build(tmp_path, cohort, VolumeSpec(shape=(24, 24, 24), spacing=2.0, order=0))
    for pid, label in zip(store.index["participant_id"], store.index["label"], strict=True):
        row = store.row(pid)
        mask = store.masks[row] > 0
        image = np.asarray(store.images[row, 0])
        if label == "a":
            assert not mask.any() and store.index.loc[row, "mask_voxels"] == 0
            continue
        assert mask.any() and store.index.loc[row, "mask_voxels"] == mask.sum()
        # The blob has value 3 in the image: the mask covers exactly those voxels.
        np.testing.assert_array_equal(mask, np.isclose(image, 3.0))
        assert (store.brain[row][mask] == 1).all()  # the ground truth lies in the brain


def test_volume_to_nifti_in_the_subjects_space_round_trip(tmp_path: Path, cohort) -> None:
    store = _build(tmp_path, cohort)
    pid = "sub-01"
    row = store.row(pid)
    vol = np.asarray(store.images[row, 0])
    img = store.to_nifti(vol, pid)
    nib.save(img, tmp_path / "map.nii.gz")
    back = nib.load(tmp_path / "map.nii.gz")
    np.testing.assert_allclose(back.affine, store.affines[row])  # the affine is kept
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32), vol)
    # On the source grid: the brain comes back where it was (NaN only outside the store grid).
    src = store.to_nifti(vol, pid, target="source", order=0)
    np.testing.assert_allclose(src.affine, SRC_AFFINE)
    original = nib.load(cohort[0][1].images[0]).get_fdata()
    ijk = np.argwhere(np.ones(SRC_SHAPE, bool))
    on_grid = np.linalg.solve(
        store.affines[row], np.c_[_world(ijk, SRC_AFFINE), np.ones(len(ijk))].T
    )
    outside = ((on_grid[:3] < -1e-6) | (on_grid[:3] > 23 + 1e-6)).any(axis=0).reshape(SRC_SHAPE)
    assert 0 < outside.sum() < outside.size
    np.testing.assert_array_equal(np.isnan(src.get_fdata()), outside)
    # Inside the brain (away from its edge, the blob and the mark, which two linear
    # interpolations blur) the values come back.
    brain_vox = ndimage.binary_erosion(
        nib.load(cohort[0][1].brain_mask).get_fdata() > 0, iterations=2
    )
    brain_vox &= ndimage.binary_dilation(original > 1.5, iterations=2) == 0
    assert brain_vox.sum() > 100
    np.testing.assert_allclose(src.get_fdata()[brain_vox], original[brain_vox], atol=0.05)
    with pytest.raises(InputError, match="grid shape"):
        store.to_nifti(vol[:-1], pid)


def test_a_brain_larger_than_the_grid_is_cropped_and_listed(tmp_path: Path, cohort) -> None:
    ref = nib.load(cohort[0][0].images[0])
    brain = nib.load(cohort[0][0].brain_mask)
    assert brain_box_grid(ref, SPEC, brain)[1] is False
    assert brain_box_grid(ref, VolumeSpec(shape=(8, 8, 8), spacing=2.0), brain)[1] is True
    store = _build(tmp_path, cohort, VolumeSpec(shape=(8, 8, 8), spacing=2.0))
    assert store.meta["cropped"] == store.subjects()


def test_same_inputs_are_cached_and_options_change_the_fingerprint(tmp_path: Path, cohort) -> None:
    first = _build(tmp_path, cohort)
    stamp = (first.path / "meta.json").stat().st_mtime_ns
    again = _build(tmp_path, cohort)
    assert (again.path / "meta.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert again.meta["fingerprint"] == first.meta["fingerprint"]
    forced = _build(tmp_path, cohort, force=True)
    assert forced.meta["fingerprint"] == first.meta["fingerprint"]
    assert (forced.path / "meta.json").stat().st_mtime_ns != stamp
    other = _build(tmp_path, cohort, VolumeSpec(shape=(24, 24, 24), spacing=2.5))
    assert other.meta["fingerprint"] != first.meta["fingerprint"]
    np.testing.assert_allclose(np.diag(other.affines[0])[:3], 2.5)
    sources, splits = cohort
    moved = splits.assign(split=splits["split"].to_numpy()[::-1])
    reordered = build_volume_store(tmp_path / "v2", sources, moved, SPEC, progress=False)
    assert reordered.meta["fingerprint"] != first.meta["fingerprint"]


def test_subjects_labels_and_splits_follow_the_split_table(tmp_path: Path, cohort) -> None:
    store = _build(tmp_path, cohort)
    _, splits = cohort
    table = store.index.merge(splits, on="participant_id", suffixes=("", "_table"))
    assert len(table) == 6
    assert (table["split"] == table["split_table"]).all()
    assert (table["label"] == table["label_table"]).all()
    assert store.classes == ["a", "b"]
    assert (store.index["target"] == (store.index["label"] == "b")).all()
    assert set(store.subjects("train")) == set(
        splits.loc[splits["split"] == "train", "participant_id"]
    )


def test_open_refuses_a_slice_store_and_an_incomplete_directory(tmp_path: Path, cohort) -> None:
    store = _build(tmp_path, cohort)
    assert is_volume_store(store.path) and not is_volume_store(tmp_path)
    meta = json.loads((store.path / "meta.json").read_text())
    (store.path / "meta.json").write_text(json.dumps({**meta, "kind": "slices"}))
    assert not is_volume_store(store.path)
    with pytest.raises(InputError, match="not a volume store"):
        VolumeStore.open(store.path)
    (store.path / "affines.npy").unlink()
    with pytest.raises(InputError, match="missing or incomplete"):
        VolumeStore.open(store.path)


def test_a_slices_config_keeps_its_bytes_and_a_volume_config_adds_its_keys() -> None:
    slices = PrepareConfig().to_dict()
    assert not {"representation", "volume_shape", "volume_spacing"} & set(slices)
    assert PrepareConfig(volume_spacing=3.0).to_dict() == slices  # irrelevant to slices
    volume = PrepareConfig(representation="volume", volume_shape=(16, 20, 16), volume_spacing=3)
    keys = ("representation", "volume_shape", "volume_spacing")
    assert {k: volume.to_dict()[k] for k in keys} == {
        "representation": "volume", "volume_shape": [16, 20, 16], "volume_spacing": 3
    }  # fmt: skip
    assert volume.volume_spec() == VolumeSpec(shape=(16, 20, 16), spacing=3)


def test_prepare_writes_the_volume_store_of_the_same_subjects_and_splits(tmp_path: Path) -> None:
    from braincam.pipeline.prepare import prepare
    from builders.dwi import make_bids

    labels = {f"sub-0{i}": ("young" if i % 2 else "old") for i in range(1, 7)}
    bids = make_bids(tmp_path / "bids", labels, with_masks=True)
    work = tmp_path / "work"
    common = dict(label="group", size=16, slices_per_axis=2, progress=False)
    sliced = prepare(bids, work, PrepareConfig(**common))
    assert sliced.ok and (work / "slices" / "meta.json").is_file()
    summary = json.loads((work / "summary.json").read_text())["prepare"]
    assert "volume_store" not in summary and "representation" not in summary["parameters"]
    splits_before = (work / "splits.tsv").read_text()

    cfg = PrepareConfig(
        **common, representation="volume", volume_shape=(12, 12, 12), volume_spacing=2.0
    )
    result = prepare(bids, work, cfg)
    assert result.ok and result.store_dir == work / "volumes"
    assert not (work / "slices").exists()  # one representation per work directory
    assert (work / "splits.tsv").read_text() == splits_before
    store = VolumeStore.open(work / "volumes")
    assert sorted(store.subjects()) == sorted(labels)
    assert store.images.shape == (6, 1, 12, 12, 12)
    assert store.masks is not None and store.brain is not None
    assert (store.index["mask_voxels"] > 0).all()  # every subject has the cube mask
    summary = json.loads((work / "summary.json").read_text())["prepare"]
    assert summary["volume_store"]["n_volumes"] == 6
    assert summary["outputs"]["volumes"] == "volumes" and summary["outputs"]["slices"] is None
    assert summary["parameters"]["representation"] == "volume"
    stamp = (work / "volumes" / "meta.json").stat().st_mtime_ns
    prepare(bids, work, cfg)  # resumed: the same inputs, the store is not rebuilt
    assert (work / "volumes" / "meta.json").stat().st_mtime_ns == stamp


def test_cli_prepare_builds_a_volume_store(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from braincam.cli import app
    from builders.dwi import make_bids

    labels = {f"sub-0{i}": ("young" if i % 2 else "old") for i in range(1, 7)}
    bids = make_bids(tmp_path / "bids", labels)
    work = tmp_path / "work"
    args = ["prepare", str(bids), str(work), "--label", "group", "--no-progress",
            "--representation", "volume",
            "--volume-shape", "12,14,10", "--volume-spacing", "2.5"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "volumes" in result.output
    store = VolumeStore.open(work / "volumes")
    assert store.shape == (12, 14, 10) and store.meta["spacing_mm"] == 2.5
    assert store.masks is None  # no ground truth in this dataset
    bad = CliRunner().invoke(app, [*args[:-4], "--representation", "cubes"])
    assert bad.exit_code != 0 and "representation" in str(bad.exception)


@pytest.mark.slow
def test_prepare_on_a_dask_cluster_builds_the_same_volume_store(tmp_path: Path) -> None:
    from distributed import LocalCluster

    from braincam.pipeline.prepare import prepare
    from builders.dwi import make_bids

    labels = {f"sub-0{i}": ("young" if i % 2 else "old") for i in range(1, 7)}
    bids = make_bids(tmp_path / "bids", labels, with_masks=True)
    cfg = dict(label="group", progress=False, representation="volume", volume_shape=(12, 12, 12))
    serial = prepare(bids, tmp_path / "w1", PrepareConfig(**cfg))
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        dask = prepare(
            bids, tmp_path / "wd", PrepareConfig(**cfg, dask_scheduler=cluster.scheduler_address)
        )
    assert serial.ok and dask.ok
    one, two = (VolumeStore.open(tmp_path / w / "volumes") for w in ("w1", "wd"))
    np.testing.assert_array_equal(np.asarray(one.images), np.asarray(two.images))
    np.testing.assert_array_equal(one.affines, two.affines)
    pd.testing.assert_frame_equal(one.index, two.index)


# ------------------------------------------------------------------------- MNI space

MNI_SPEC = VolumeSpec(shape=(20, 24, 20), spacing=8.0, space="mni")
PEAK = (10, 12, 9)  # a voxel of the MNI grid: every subject's bump is centred on it


def _rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _mni_subject(root: Path, pid: str, label: str, degrees: float, shift: tuple) -> SliceSource:
    """A subject whose scanner mm are ``R @ mni + shift``: a Gaussian bump (σ 10 mm) centred on
    the MNI point of the MNI grid's voxel PEAK, its > 0.5 region as the mask, the MNI152 brain
    moved into its scanner as the brain mask, and the known MNI → native coordinate map beside
    the mask (as synth writes it)."""
    from braincam.data.volumes import grid_points, mni_brain_on, template_grid
    from braincam.imaging.groundtruth import MNI_TO_NATIVE_SUFFIX

    rotation, shift = _rotation_z(degrees), np.asarray(shift, float)
    mni_affine, _ = template_grid(MNI_SPEC)
    centre = rotation @ _world(PEAK, mni_affine) + shift
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = centre - 4.0 * np.array([25, 30, 25])
    world = grid_points(affine, (50, 60, 50))
    bump = np.exp(-((world - centre) ** 2).sum(-1) / (2 * 10.0**2)).astype(np.float32)
    folder = root / pid
    folder.mkdir()
    paths = {n: folder / f"{pid}_{n}.nii.gz" for n in ("fa", "brain")}
    paths["mask"] = folder / f"{pid}_desc-effect_mask.nii.gz"
    nib.save(nib.Nifti1Image(bump, affine), paths["fa"])
    nib.save(nib.Nifti1Image((bump > 0.5).astype(np.uint8), affine), paths["mask"])
    brain = mni_brain_on((world - shift) @ rotation)  # R⁻¹ = Rᵀ: scanner → MNI
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), paths["brain"])
    coords_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    coords_affine[:3, 3] = (-100.0, -140.0, -90.0)
    mni = grid_points(coords_affine, (52, 62, 50))
    native = (mni @ rotation.T + shift).astype(np.float32)
    nib.save(nib.Nifti1Image(native, coords_affine), folder / f"{pid}{MNI_TO_NATIVE_SUFFIX}")
    return SliceSource(pid, label, [paths["fa"]], paths["mask"], paths["brain"])


@pytest.fixture
def mni_cohort(tmp_path: Path) -> tuple[list[SliceSource], pd.DataFrame]:
    moves = [(0, (0, 0, 0)), (8, (9, -6, 4)), (-12, (-7, 11, -5)), (5, (13, 3, 8))]
    sources = [
        _mni_subject(tmp_path, f"sub-{n:02d}", "ab"[n % 2], deg, shift)
        for n, (deg, shift) in enumerate(moves)
    ]
    labels = pd.DataFrame(
        {"participant_id": [s.participant_id for s in sources], "label": [s.label for s in sources]}
    )
    return sources, make_splits(labels, (0.5, 0.25, 0.25), seed=0)


def test_in_mni_space_every_subject_lands_on_one_grid(tmp_path: Path, mni_cohort) -> None:
    """Subjects rotated and shifted differently in their scanners: through their known maps each
    bump peaks at the same MNI voxel, with its mask around it, on one shared MNI affine; the
    native store of the same subjects puts the bump elsewhere in each (the control)."""
    from braincam.data.volumes import template_grid

    store = _build(tmp_path, mni_cohort, MNI_SPEC)
    assert store.space == "MNI152NLin2009cAsym" and store.meta["space"] == store.space
    expected, _ = template_grid(MNI_SPEC)
    for row, pid in enumerate(store.index["participant_id"]):
        np.testing.assert_allclose(store.affines[row], expected)
        assert store.meta["subjects"][pid]["transform"] == "known"
        image = np.asarray(store.images[row, 0])
        assert np.unravel_index(np.argmax(image), MNI_SPEC.shape) == PEAK
        assert image[PEAK] == pytest.approx(1.0, abs=0.02)
        # the 0.5 level of a σ 10 mm bump: 11.8 mm around the peak (the mask is nearest-sampled
        # from the 4 mm scanner grid, so only the voxels clearly in or out are asserted)
        assert store.meta["subjects"][pid]["brain_dice"] > 0.9  # the brain on the template's
        mask = store.masks[row] > 0
        distance = 8.0 * np.linalg.norm(np.argwhere(np.ones(MNI_SPEC.shape)) - PEAK, axis=1)
        flat = mask.ravel()
        assert flat[distance <= 8.0].all() and not flat[distance > 16.0].any()
    native = _build(tmp_path / "n", mni_cohort, VolumeSpec(shape=(20, 24, 20), spacing=8.0))
    peaks = {np.unravel_index(np.argmax(native.images[r, 0]), (20, 24, 20)) for r in range(4)}
    assert native.space == "native" and native.meta.get("space") == "native"
    assert len({tuple(a.ravel()) for a in np.round(native.affines, 3)}) > 1 or len(peaks) > 1


def test_an_mni_store_writes_mni_niftis_and_refuses_the_scanner_grid(
    tmp_path: Path, mni_cohort
) -> None:
    from braincam.errors import ConfigError

    store = _build(tmp_path, mni_cohort, MNI_SPEC)
    values = np.asarray(store.images[0, 0])
    img = store.to_nifti(values, "sub-01")
    np.testing.assert_allclose(img.affine, store.affines[0])
    np.testing.assert_array_equal(np.asarray(img.dataobj), values)
    with pytest.raises(ConfigError, match="MNI"):
        store.to_nifti(values, "sub-01", target="source")


def test_known_transform_without_a_map_names_the_subject(tmp_path: Path, mni_cohort) -> None:
    sources, splits = mni_cohort
    from braincam.imaging.groundtruth import MNI_TO_NATIVE_SUFFIX

    missing = sources[2].mask.parent / f"{sources[2].participant_id}{MNI_TO_NATIVE_SUFFIX}"
    missing.unlink()
    spec = VolumeSpec(shape=(20, 24, 20), spacing=8.0, space="mni", transform="known")
    with pytest.raises(InputError, match="coordinate map") as err:
        build_volume_store(tmp_path / "v", sources, splits, spec, progress=False)
    assert "sub-02" in str(err.value) and MNI_TO_NATIVE_SUFFIX in str(err.value)
    assert not (tmp_path / "v" / "meta.json").exists()  # nothing left looking complete


def test_registration_finds_a_shifted_template(tmp_path: Path) -> None:
    """The MNI152 template saved 7 mm right, 5 mm back and 4 mm up of itself: the registration
    route maps MNI points to within 1.5 mm of that shift (the 4 mm registration grid)."""
    from braincam.data.volumes import grid_points, mni_points, template_grid
    from braincam.imaging.templates import mni_template

    template = mni_template(4.0)
    shift = np.array([7.0, -5.0, 4.0])
    affine = template.affine.copy()
    affine[:3, 3] += shift
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(template.dataobj, np.float32), affine), path)
    spec = VolumeSpec(shape=(12, 14, 12), spacing=12.0, space="mni")
    points = grid_points(template_grid(spec)[0], spec.shape)
    source = SliceSource("sub-01", "a", [path])
    mapped, how = mni_points(source, nib.load(path), points, "auto")  # no map: registration
    assert how == "registration" and mapped.shape == points.shape
    error = np.linalg.norm(mapped - (points + shift), axis=-1)
    assert np.median(error) < 1.5
    assert np.linalg.norm(points - (points + shift), axis=-1).min() > 9  # the control: unmoved


def test_a_wrong_transform_is_flagged_by_the_brain_overlap(tmp_path: Path, mni_cohort) -> None:
    """A coordinate map 100 mm off puts that subject's brain beside the template's: the build
    warns naming it, and meta.json and the summary record its Dice (< 0.5; the others > 0.9)."""
    from braincam.data.volumes import volume_summary
    from braincam.imaging.groundtruth import MNI_TO_NATIVE_SUFFIX

    sources, _ = mni_cohort
    bad = sources[1]
    path = bad.mask.parent / f"{bad.participant_id}{MNI_TO_NATIVE_SUFFIX}"
    img = nib.load(path)
    moved = np.asarray(img.dataobj) + np.float32([100.0, 0.0, 0.0])
    nib.save(nib.Nifti1Image(moved, img.affine), path)
    with pytest.warns(UserWarning, match="sub-01: its brain mask overlaps the MNI152 brain"):
        store = _build(tmp_path, mni_cohort, MNI_SPEC)
    dice = volume_summary(store)["brain_dice"]
    assert dice["sub-01"] < 0.5
    assert all(d > 0.9 for p, d in dice.items() if p != "sub-01")
