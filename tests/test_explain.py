"""`braincam explain`: heatmaps aligned with the slice store, overlays, NIfTI back-projection."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from braincam.config import TrainConfig
from braincam.data.slices import SliceSource, SliceSpec, SliceStore, build_slice_store
from braincam.data.splits import make_splits, save_splits
from braincam.errors import InputError
from braincam.explain import ExplainConfig, explain_run, heatmap_dir
from braincam.train import fit, load_trained, normalize

SHAPE = (20, 22, 18)


def _subject(dir_: Path, pid: str, label: str, rng: np.random.Generator) -> SliceSource:
    """A small 'brain' ellipsoid; class b has a bright blob near the centre (its mask)."""
    i, j, k = np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij")
    brain = ((i - 10) / 8.0) ** 2 + ((j - 11) / 9.0) ** 2 + ((k - 9) / 7.0) ** 2 < 1
    data = brain * (0.3 + 0.05 * rng.standard_normal(SHAPE))
    blob = ((i - 12) ** 2 + (j - 9) ** 2 + (k - 10) ** 2) < 9
    if label == "b":
        data = data + 0.6 * blob
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img_path = dir_ / f"{pid}_fa.nii.gz"
    mask_path = dir_ / f"{pid}_mask.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), img_path)
    nib.save(nib.Nifti1Image((blob & (label == "b")).astype(np.uint8), affine), mask_path)
    return SliceSource(pid, label, [img_path], mask_path)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    sources = [_subject(root, f"sub-{i:02d}", "ab"[i % 2], rng) for i in range(10)]
    labels = pd.DataFrame(
        {"participant_id": [s.participant_id for s in sources], "label": [s.label for s in sources]}
    )
    splits = make_splits(labels, (0.6, 0.2, 0.2), seed=0)
    work = root / "work"
    save_splits(splits, work / "splits.tsv")
    build_slice_store(
        work / "slices", sources, splits, SliceSpec(per_axis=3, size=32), progress=False
    )
    cfg = TrainConfig(epochs=2, batch_size=8, seed=0, accelerator="cpu", devices=1)
    run = root / "run"
    fit(work, run, model="tinycnn-gap", config=cfg, progress=False)
    return work, run


def test_maps_align_with_store_rows(trained_run: tuple[Path, Path]) -> None:
    work, run = trained_run
    res = explain_run(run, ExplainConfig(methods=("cam", "gradcam"), overlays=4), progress=False)
    store = SliceStore.open(work / "slices")
    table = res.slices()
    test_rows = store.rows(split="test").index.to_numpy()
    assert table["store_row"].tolist() == test_rows.tolist()
    assert set(table["participant_id"]) == set(store.index.loc[test_rows, "participant_id"])

    # row i of the saved maps is exactly the map of store row table.store_row[i]
    from braincam.cam import compute_cams

    model, record = load_trained(run)
    i = len(table) // 2
    x = normalize(torch.from_numpy(np.array(store.images[[table["store_row"][i]]])), record)
    expected = compute_cams(model, x, "gradcam", targets=[int(table["explained"][i])])
    assert np.allclose(res.maps("gradcam")[i], expected[0].numpy(), atol=1e-5)
    maps = res.maps("cam")
    assert maps.shape == (len(table), 32, 32) and maps.min() >= 0 and maps.max() <= 1
    # predicted targets by default; probabilities are a distribution
    assert (table["explained"] == table["predicted"]).all()
    assert np.allclose(table[["p_a", "p_b"]].sum(axis=1), 1, atol=1e-5)
    assert (res.out_dir / "overlays" / "cam.png").stat().st_size > 1000


def test_nifti_backprojection_on_subject_grid(trained_run: tuple[Path, Path]) -> None:
    work, run = trained_run
    res = explain_run(run, ExplainConfig(methods=("gradcam",), overlays=0), progress=False)
    store = SliceStore.open(work / "slices")
    pid = res.slices()["participant_id"].iloc[0]
    img = nib.load(res.out_dir / "nifti" / f"{pid}_desc-gradcam_heatmap.nii.gz")
    src_affine, src_shape = store.grid(pid, "source")
    assert img.shape == tuple(src_shape) and np.allclose(img.affine, src_affine)
    data = img.get_fdata()
    assert np.isfinite(data).all() and data.max() > 0


def test_rerun_skips_and_target_change_recomputes(trained_run: tuple[Path, Path]) -> None:
    _, run = trained_run
    cfg = ExplainConfig(methods=("gradcam",), overlays=0, nifti=False)
    explain_run(run, cfg, progress=False)
    again = explain_run(run, cfg, progress=False)
    assert again.skipped == ["gradcam"] and again.computed == []
    true_cfg = ExplainConfig(methods=("gradcam",), overlays=0, nifti=False, target="true")
    res = explain_run(run, true_cfg, progress=False)
    assert res.computed == ["gradcam"]
    table = res.slices()
    assert (table["explained"] == table["target"]).all()
    assert (heatmap_dir(run, "test") / "meta.json").is_file()


def test_bad_method_and_target(trained_run: tuple[Path, Path]) -> None:
    _, run = trained_run
    with pytest.raises(InputError, match="unknown CAM method"):
        explain_run(run, ExplainConfig(methods=("nope",)), progress=False)
    with pytest.raises(InputError, match="class name"):
        explain_run(
            run, ExplainConfig(methods=("cam",), target="zebra", overlays=0), progress=False
        )
