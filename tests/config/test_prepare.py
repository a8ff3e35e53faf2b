"""The ``prepare`` section and the parameters it derives: every option reaches the step; cache
keys, stamps and sidecar parameters keep the bytes they had before the configs were pydantic."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from braincam.config import AnatParams, DTIParams, PrepareConfig, SliceSpec, load_config
from braincam.config.prepare import PrepareSection
from braincam.errors import ConfigError
from braincam.pipeline import run as run_mod

#: A non-default, valid value for every option (YAML spelling), diffusion and structural.
DWI = {
    "label": "dx", "manifest": "/m/manifest.tsv", "participant_labels": ["01", "02"],
    "session": "1", "run": "2", "fit_method": "OLS", "median_radius": 3, "numpass": 2,
    "b0_threshold": 20.0, "bvec_tolerance": 0.05, "workers": 2, "dask_scheduler": "tcp://h:1",
    "split_ratios": [0.6, 0.2, 0.2], "seed": 5, "axes": ["coronal"], "slices_per_axis": 4,
    "size": 32, "voxel_size": 2.0, "mask_desc": "lesion", "masks_dir": "/m/masks", "force": True,
    "progress": False, "modality": "dwi", "equalize": "global", "trim_threshold": 0.2,
    "missing_contrast": "skip", "allow_missing_description": True, "brain_mask": "foreground",
    "outside_brain": "keep",
}  # fmt: skip
ANAT = {**DWI, "manifest": None, "dask_scheduler": None, "modality": "anat"}


#: The volume keys (issue 15): a slices config's to_dict() leaves them out (tests/data/
#: test_volumes.py), so the options above keep their stamps and bytes.
VOLUME = {"representation": "volume", "volume_shape": [16, 20, 16], "volume_spacing": 3.0}
MNI = {"volume_space": "mni", "volume_transform": "known"}  # only in an MNI volume's config


def test_the_option_list_covers_every_field() -> None:
    assert set(DWI) | set(VOLUME) | set(MNI) == set(PrepareConfig.model_fields)
    defaults = json.loads(json.dumps(PrepareConfig().to_dict()))
    # each one is really set (modality: ANAT sets it)
    assert [k for k, v in DWI.items() if defaults[k] == v] == ["modality"]
    volume = json.loads(json.dumps(PrepareConfig(representation="volume").to_dict()))
    assert [k for k, v in VOLUME.items() if volume[k] == v] == ["representation"]
    assert not set(MNI) & set(volume)  # a native volume keeps the bytes it had before
    mni = json.loads(json.dumps(PrepareConfig(representation="volume", **MNI).to_dict()))
    assert {k: mni[k] for k in MNI} == MNI


@pytest.mark.parametrize(
    "options",
    [DWI, ANAT, {**DWI, **VOLUME}, {**DWI, **VOLUME, **MNI}],
    ids=["dwi", "anat", "dwi-volume", "dwi-volume-mni"],
)
def test_every_prepare_option_reaches_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict
) -> None:
    import braincam.pipeline.prepare

    seen: list = []

    def fake(bids, out, config):
        seen.append(config)
        return SimpleNamespace(store_dir=Path(out) / "slices", failures=[])

    monkeypatch.setattr(braincam.pipeline.prepare, "prepare", fake)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"models": ["m"], "bids": str(tmp_path), "prepare": options}))
    cfg = load_config(path)
    run_mod._ensure_prepared(cfg, tmp_path, tmp_path / "out", progress=True)
    (config,) = seen
    assert type(config) is PrepareConfig
    assert json.loads(json.dumps(config.to_dict())) == options  # progress: the section's False
    stamp = json.loads((tmp_path / "out" / ".prepare-params.json").read_text())
    assert stamp == {"bids": str(tmp_path.resolve()), **{k: v for k, v in options.items()
                                                         if k != "progress"}}  # fmt: skip
    derived = config.dti_params(), config.slice_spec(), config.anat_params()
    assert derived[0] == DTIParams(fit_method="OLS", median_radius=3, numpass=2,
                                   b0_threshold=20.0, bvec_tolerance=0.05)  # fmt: skip
    assert derived[1] == SliceSpec(axes=("coronal",), per_axis=4, size=32, voxel_size=2.0)
    assert derived[2] == AnatParams(
        equalize="global", trim_threshold=0.2, brain_mask="foreground", outside_brain="keep"
    )


def test_progress_follows_the_run_unless_the_section_sets_it() -> None:
    assert PrepareSection().step_config(progress=False).progress is False
    assert PrepareSection().step_config(progress=True).progress is True
    assert PrepareSection(progress=False).step_config(progress=True).progress is False


def test_slice_size_is_one_constraint() -> None:
    """``size`` was >= 8 in prepare and >= 2 in the slice store; now one rule for both."""
    for make in (lambda: PrepareConfig(size=7), lambda: SliceSpec(size=7)):
        with pytest.raises(ConfigError, match=r"^size: must be >= 8, got 7$"):
            make()
    assert PrepareConfig(size=8).slice_spec() == SliceSpec(size=8)
    with pytest.raises(ConfigError, match=r"^axes: must be distinct values"):
        PrepareConfig(axes=("axial", "axial"))  # refused up front, as the store would
    with pytest.raises(ConfigError, match=r"^axes: must be distinct values"):
        SliceSpec(axes=("axial", "axial"))


def test_anat_reads_bids_with_joblib_only() -> None:
    with pytest.raises(ConfigError, match="modality anat reads BIDS with joblib workers only"):
        PrepareConfig(modality="anat", manifest=Path("m.tsv"))
    with pytest.raises(ConfigError, match=r"^modality: must be one of dwi, anat, got 'pet'$"):
        PrepareConfig(modality="pet")


# --------------------------------------------------------------------------- bytes on disk
# Literal values computed with the dataclasses of commit 01b60fb (before this package).

PREPARE_DEFAULT = (
    '{"label": "group", "manifest": null, "participant_labels": null, "session": null, "run": '
    'null, "fit_method": "WLS", "median_radius": 2, "numpass": 1, "b0_threshold": 50.0, '
    '"bvec_tolerance": 0.01, "workers": 1, "dask_scheduler": null, "split_ratios": [0.75, 0.1, '
    '0.15], "seed": 0, "axes": ["axial", "coronal", "sagittal"], "slices_per_axis": 16, "size": '
    '224, "voxel_size": null, "mask_desc": "effect", "masks_dir": null, "force": false, '
    '"progress": true, "modality": "dwi", "equalize": "adaptive", "trim_threshold": 0.1, '
    '"missing_contrast": "error", "allow_missing_description": false, "brain_mask": "extract", '
    '"outside_brain": "zero"}'  # i12, then i18: appended last
)
ANAT_DEFAULT = (
    '{"n4": true, "n4_shrink": 4, "n4_iterations": [40, 30, 20], "n4_convergence": 0.001, '
    '"register": true, "init": "header", "histogram_bins": 32, "sampling": 0.2, '
    '"shrink_factors": [4, 2, 1], "smoothing_sigmas": [2.0, 1.0, 0.0], "iterations": 100, '
    '"learning_rate": 1.0, "min_step": 0.001, "seed": 0, "equalize": "adaptive", '
    '"equalize_bins": 256, "clip_limit": 0.01, "kernel_mm": null, "trim_axis": "axial", '
    '"trim_threshold": 0.1, "threads": null, "brain_mask": "extract", "outside_brain": "zero"}'
)


def test_parameter_dicts_keep_their_bytes() -> None:
    from braincam.modalities.anat.preprocess import params_dict

    assert json.dumps(PrepareConfig().to_dict()) == PREPARE_DEFAULT
    assert json.dumps(params_dict(AnatParams())) == ANAT_DEFAULT
    assert json.dumps(DTIParams(b0_threshold=50).model_dump()) == (
        '{"fit_method": "WLS", "median_radius": 2, "numpass": 1, "dilate": null, '
        '"b0_threshold": 50, "bvec_tolerance": 0.01}'
    )
    assert json.dumps(SliceSpec(axes="axial", voxel_size=2).to_dict()) == (
        '{"axes": ["axial"], "per_axis": 16, "size": 224, "voxel_size": 2, "step": 1, "order": 1}'
    )
    fit = PrepareConfig(fit_method="nls")
    assert fit.fit_method == "NLLS" and fit.to_dict()["fit_method"] == "NLLS"


def test_cache_keys_are_byte_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    import dipy
    import SimpleITK as sitk
    import skimage

    from braincam.modalities.anat import modality as cohort
    from braincam.modalities.dwi.dti import cache_key

    monkeypatch.setattr(dipy, "__version__", "0.0-test")
    monkeypatch.setattr(skimage, "__version__", "0.0-test")
    monkeypatch.setattr(sitk.Version, "VersionString", staticmethod(lambda: "0.0-test"))
    monkeypatch.setattr(cohort, "file_sha256", lambda p: "sha-" + Path(p).name)
    hashes = {"dwi": "a" * 64, "bval": "b" * 64, "bvec": "c" * 64}
    assert cache_key(hashes, DTIParams()) == (
        "da9191d41d34bfea736aebd037bc37ddea818bacbe8e663168caaec1a4afb3fe"
    )
    assert cache_key(hashes, DTIParams(fit_method="nls", b0_threshold=50, median_radius=4)) == (
        "46fec6b965a1c4073b9be1fc27bcc7804db5841b37bd5d8d394a575dec136c16"
    )
    record = cohort.AnatRecord(
        "sub-01", "rrms", Path("t1.nii.gz"), Path("t2.nii.gz"), Path("flair.nii.gz")
    )
    assert cohort.anat_cache_key(record, AnatParams()) == (
        "dc32137fac30c8671f45ea625ef274b0f5f5a878c9bbac906c0ec5dc97ccb841"
    )
    params = AnatParams(equalize="global", trim_threshold=0.2, threads=2)
    assert cohort.anat_cache_key(record, params) == (
        "215701836bdbf6f4cc86852f4195f4bb6a0885e425155b6e05450e612f3eb7f5"
    )
