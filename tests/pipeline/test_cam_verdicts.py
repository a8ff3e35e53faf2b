"""Per-method verdicts from a hand-made evaluation summary (no model, no run)."""

from __future__ import annotations

import math

from braincam.pipeline.cam_verdicts import verdicts

SUMMARY = {
    "localization": [
        {"method": "cam", "level": "slice", "relevance_mass": 0.4},
        {"method": "baseline:uniform", "level": "slice", "relevance_mass": 0.1},
    ],
    "faithfulness": [
        {"method": "cam", "curve": "deletion", "auc": 0.2},
        {"method": "cam", "curve": "insertion", "auc": 0.7},
        {"method": "baseline:random-order", "curve": "deletion", "auc": 0.3},
        {"method": "baseline:random-order", "curve": "insertion", "auc": 0.5},
    ],
    "sanity": {
        "cam": {
            "flagged": False,
            "threshold": 0.5,
            "final_spearman": 0.1,
            "final_spearman_abs": 0.2,
            "random_pairs_spearman": 0.05,
        }
    },
    "perturbation": {
        "methods": {
            "cam": {
                "comparison": {
                    "region_drop": 0.3,
                    "random_drop": 0.1,
                    "hurts_more": True,
                    "ci_low": 0.1,
                    "ci_high": 0.3,
                }
            }
        }
    },
}


def test_every_family_gives_figure_baseline_and_verdict() -> None:
    v = verdicts(SUMMARY, ("cam",))["cam"]
    assert (v["localizes"]["figure"], v["localizes"]["baseline"]) == (0.4, 0.1)
    assert v["localizes"]["verdict"] is True
    assert v["faithful"]["verdict"] is True and v["faithful"]["figure"] == 0.2
    assert v["randomization"]["verdict"] is True and v["randomization"]["figure"] == 0.2
    assert v["perturbation"]["verdict"] is True
    assert (v["perturbation"]["ci_low"], v["perturbation"]["ci_high"]) == (0.1, 0.3)


def test_missing_family_or_nan_figure_gives_a_null_verdict() -> None:
    nan = {**SUMMARY, "localization": [{**SUMMARY["localization"][0], "relevance_mass": math.nan}]}
    v = verdicts(nan, ("cam",))["cam"]
    assert v["localizes"]["figure"] is None and v["localizes"]["verdict"] is None
    empty = verdicts({}, ("cam",))["cam"]
    assert all(empty[f]["verdict"] is None for f in empty)
