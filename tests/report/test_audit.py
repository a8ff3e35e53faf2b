"""The report audit on hand-made HTML (no run): keyed spans vs summary.json values.

The end-to-end check on a real report is in tests/pipeline/test_evaluate_cams.py.
"""

from __future__ import annotations

from braincam.report.audit import audit_report, keyed_values, required_keys

SUMMARY = {
    "cam_evaluation": {
        "r": {
            "verdicts": {"cam": {"faithful": {"verdict": True, "figure": 0.123, "baseline": None}}},
            "sanity": {"cam": {"flagged": False}},
            "perturbation": {"positive_control": True, "negative_control": False},
        }
    }
}

HTML = """<p><span data-key="cam_evaluation/r/verdicts/cam/faithful/verdict">yes</span> —
<span data-key="cam_evaluation/r/verdicts/cam/faithful/figure">0.12</span> vs
<span data-key="cam_evaluation/r/verdicts/cam/faithful/baseline">n/a</span></p>
<p><span data-key="cam_evaluation/r/sanity/cam/flagged">passes</span>
<span data-key="cam_evaluation/r/perturbation/positive_control">yes</span>
<span data-key="cam_evaluation/r/perturbation/negative_control">no</span></p>"""


def test_agreeing_report_passes_and_keys_are_read() -> None:
    assert audit_report(HTML, SUMMARY) == []
    shown = dict(keyed_values(HTML))
    assert shown["cam_evaluation/r/sanity/cam/flagged"] == "passes"
    assert set(required_keys(SUMMARY)) == set(shown)


def test_audit_catches_wrong_words_figures_missing_and_unknown_keys() -> None:
    flipped = HTML.replace(">passes<", ">FLAGGED<")
    assert any("sanity/cam/flagged" in p for p in audit_report(flipped, SUMMARY))
    wrong = HTML.replace(">0.12<", ">0.13<")
    assert any("faithful/figure" in p for p in audit_report(wrong, SUMMARY))
    stringly = HTML.replace(">yes</span> —", ">True</span> —")  # a str() of the bool
    assert any("faithful/verdict" in p for p in audit_report(stringly, SUMMARY))
    dropped = HTML.replace('data-key="cam_evaluation/r/perturbation/negative_control"', "")
    assert audit_report(dropped, SUMMARY) == [
        "cam_evaluation/r/perturbation/negative_control: in summary.json, not in the report"
    ]
    extra = HTML + '<b data-key="cam_evaluation/r/nothing">1</b>'
    assert any("absent from summary.json" in p for p in audit_report(extra, SUMMARY))
