"""`braincam explain`: heatmaps aligned with the slice store, overlays, NIfTI back-projection."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from braincam.data.normalization import zscore
from braincam.data.slices import SliceStore
from braincam.errors import InputError
from braincam.pipeline.explain import ExplainConfig, explain_run, heatmap_dir
from braincam.training.loading import load_trained


def test_maps_align_with_store_rows(tiny_run: tuple[Path, Path]) -> None:
    work, run = tiny_run
    res = explain_run(run, ExplainConfig(methods=("cam", "gradcam"), overlays=4), progress=False)
    store = SliceStore.open(work / "slices")
    table = res.slices()
    test_rows = store.rows(split="test").index.to_numpy()
    assert table["store_row"].tolist() == test_rows.tolist()
    assert set(table["participant_id"]) == set(store.index.loc[test_rows, "participant_id"])

    # row i of the saved maps is exactly the map of store row table.store_row[i], every row
    from braincam.cam import compute_cams

    model, record = load_trained(run)
    x = zscore(torch.from_numpy(np.array(store.images[table["store_row"].to_numpy()])), record)
    explained = table["explained"].astype(int).tolist()
    for method in ("cam", "gradcam"):
        expected = compute_cams(model, x, method, targets=explained)
        np.testing.assert_allclose(res.maps(method), expected.numpy(), atol=1e-5, err_msg=method)
        # and each map's range before scaling: the unscaled map's min and max
        raw = compute_cams(model, x, method, targets=explained, normalize=False)
        lo, hi = torch.aminmax(raw.flatten(1), dim=1)
        ranges = res.ranges(method)
        assert ranges is not None and ranges.shape == (len(table), 2)
        np.testing.assert_allclose(ranges, torch.stack([lo, hi], 1).numpy(), rtol=1e-5, atol=1e-7)
        assert (ranges[:, 1] > ranges[:, 0]).any() and len(set(ranges[:, 1].round(6))) > 1
    assert res.maps("cam").shape == (len(table), 32, 32)
    # predicted targets by default; the probabilities are the model's softmax
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1).numpy()
    np.testing.assert_allclose(table[["p_a", "p_b"]].to_numpy(), probs, atol=1e-5)
    assert table["predicted"].astype(int).tolist() == probs.argmax(1).tolist()
    assert (table["explained"] == table["predicted"]).all()
    assert (res.out_dir / "overlays" / "cam.png").stat().st_size > 1000


def test_nifti_backprojection_on_subject_grid(tiny_run: tuple[Path, Path]) -> None:
    work, run = tiny_run
    res = explain_run(run, ExplainConfig(methods=("gradcam",), overlays=0), progress=False)
    store = SliceStore.open(work / "slices")
    pid = res.slices()["participant_id"].iloc[0]
    img = nib.load(res.out_dir / "nifti" / f"{pid}_desc-gradcam_heatmap.nii.gz")
    src_affine, src_shape = store.grid(pid, "source")
    assert img.shape == tuple(src_shape) and np.allclose(img.affine, src_affine)
    data = img.get_fdata()
    # the subject's unscaled maps (saved map × (max − min) + min), back-projected through the
    # store's slice geometry, then scaled to [0, 1] once for the whole subject
    rows = res.slices()
    mine = rows.index[rows["participant_id"] == pid].to_numpy()
    lo, hi = res.ranges("gradcam")[mine].T
    unscaled = res.maps("gradcam")[mine] * (hi - lo)[:, None, None] + lo[:, None, None]
    covered = store.backproject(unscaled, pid, rows=rows["store_row"].to_numpy()[mine]).get_fdata()
    assert np.isnan(covered).any() and not np.isnan(covered).all()
    finite = covered[np.isfinite(covered)]
    expected = (covered - finite.min()) / (finite.max() - finite.min())
    # voxels no slice covers are 0 in the file (NaN in the back-projection), the rest its values
    np.testing.assert_allclose(data, np.nan_to_num(expected, nan=0.0), atol=1e-5)
    assert data.max() == pytest.approx(1.0) and data.min() == 0.0


def _two_slice_result(tmp_path: Path, ranges: np.ndarray | None) -> tuple[object, object]:
    """An explained subject of two 4×4 slices whose scaled maps both peak at 1, at different
    places, and a store that stacks its slices into a (2, 4, 4) volume."""
    import pandas as pd

    from braincam.pipeline.explain import ExplainResult

    out = tmp_path / "run" / "heatmaps" / "test"
    out.mkdir(parents=True)
    result = ExplainResult(out_dir=out, methods=["gradcam"])
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 1, 1] = 1.0  # the strong slice's peak
    maps[1, 2, 3] = 1.0  # the weak slice's peak
    maps[1, 0, 0] = 0.5
    np.save(result.layout.maps("gradcam"), maps)
    if ranges is not None:
        np.save(result.layout.ranges("gradcam"), ranges.astype(np.float32))
    table = pd.DataFrame({"participant_id": ["sub-01", "sub-01"], "store_row": [0, 1]})
    table.to_csv(result.layout.slices, sep="\t", index=False)

    class Store:
        def backproject(self, values, pid, rows):
            return nib.Nifti1Image(np.asarray(values, np.float32)[list(rows)], np.eye(4))

    return result, Store()


def test_a_subject_volume_keeps_each_slice_strength(tmp_path: Path) -> None:
    """Both slices' scaled maps peak at 1; unscaled, the first slice's evidence (up to 10) is ten
    times the second's (up to 1): the volume peaks in the first and the second's peak is 0.1."""
    from braincam.pipeline.explain import write_nifti

    result, store = _two_slice_result(tmp_path, np.array([[0.0, 10.0], [0.0, 1.0]]))
    (path,) = write_nifti(result, store, ["gradcam"])
    data = nib.load(path).get_fdata()
    assert np.unravel_index(data.argmax(), data.shape) == (0, 1, 1)
    assert data[0, 1, 1] == pytest.approx(1.0)
    assert data[1, 2, 3] == pytest.approx(0.1) and data[1, 0, 0] == pytest.approx(0.05)
    assert data.min() == 0.0


def test_a_slice_offset_shifts_the_volume_and_no_ranges_keeps_the_maps(tmp_path: Path) -> None:
    """min is added back (a slice whose map spans 2..4), and maps written without ranges are
    back-projected as they are (scaled once, which changes nothing for values in [0, 1])."""
    from braincam.pipeline.explain import write_nifti

    result, store = _two_slice_result(tmp_path / "a", np.array([[0.0, 4.0], [2.0, 4.0]]))
    (path,) = write_nifti(result, store, ["gradcam"])
    data = nib.load(path).get_fdata()
    # unscaled: slice 0 in {0, 4}, slice 1 in {2, 3, 4}; scaled by the subject's 0..4
    assert data[0, 1, 1] == pytest.approx(1.0) and data[0, 0, 0] == pytest.approx(0.0)
    assert data[1, 2, 3] == pytest.approx(1.0) and data[1, 0, 0] == pytest.approx(0.75)
    assert data[1, 1, 1] == pytest.approx(0.5)
    result, store = _two_slice_result(tmp_path / "b", None)
    (path,) = write_nifti(result, store, ["gradcam"])
    np.testing.assert_allclose(nib.load(path).get_fdata(), np.load(result.layout.maps("gradcam")))


def test_rerun_skips_and_target_change_recomputes(tiny_run: tuple[Path, Path]) -> None:
    _, run = tiny_run
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


def test_retrained_weights_make_saved_maps_stale(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    from braincam.layout import RunLayout

    _, original = tiny_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    cfg = ExplainConfig(methods=("gradcam",), overlays=0, nifti=False)
    first = explain_run(run, cfg, progress=False)
    before = np.array(first.maps("gradcam"))
    # "retrain": same run directory, same settings, other weights
    path = RunLayout(run).model
    saved = torch.load(path, weights_only=True)
    g = torch.Generator().manual_seed(1)
    saved["state_dict"] = {
        k: v + 0.5 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in saved["state_dict"].items()
    }
    torch.save(saved, path)
    again = explain_run(run, cfg, progress=False)
    assert again.computed == ["gradcam"] and again.skipped == []
    assert not np.allclose(np.array(again.maps("gradcam")), before)


def test_bad_method_and_target(tiny_run: tuple[Path, Path]) -> None:
    _, run = tiny_run
    with pytest.raises(InputError, match="unknown CAM method"):
        explain_run(run, ExplainConfig(methods=("nope",)), progress=False)
    with pytest.raises(InputError, match="class name"):
        explain_run(
            run, ExplainConfig(methods=("cam",), target="zebra", overlays=0), progress=False
        )


def test_per_subject_outputs_stay_inside_the_heatmap_folder(tmp_path: Path) -> None:
    """A participant ID from a hand-edited slices.tsv cannot steer a NIfTI outside RUN."""
    import pandas as pd

    from braincam.pipeline.explain import ExplainResult, write_nifti

    out = tmp_path / "run" / "heatmaps" / "test"
    out.mkdir(parents=True)
    result = ExplainResult(out_dir=out, methods=["gradcam"])
    np.save(result.layout.maps("gradcam"), np.zeros((1, 4, 4), np.float32))
    table = pd.DataFrame({"participant_id": ["../../../escaped"], "store_row": [0]})
    table.to_csv(result.layout.slices, sep="\t", index=False)

    class Store:
        def backproject(self, maps, pid, rows):
            return nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))

    with pytest.raises(InputError, match="outside its folder"):
        write_nifti(result, Store(), ["gradcam"])
    assert not list(tmp_path.rglob("*escaped*"))


def test_several_layers_give_the_fused_maps_and_evaluate_cams_keeps_them(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """A layer list reaches the maps (fused, as compute_cams fuses them), changes the
    fingerprint, and evaluate-cams evaluates those maps instead of recomputing default ones."""
    import shutil

    from braincam.cam import compute_cams
    from braincam.pipeline.evaluate_cams import CamEvalConfig, evaluate_cams

    work, original = tiny_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    layers = ("backbone.features.1", "head.conv")
    cfg = ExplainConfig(methods=("gradcam",), layer=layers, fusion="mean", overlays=0, nifti=False)
    res = explain_run(run, cfg, progress=False)
    model, record = load_trained(run)
    store = SliceStore.open(work / "slices")
    table = res.slices()
    x = zscore(torch.from_numpy(np.array(store.images[table["store_row"].to_numpy()])), record)
    targets = table["explained"].astype(int).tolist()
    fused = compute_cams(model, x, "gradcam", targets=targets, layer=list(layers), fusion="mean")
    np.testing.assert_allclose(res.maps("gradcam"), fused.numpy(), atol=1e-5)
    default = compute_cams(model, x, "gradcam", targets=targets)
    assert np.abs(res.maps("gradcam") - default.numpy()).max() > 0.05  # not the default layer's

    # evaluate-cams with the same layers reuses them; its sanity check explains those layers too
    settings = CamEvalConfig(
        methods=("gradcam",), layer=layers, fusion="mean", regions=False, max_images=4,
        sanity_images=2, n_random=20, deletion_steps=2,
    )  # fmt: skip
    assert settings.explain_config().fingerprint() == cfg.fingerprint()
    # The copy shares the session's WORK, whose summary.json keys heatmap evaluations by run
    # name ("run" for both): put it back afterwards, or tests that read the original run's
    # evaluation from disk see this one's (found by a random test order in CI).
    work_summary = work / "summary.json"
    before = work_summary.read_bytes() if work_summary.exists() else None
    try:
        evaluate_cams(run, settings, progress=False)
    finally:
        if before is None:
            work_summary.unlink(missing_ok=True)
        else:
            work_summary.write_bytes(before)
    np.testing.assert_allclose(
        explain_run(run, cfg, progress=False).maps("gradcam"), fused.numpy(), atol=1e-5
    )
    # and the fusion rule is part of what makes maps the same
    other = ExplainConfig(methods=("gradcam",), layer=layers, fusion="layercam")
    assert other.fingerprint() != cfg.fingerprint()
