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
    # every section of a full run matches the schema, and the report states what the data hold
    from braincam.report.audit import audit_report
    from braincam.summary_schema import validate_summary

    parsed = validate_summary(summary)
    assert parsed.prepare and parsed.training and parsed.evaluation and parsed.comparison
    assert audit_report(html, summary) == []


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
    assert config.synth is not None and config.synth.kind == "anat"
    assert config.train.augment.affine.p > 0
    assert config.cams.methods == ["gradcam", "gradcampp"] and config.cams.regions
