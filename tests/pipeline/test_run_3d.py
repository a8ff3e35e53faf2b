"""``braincam run`` end to end on volumes (issue 15): the 3-D config, shrunk to a tiny cohort."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braincam.config import load_config, override

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.slow
@pytest.mark.parametrize("space", ["native", "mni"])
def test_fast_cpu_3d_config_end_to_end_on_a_tiny_cohort(tmp_path: Path, space: str) -> None:
    """synth (random WM sphere) → DTI → volume store (each subject's brain box, or one MNI grid
    through the cohort's known maps) → priorcnn3d-gap → 3-D CAMs scored against the masks →
    regions in MNI → report with orthogonal planes."""
    from braincam.data.volumes import template_grid
    from braincam.pipeline.run import run_experiment

    cfg = override(
        load_config(CONFIGS / "fast-cpu-3d.yaml"),
        {
            "synth.subjects": 8, "synth.voxel_size": 5.0, "synth.directions": 6,
            "prepare.volume_shape": [16, 20, 16], "prepare.volume_spacing": 8.0,
            "prepare.split_ratios": [0.5, 0.25, 0.25], "train.epochs": 2,
            "prepare.volume_space": space,
        },
    )  # fmt: skip
    result = run_experiment(cfg, out=tmp_path / "out", progress=False)
    out = Path(result["out"])
    assert (out / "volumes" / "meta.json").is_file() and not (out / "slices").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prepare"]["volume_store"]["n_volumes"] == 8
    (run,) = result["runs"]
    assert run.name == "priorcnn3d-gap"
    test = summary["evaluation"][run.name]["test"]
    assert test["subjects"] == test["slices"] == 2  # one volume per subject
    heatmaps = run / "heatmaps" / "test"
    maps = np.load(heatmaps / "gradcam.npy")
    assert maps.shape == (2, 16, 20, 16)
    pid = pd.read_csv(heatmaps / "slices.tsv", sep="\t")["participant_id"].iloc[0]
    img = nib.load(heatmaps / "nifti" / f"{pid}_desc-gradcam_heatmap.nii.gz")
    assert img.shape == (16, 20, 16) and np.allclose(np.abs(np.diag(img.affine))[:3], 8.0)
    meta = json.loads((out / "volumes" / "meta.json").read_text())
    mni_affine = template_grid(cfg.prepare.volume_spec())[0]
    means = sorted((run / "cam_eval" / "test").glob("mni_mean_gradcam_*.nii.gz"))
    assert means  # the mean map per class in MNI, for the report
    if space == "mni":
        assert meta["space"] == "MNI152NLin2009cAsym"
        assert {s["transform"] for s in meta["subjects"].values()} == {"known"}
        np.testing.assert_allclose(img.affine, mni_affine)  # the heatmaps are MNI images
        # regions read the MNI maps as they are: the class means keep the store's grid
        np.testing.assert_allclose(nib.load(means[0]).affine, mni_affine)
    else:
        assert meta["space"] == "native"
        assert not np.allclose(img.affine, mni_affine)
        assert nib.load(means[0]).shape != (16, 20, 16)  # warped onto the coordinate map's grid
    loc = pd.read_csv(run / "cam_eval" / "test" / "localization.tsv", sep="\t")
    assert set(loc["level"]) == {"volume"}
    assert {"cam", "gradcam", "gradcampp", "baseline:uniform"} <= set(loc["method"])
    lobes = pd.read_csv(run / "cam_eval" / "test" / "lobe_ranking.tsv", sep="\t")
    assert len(lobes) > 0  # regions and lobes in MNI through the synthetic coordinate maps
    html = (out / "report.html").read_text()
    assert "orthogonal planes of test volumes" in html and 'id="regions"' in html
    assert "Example volumes (channel 0)" in html
    from braincam.report.audit import audit_report
    from braincam.summary_schema import validate_summary

    validate_summary(summary)
    assert audit_report(html, summary) == []
