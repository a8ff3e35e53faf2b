"""``explain`` and ``evaluate-cams`` on a volume store: heatmap volumes (arrays + NIfTI in the
subject's space), orthogonal-plane overlays, localization scored in 3-D against the masks."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braincam.config import CamEvalConfig, ExplainConfig
from braincam.data.volumes import VolumeStore
from braincam.figures import orthogonal_planes
from braincam.layout import RunLayout
from braincam.pipeline.evaluate_cams import evaluate_cams
from braincam.pipeline.explain import explain_run
from builders.volumes import SPEC

METHODS = ["cam", "gradcam"]


def test_explain_writes_map_volumes_and_nifti_in_the_subjects_space(
    volume_run: tuple[Path, Path],
) -> None:
    work, run = volume_run
    result = explain_run(run, ExplainConfig(methods=METHODS, split="test"), progress=False)
    store = VolumeStore.open(work / "volumes")
    table = result.slices()
    assert sorted(table["participant_id"]) == sorted(store.subjects("test"))
    assert "axis" not in table.columns
    layout = RunLayout(run).heatmaps("test")
    for method in METHODS:
        maps = result.maps(method)
        assert maps.shape == (len(table), *SPEC.shape) and maps.dtype == np.float32
        assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
        assert layout.overlay(method).is_file()
        for i, (pid, row) in enumerate(
            zip(table["participant_id"], table["store_row"], strict=True)
        ):
            img = nib.load(layout.nifti_map(pid, method))
            np.testing.assert_allclose(img.affine, store.affines[row])  # the subject's space
            np.testing.assert_array_equal(np.asarray(img.dataobj), maps[i])
    assert layout.meta.is_file()


def test_evaluate_cams_scores_the_volumes_in_3d(volume_run: tuple[Path, Path]) -> None:
    _, run = volume_run
    cfg = CamEvalConfig(methods=METHODS, split="test", regions=False)
    summary = evaluate_cams(run, cfg, progress=False)
    rows = summary["localization"]
    assert {r["level"] for r in rows} == {"volume"}
    assert {r["method"] for r in rows} == {*METHODS, "baseline:uniform", "baseline:random"}
    for key in ("perturbation", "faithfulness", "sanity", "shortcut", "consistency"):
        assert summary.get(key) is None  # 2-D families: not run on volumes
    assert summary.get("lesion_hits") is None  # the masks are effect spheres, not lesion masks
    assert summary["verdicts"]["cam"]["localizes"]["metric"].endswith("(volumes)")
    # The uniform baseline's relevance mass is the mask's share of the volume.
    store = VolumeStore.open(json.loads((run / "record.json").read_text())["store"])
    test_rows = store.rows(split="test")
    masks = np.asarray(store.masks[test_rows.index.to_numpy()]) > 0
    with_mask = masks.reshape(len(masks), -1).any(1)
    uniform = next(r for r in rows if r["method"] == "baseline:uniform")
    fraction = masks[with_mask].reshape(with_mask.sum(), -1).mean(1).mean()
    assert uniform["relevance_mass"] == pytest.approx(fraction, rel=1e-4)
    assert uniform["n_scored"] == int(with_mask.sum())
    tsv = (RunLayout(run).cam_eval("test").table("localization")).read_text()
    assert "volume" in tsv and "slice" not in tsv


def test_lesion_hit_rates_on_store_volumes(volume_run: tuple[Path, Path]) -> None:
    """Called directly (the masks here are not named lesion masks): on a volume store the 3-D
    lesions of each store volume, sized with the store's voxel size, at level ``volume``."""
    import torch

    from braincam.metrics.lesions import lesion_hits
    from braincam.pipeline.cam_context import load_context
    from braincam.pipeline.cam_lesions import has_lesion_masks, lesion_hit_rates

    _, run = volume_run
    cfg = CamEvalConfig(methods=METHODS, split="test", regions=False)
    ctx = load_context(run, cfg, progress=False)
    assert not has_lesion_masks(ctx)
    frame, section = lesion_hit_rates(ctx, cfg)
    assert set(section["levels"]) == {"volume"} and set(frame["level"]) == {"volume"}
    rows = ctx.table["store_row"].to_numpy()
    masks = torch.from_numpy(np.asarray(ctx.store.masks[rows]) > 0)
    has = masks.flatten(1).any(1)
    spacing = np.linalg.norm(ctx.store.affines[rows][:, :3, :3], axis=1)
    expected = lesion_hits(ctx.maps["cam"][has], masks[has], torch.from_numpy(spacing)[has])
    stored = section["levels"]["volume"]["cam"]["all"]
    assert stored["n_lesions"] == len(expected["hit"]) >= int(has.sum())  # ≥ one sphere each
    assert stored["n_hit"] == int(expected["hit"].sum())
    assert section["levels"]["volume"]["baseline:uniform"]["all"]["n_hit"] == 0


def test_orthogonal_planes_are_upright_views_of_a_ras_volume() -> None:
    vol = np.zeros((4, 5, 6))
    vol[3, 4, 5] = 1.0  # right, anterior, superior corner
    axial, coronal, sagittal = orthogonal_planes(vol, (3, 4, 5))
    assert axial.shape == (5, 4) and axial[0, -1] == 1  # anterior at the top, right at the right
    assert coronal.shape == (6, 4) and coronal[0, -1] == 1  # superior at the top
    assert sagittal.shape == (6, 5) and sagittal[0, -1] == 1  # anterior at the right
    vol2 = np.zeros((4, 5, 6))
    vol2[0, 0, 0] = 1.0  # left, posterior, inferior
    axial, coronal, sagittal = orthogonal_planes(vol2, (0, 0, 0))
    assert axial[-1, 0] == 1 and coronal[-1, 0] == 1 and sagittal[-1, 0] == 1
