"""`evaluate-cams` end to end on the tiny trained run: every family writes its tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braincam.data.slices import SliceStore
from braincam.pipeline.evaluate_cams import CamEvalConfig, eval_dir, evaluate_cams


@pytest.fixture(scope="module")
def evaluated(tiny_run: tuple[Path, Path]) -> tuple[Path, Path, dict]:
    work, run = tiny_run
    cfg = CamEvalConfig(
        methods=("cam", "gradcam"),
        regions=False,
        max_images=None,
        sanity_images=4,
        deletion_steps=5,
    )
    return work, run, evaluate_cams(run, cfg, progress=False)


def _tsv(run: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(eval_dir(run, "test") / f"{name}.tsv", sep="\t")


def test_localization_rows_and_uniform_baseline(evaluated) -> None:
    work, run, _ = evaluated
    loc = _tsv(run, "localization")
    slice_rows = loc[loc["level"] == "slice"]
    assert set(slice_rows["method"]) == {"cam", "gradcam", "baseline:uniform", "baseline:random"}
    assert set(loc["level"]) == {"slice", "volume"}
    # a uniform map puts on the mask exactly the mask's share of the slice
    store = SliceStore.open(work / "slices")
    rows = store.rows(split="test").index.to_numpy()
    masks = np.asarray(store.masks[rows]) > 0
    masks = masks[masks.reshape(len(masks), -1).any(1)]
    expected = masks.reshape(len(masks), -1).mean(1).mean()
    uniform = slice_rows.set_index("method").loc["baseline:uniform"]
    assert uniform["relevance_mass"] == pytest.approx(expected, rel=1e-5)


def test_perturbation_and_faithfulness_tables(evaluated) -> None:
    _, run, summary = evaluated
    pert = _tsv(run, "perturbation")
    assert set(pert["condition"]) == {"original", "cam_noise", "translation", "random_noise"}
    # slices are explained for the predicted class, so the unperturbed accuracy is 1
    original = pert[pert["condition"] == "original"]
    assert (original["accuracy"] == 1.0).all()
    faith = _tsv(run, "faithfulness")
    assert {"cam", "gradcam", "baseline:random-order"} <= set(faith["method"])
    assert set(faith["curve"]) == {"deletion", "insertion"}
    assert faith["auc"].between(0, 1).all()
    assert isinstance(summary["perturbation"]["cam"]["cam_hurts_more_than_translation"], bool)


def test_sanity_consistency_and_summary(evaluated) -> None:
    work, run, summary = evaluated
    assert set(summary["sanity"]) == {"cam", "gradcam"}
    cons = _tsv(run, "consistency")
    assert {"slices_of_subject", "across_methods"} <= set(cons["level"])
    assert cons["mean_r"].dropna().between(-1, 1).all()
    freq = np.load(eval_dir(run, "test") / "frequency.npz")
    assert all(0 <= f.min() and f.max() <= 1 for f in freq.values())
    work_summary = json.loads((work / "summary.json").read_text())
    assert work_summary["cam_evaluation"][run.name]["split"] == "test"
    assert set(summary["seconds"]) == {
        "localization",
        "perturbation",
        "faithfulness",
        "sanity",
        "consistency",
    }


def test_report_from_a_run_renders_every_section(evaluated) -> None:
    from braincam.report.build import build_report

    work, run, _ = evaluated
    path = build_report(work, runs=[run], title="tiny <run>")
    html = path.read_text()
    for anchor in ("dataset", "models", "heatmaps", "evaluation", "regions", "provenance"):
        assert f'id="{anchor}"' in html
    assert "tiny &lt;run&gt;" in html
    assert "baseline:uniform" in html  # localization read against its baseline
    assert "deletion" in html and "Subject split" in html
    assert html.count("data:image/png;base64,") >= 4


def test_run_report_renders_in_chromium(evaluated, tmp_path) -> None:
    """The report of a real (tiny) run, not a hand-made page: images decode, no JS errors."""
    from braincam.report.browser import check_report
    from braincam.report.build import build_report
    from builders.browser import _require_browser

    _require_browser()
    work, run, _ = evaluated
    path = build_report(work, runs=[run])
    result = check_report(path, tmp_path / "run-report.png")
    assert result.errors == [] and result.broken_images == []
    assert result.n_images >= 4
