"""Whole pipelines from a config, as a user runs them (slow tier; CI runs it too)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from braincam.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.slow
def test_structural_study_fast_variant_end_to_end(tmp_path: Path) -> None:
    """synth (T1w/T2w/FLAIR) → N4/registration/equalization → 3-channel slices → CNN → CAMs →
    lesion localization and regions → report."""
    from braincam.pipeline.run import run_experiment

    cfg = load_config(CONFIGS / "ms-subtypes-fast-cpu.yaml")
    result = run_experiment(cfg, out=tmp_path / "out", progress=False)
    out = Path(result["out"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prepare"]["classes"] == ["control", "rrms", "spms"]
    registration = summary["prepare"]["registration"]
    assert registration  # per-subject and median errors against the recorded transforms
    run = result["runs"][0]
    cams = summary["cam_evaluation"][run.name]
    loc = pd.read_csv(run / "cam_eval" / "test" / "localization.tsv", sep="\t")
    # lesion masks exist for the MS groups: the metrics were scored against them
    assert (loc["n_scored"] > 0).any()
    assert {"baseline:uniform", "baseline:random"} <= set(loc["method"])
    assert set(cams["sanity"]) == {"cam", "gradcam", "gradcampp"}
    lobes = pd.read_csv(run / "cam_eval" / "test" / "lobe_ranking.tsv", sep="\t")
    assert set(lobes["label"]) <= {"control", "rrms", "spms"} and len(lobes) > 0
    html = (out / "report.html").read_text()
    assert 'id="regions"' in html and "rrms" in html
