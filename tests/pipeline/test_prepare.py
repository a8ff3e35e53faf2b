"""`prepare` end to end on tiny datasets: bad inputs, outputs, cache/resume, workers, Dask, CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from braincam.cli import app
from braincam.errors import InputError
from braincam.modalities.dwi.dti import derivative_paths
from braincam.pipeline.prepare import PrepareConfig, prepare
from builders.dwi import AFFINE, SHAPE, gradient_scheme, make_bids, write_dwi

GOOD = {f"sub-0{i}": ("young" if i % 2 else "old") for i in range(1, 7)}
BAD = "sub-07"
CFG = dict(label="group", size=16, slices_per_axis=2, progress=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six good subjects (3 per class) + sub-07, with ground-truth masks."""
    return make_bids(
        tmp_path_factory.mktemp("tpl") / "bids", {**GOOD, BAD: "young"}, with_masks=True
    )


@pytest.fixture
def dataset(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "bids"))


def _participants(root: Path, rows: list[tuple[str, str]]) -> Path:
    path = root / "participants.tsv"
    pd.DataFrame(rows, columns=["participant_id", "group"]).to_csv(path, sep="\t", index=False)
    return path


def _dwi(root: Path) -> Path:
    return root / BAD / "dwi" / f"{BAD}_dwi.nii.gz"


def _unreadable(root: Path) -> tuple[Path, list[str]]:
    _dwi(root).write_bytes(b"garbage, not a NIfTI")
    return _dwi(root), ["unreadable NIfTI", "value="]


def _truncated(root: Path) -> tuple[Path, list[str]]:
    raw = _dwi(root).read_bytes()
    _dwi(root).write_bytes(raw[: len(raw) // 2])
    return _dwi(root), ["truncated", "value="]


def _not_4d(root: Path) -> tuple[Path, list[str]]:
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE), _dwi(root))
    return _dwi(root), ["4D", f"value={SHAPE!r}"]


def _bval_missing(root: Path) -> tuple[Path, list[str]]:
    p = _dwi(root).with_name(f"{BAD}_dwi.bval")
    p.unlink()
    return p, ["bval file missing"]


def _bval_count(root: Path) -> tuple[Path, list[str]]:
    p = _dwi(root).with_name(f"{BAD}_dwi.bval")
    np.savetxt(p, gradient_scheme()[0][None, :10], fmt="%g")
    return p, ["bval count", "value=10"]


def _bvec_count(root: Path) -> tuple[Path, list[str]]:
    p = _dwi(root).with_name(f"{BAD}_dwi.bvec")
    np.savetxt(p, gradient_scheme()[1][:12].T, fmt="%.8f")
    return p, ["bvec table", "value=(3, 12)"]


def _no_b0(root: Path) -> tuple[Path, list[str]]:
    p = _dwi(root).with_name(f"{BAD}_dwi.bval")
    bvals = gradient_scheme()[0]
    np.savetxt(p, np.where(bvals == 0, 500.0, bvals)[None], fmt="%g")
    return p, ["no b=0", "value=500.0"]


def _nan(root: Path) -> tuple[Path, list[str]]:
    img = nib.load(_dwi(root))
    data = img.get_fdata().astype(np.float32)
    data[3, 3, 3, :3] = np.nan  # 3 values, 1 voxel
    data[4, 4, 4, 5] = np.inf  # 1 value, 1 voxel: 2 voxels in all (docs: a count of voxels)
    nib.save(nib.Nifti1Image(data, img.affine), _dwi(root))
    return _dwi(root), ["NaN/Inf", "voxels", "value=2"]


def _bvec_not_unit(root: Path) -> tuple[Path, list[str]]:
    p = _dwi(root).with_name(f"{BAD}_dwi.bvec")
    bvecs = gradient_scheme()[1]
    bvecs[7] *= 0.5
    np.savetxt(p, bvecs.T, fmt="%.8f")
    return p, ["not unit length", "value=0.5"]


def _missing_label(root: Path) -> tuple[Path, list[str]]:
    p = _participants(root, [*GOOD.items(), (BAD, "")])
    return p, ["missing label"]


def _duplicate(root: Path) -> tuple[Path, list[str]]:
    p = _participants(root, [*GOOD.items(), (BAD, "young"), (BAD, "old")])
    return p, ["duplicate subject", "value=2"]


def _label_without_data(root: Path) -> tuple[Path, list[str]]:
    shutil.rmtree(root / BAD)
    return root / "participants.tsv", ["label given for a subject without DWI data"]


def _data_without_label(root: Path) -> tuple[Path, list[str]]:
    _participants(root, list(GOOD.items()))
    return _dwi(root), ["DWI data without a label", "value='group'"]


BAD_INPUTS: dict[str, Callable[[Path], tuple[Path, list[str]]]] = {
    "unreadable": _unreadable,
    "truncated": _truncated,
    "not-4d": _not_4d,
    "bval-missing": _bval_missing,
    "bval-count": _bval_count,
    "bvec-count": _bvec_count,
    "no-b0": _no_b0,
    "nan": _nan,
    "bvec-not-unit": _bvec_not_unit,
    "missing-label": _missing_label,
    "duplicate": _duplicate,
    "label-without-data": _label_without_data,
    "data-without-label": _data_without_label,
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_fails_its_subject_and_the_others_finish(
    dataset: Path, tmp_path: Path, kind: str
) -> None:
    path, needles = BAD_INPUTS[kind](dataset)
    work = tmp_path / "work"
    result = prepare(dataset, work, PrepareConfig(**CFG))
    assert not result.ok
    bad = [f for f in result.failures if f.participant_id == BAD]
    assert len(bad) == 1, result.failures
    f = bad[0]
    assert f.file == str(path)
    assert f"subject={BAD}" in f.error and f"file={path}" in f.error
    for needle in needles:
        assert needle in f.error, f.error
    assert sorted(result.completed) == sorted(GOOD)
    for pid in GOOD:
        assert derivative_paths(work, pid).fa.is_file()
    splits = pd.read_csv(work / "splits.tsv", sep="\t")
    assert sorted(splits["participant_id"]) == sorted(GOOD)
    table = pd.read_csv(work / "failures.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == ["participant_id", "step", "file", "error"]
    assert table["participant_id"].tolist() == [BAD]
    summary = json.loads((work / "summary.json").read_text())["prepare"]
    assert summary["failures"][0]["participant_id"] == BAD
    assert summary["n_subjects"]["failed"] == 1


def test_cli_prints_failure_table_and_exits_nonzero(dataset: Path, tmp_path: Path) -> None:
    _bval_missing(dataset)
    args = [
        "prepare",
        str(dataset),
        str(tmp_path / "w"),
        "--label",
        "group",
        "--size",
        "16",
        "--slices-per-axis",
        "2",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    out = result.output + (getattr(result, "stderr", "") or "")
    assert result.exit_code == 1, out
    assert "Failures (1)" in out and BAD in out and "bval file missing" in out
    assert "sub-01" in out  # the ground-truth mask table lists good subjects
    assert "6 computed" in out


def test_single_class_stops_before_any_fit(dataset: Path, tmp_path: Path) -> None:
    _participants(dataset, [(p, "young") for p in [*GOOD, BAD]])
    with pytest.raises(InputError, match="same label") as info:
        prepare(dataset, tmp_path / "w", PrepareConfig(**CFG))
    assert "'group'" in str(info.value) and "participants.tsv" in str(info.value)
    assert not (tmp_path / "w").exists()  # checked before WORK is created or any DTI fit


def test_single_class_left_after_failures_fails_the_split(dataset: Path, tmp_path: Path) -> None:
    assert prepare(dataset, tmp_path / "w", PrepareConfig(**CFG)).ok
    assert (tmp_path / "w" / "slices").is_dir()
    # Only "old" subjects break in the worker (truncated data): one class is left after the fits.
    for pid, label in GOOD.items():
        if label == "old":
            dwi = dataset / pid / "dwi" / f"{pid}_dwi.nii.gz"
            dwi.write_bytes(dwi.read_bytes()[: dwi.stat().st_size // 2])
    result = prepare(dataset, tmp_path / "w", PrepareConfig(**CFG))
    assert not result.ok
    split = [f for f in result.failures if f.step == "split"]
    assert len(split) == 1 and "same label" in split[0].error and split[0].participant_id == "*"
    assert result.splits is None and not (tmp_path / "w" / "splits.tsv").exists()
    assert not (tmp_path / "w" / "slices").exists()  # stale outputs of the earlier run removed


def test_outputs_summary_splits_and_mask_counts(dataset: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    result = prepare(dataset, work, PrepareConfig(**CFG, seed=3))
    assert result.ok, result.failures
    assert (work / "derivatives/braincam/dataset_description.json").is_file()
    splits = pd.read_csv(work / "splits.tsv", sep="\t")
    assert not splits["participant_id"].duplicated().any()
    index = pd.read_csv(work / "slices" / "index.tsv", sep="\t")
    split_of = dict(zip(splits["participant_id"], splits["split"], strict=True))
    assert (index["split"] == index["participant_id"].map(split_of)).all()
    assert index.groupby("participant_id").size().eq(2 * 3).all()  # 2 per axis × 3 axes
    summary = json.loads((work / "summary.json").read_text())["prepare"]
    assert summary["subjects"] == sorted([*GOOD, BAD])
    assert summary["classes"] == ["old", "young"]
    assert summary["label_column"] == "group"
    for split, members in summary["splits"].items():
        assert members == sorted(splits.loc[splits["split"] == split, "participant_id"])
        assert summary["slices_per_split"].get(split, 0) == int((index["split"] == split).sum())
    # Every subject has a mask; the count is that of slices with mask pixels in the store.
    hits = index[index["mask_pixels"] > 0].groupby("participant_id").size()
    assert summary["mask_slices"] == {p: int(hits.get(p, 0)) for p in sorted([*GOOD, BAD])}
    assert sum(summary["mask_slices"].values()) > 0
    assert summary["slice_store"]["n_slices"] == len(index)
    assert summary["parameters"]["fit_method"] == "WLS" and summary["parameters"]["seed"] == 3
    assert summary["versions"]["dipy"] != "absent"
    row = summary["participants"][0]
    assert row["status"] == "computed" and row["split"] == split_of[row["participant_id"]]
    assert pd.read_csv(work / "failures.tsv", sep="\t").empty
    # dMRI too: the brain masks of the DTI fit are in the store, zero FA outside them
    from braincam.data.slices import SliceStore

    store = SliceStore.open(work / "slices")
    brain = np.asarray(store.brain) > 0
    assert 0.05 < brain.mean() < 0.95
    fa = np.asarray(store.images)[:, 0]
    # (linear interpolation of FA against nearest-neighbour masks blurs the edge a little)
    assert (fa[~brain] == 0).mean() > 0.85 and (fa[brain] > 0).mean() > 0.9


def test_store_slices_are_the_fa_map_of_a_known_tensor(tmp_path: Path) -> None:
    """Noise-free DWI of one known tensor: the stored slices hold its FA (by the formula), i.e.
    the slices of the FA derivative, never the MD map (≈ 1e-3 mm²/s) or anything else."""
    from builders.dwi import EVALS

    ev = np.asarray(EVALS)
    fa_true = np.sqrt(1.5 * np.sum((ev - ev.mean()) ** 2) / np.sum(ev**2))
    assert fa_true == pytest.approx(0.7990, abs=1e-4)  # 1.5·1.3067/3.07, square root
    bids = make_bids(tmp_path / "bids", GOOD, noise=0.0)
    work = tmp_path / "w"
    result = prepare(bids, work, PrepareConfig(**CFG, seed=0))
    assert result.ok, result.failures
    _assert_fa_store(work, fa_true)
    # again from the cached derivatives (the store rebuilt, no subject refitted)
    shutil.rmtree(work / "slices")
    again = prepare(bids, work, PrepareConfig(**CFG, seed=0))
    assert again.ok and {o.status for o in again.outcomes} == {"skipped"}
    _assert_fa_store(work, fa_true)


def _assert_fa_store(work: Path, fa_true: float) -> None:
    from braincam.data.slices import SliceSpec, SliceStore
    from braincam.data.slicing import extract_slices

    store = SliceStore.open(work / "slices")
    assert sorted(store.subjects()) == sorted(GOOD)
    for pid in GOOD:
        rows = store.rows(participant_id=pid).index.to_numpy()
        images = np.asarray(store.images[rows])
        # inside the ball every pixel is the tensor's FA; outside it is 0 (isotropic background)
        assert images.max() == pytest.approx(fa_true, abs=1e-3)
        assert np.isclose(images, fa_true, atol=1e-3).sum() >= 20 * len(rows)
        assert images.min() == pytest.approx(0.0, abs=1e-6)
        fa = nib.load(derivative_paths(work, pid).fa)
        spec = SliceSpec(per_axis=CFG["slices_per_axis"], size=CFG["size"])
        np.testing.assert_allclose(images, extract_slices([fa], spec).images, atol=1e-6)


def test_rerun_skips_and_parameter_change_recomputes(dataset: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    first = prepare(dataset, work, PrepareConfig(**CFG))
    assert {o.status for o in first.outcomes} == {"computed"}
    fa = derivative_paths(work, "sub-01").fa
    mtime = fa.stat().st_mtime_ns
    again = prepare(dataset, work, PrepareConfig(**CFG))
    assert {o.status for o in again.outcomes} == {"skipped"}
    assert fa.stat().st_mtime_ns == mtime
    assert again.summary["n_subjects"]["skipped"] == 7
    changed = prepare(dataset, work, PrepareConfig(**CFG, fit_method="OLS"))
    assert {o.status for o in changed.outcomes} == {"computed"}
    assert fa.stat().st_mtime_ns != mtime
    assert (
        json.loads(fa.with_name(fa.name.replace(".nii.gz", ".json")).read_text())["FitMethod"]
        == "OLS"
    )


_RUNNER = """
import sys
from braincam.pipeline.prepare import PrepareConfig, prepare
r = prepare(sys.argv[1], sys.argv[2], PrepareConfig(label="group", size=16, slices_per_axis=2,
            progress=False))
print("OK" if r.ok else "FAIL")
"""


@pytest.mark.slow
def test_kill_midway_then_resume_without_redoing(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    labels = {"sub-01": "young", "sub-02": "old", "sub-03": "young", "sub-04": "old"}
    make_bids(root, labels)
    for i, pid in enumerate(labels):  # bigger volumes: ~1 s of WLS per subject
        write_dwi(root / pid / "dwi", f"{pid}_dwi", seed=i, shape=(40, 40, 30), n_dirs=30)
    work = tmp_path / "w"
    first_fa = derivative_paths(work, "sub-01").fa
    last_fa = derivative_paths(work, "sub-04").fa
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, str(root), str(work)])
    try:
        deadline = time.monotonic() + 120
        while not first_fa.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert first_fa.exists(), "the first subject never finished"
    assert not last_fa.exists(), "the run finished before it could be killed"
    mtime = first_fa.stat().st_mtime_ns

    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(root), str(work)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "OK" in done.stdout, done.stderr
    summary = json.loads((work / "summary.json").read_text())["prepare"]
    status = {p["participant_id"]: p["status"] for p in summary["participants"]}
    assert status["sub-01"] == "skipped" and status["sub-04"] == "computed"
    assert first_fa.stat().st_mtime_ns == mtime
    leftovers = [p for p in work.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    assert leftovers == []
    for pid in labels:  # every output is a complete, readable image
        assert np.isfinite(nib.load(derivative_paths(work, pid).fa).get_fdata()).all()


def _fa_arrays(work: Path) -> dict[str, np.ndarray]:
    return {p: nib.load(derivative_paths(work, p).fa).get_fdata() for p in [*GOOD, BAD]}


@pytest.mark.slow
def test_workers_2_gives_the_same_outputs_as_1(dataset: Path, tmp_path: Path) -> None:
    one = prepare(dataset, tmp_path / "w1", PrepareConfig(**CFG, workers=1))
    two = prepare(dataset, tmp_path / "w2", PrepareConfig(**CFG, workers=2))
    assert one.ok and two.ok
    fa1, fa2 = _fa_arrays(tmp_path / "w1"), _fa_arrays(tmp_path / "w2")
    for pid in fa1:
        np.testing.assert_array_equal(fa1[pid], fa2[pid])
    pd.testing.assert_frame_equal(one.splits, two.splits)
    np.testing.assert_array_equal(
        np.load(tmp_path / "w1/slices/images.npy"), np.load(tmp_path / "w2/slices/images.npy")
    )


@pytest.mark.slow
def test_dask_local_cluster(dataset: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    serial = prepare(dataset, tmp_path / "w1", PrepareConfig(**CFG))
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        result = prepare(dataset, tmp_path / "wd", PrepareConfig(**CFG, dask_scheduler=address))
    assert result.ok and serial.ok
    fa1, fad = _fa_arrays(tmp_path / "w1"), _fa_arrays(tmp_path / "wd")
    for pid in fa1:
        np.testing.assert_array_equal(fa1[pid], fad[pid])
    assert result.summary["parameters"]["dask_scheduler"] == address


def test_unreachable_dask_scheduler_is_a_config_error(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import braincam.cohort.runner
    from braincam.errors import ConfigError

    monkeypatch.setattr(braincam.cohort.runner, "DASK_CONNECT_TIMEOUT", "1s")

    with pytest.raises(ConfigError, match=r"tcp://127\.0\.0\.1:9"):
        prepare(dataset, tmp_path / "w", PrepareConfig(**CFG, dask_scheduler="tcp://127.0.0.1:9"))


def test_manifest_prepare(tmp_path: Path) -> None:
    rows = []
    for i, (pid, label) in enumerate(GOOD.items()):
        paths = write_dwi(tmp_path / "data" / pid, "dwi", seed=i)
        rows.append(
            {
                "participant_id": pid,
                "label": label,
                **{k: str(v.relative_to(tmp_path / "data")) for k, v in paths.items()},
            }
        )
    manifest = tmp_path / "m.tsv"
    pd.DataFrame(rows).to_csv(manifest, sep="\t", index=False)
    cfg = PrepareConfig(**{**CFG, "label": "label"}, manifest=manifest)
    result = prepare(tmp_path / "data", tmp_path / "w", cfg)
    assert result.ok, result.failures
    assert sorted(result.completed) == sorted(GOOD)
    assert result.summary["source"]["type"] == "manifest"


def test_bad_config_values() -> None:
    from braincam.errors import ConfigError

    with pytest.raises(ConfigError, match="axes"):
        PrepareConfig(axes=("diagonal",))
    with pytest.raises(ConfigError, match="sum to 1"):
        PrepareConfig(split_ratios=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="workers"):
        PrepareConfig(workers=0)


@pytest.mark.filterwarnings("ignore:class .* has only:UserWarning")
def test_cli_participant_label_and_options(dataset: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    args = [
        "prepare",
        str(dataset),
        str(work),
        "--label",
        "group",
        "--size",
        "16",
        "--slices-per-axis",
        "1",
        "--axes",
        "axial,coronal",
        "--no-progress",
        "--participant-label",
        "01",
        "--participant-label",
        "sub-02",
        "--participant-label",
        "03",
        "--fit-method",
        "ols",
        "--split-ratios",
        "0.6,0.2,0.2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((work / "summary.json").read_text())["prepare"]
    assert summary["subjects"] == ["sub-01", "sub-02", "sub-03"]
    assert summary["parameters"]["fit_method"] == "OLS"
    assert summary["parameters"]["split_ratios"] == [0.6, 0.2, 0.2]
    index = pd.read_csv(work / "slices" / "index.tsv", sep="\t")
    assert sorted(index["axis"].unique()) == ["axial", "coronal"] and len(index) == 3 * 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:class .* has only")  # 2 subjects per class: tiny splits
def test_prepare_anat_end_to_end(tmp_path: Path) -> None:
    """6 subjects → N4/registration/equalization → 3-channel slice store + registration summary."""
    from braincam.data.slices import SliceStore
    from braincam.synth import anat as sa
    from braincam.synth.anatomy import load_template

    template = load_template(4.0)
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
    # brain extraction by default: recorded per subject, and its masks sliced into the store
    for entry in reg["subjects"].values():
        assert entry["brain_mask"]["method"].startswith("mni152-affine")
        assert 0.5 < entry["brain_mask"]["quality"] <= 1.0
    assert store.brain is not None and 0.05 < float(np.mean(store.brain)) < 0.95
    for moving in ("T2w", "FLAIR"):
        assert reg["median_error"][moving]["subjects"] == 6
        assert reg["median_error"][moving]["rotation_deg"] < 1.0
        assert reg["median_error"][moving]["translation_mm"] < 1.0
    again = prepare(bids, tmp_path / "work", pconf.replace(workers=1))
    assert again.summary["n_subjects"]["skipped"] == 6
