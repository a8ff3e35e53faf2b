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


def test_every_lesion_hit_rate_is_required_and_checked() -> None:
    """A lesion_hits section makes its rates and counts required; a wrong count is caught."""
    bins = {
        "all": {"low_mm": 0.0, "high_mm": None, "n_lesions": 4, "n_hit": 1, "hit_rate": 0.25},
        "10mm+": {"low_mm": 10.0, "high_mm": None, "n_lesions": 0, "n_hit": 0, "hit_rate": None},
    }
    summary = {"cam_evaluation": {"r": {"lesion_hits": {"levels": {"slice": {"cam": bins}}}}}}
    base = "cam_evaluation/r/lesion_hits/levels/slice/cam"
    assert set(required_keys(summary)) == {
        f"{base}/{b}/{k}" for b in ("all", "10mm+") for k in ("hit_rate", "n_hit", "n_lesions")
    }
    html = "".join(
        f'<span data-key="{base}/{b}/hit_rate">{rate}</span> (<span data-key="{base}/{b}/n_hit">'
        f'{hit}</span>/<span data-key="{base}/{b}/n_lesions">{n}</span>)'
        for b, rate, hit, n in (("all", "0.250", 1, 4), ("10mm+", "–", 0, 0))
    )
    assert audit_report(html, summary) == []
    assert audit_report(html.replace(">4<", ">5<"), summary) == [
        f"{base}/all/n_lesions: report shows '5', summary.json holds 4"
    ]
    missing = html.replace(f'data-key="{base}/10mm+/hit_rate"', "")
    assert audit_report(missing, summary) == [
        f"{base}/10mm+/hit_rate: in summary.json, not in the report"
    ]
