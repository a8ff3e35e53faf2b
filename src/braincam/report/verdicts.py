"""The report's verdict table (first section): per model × method, each family's verdict with
its figure and chance baseline, and the perturbation controls — values read from summary.json
through the schema, each shown with its ``data-key`` (checked by :mod:`braincam.report.audit`).
Nothing is recomputed: the verdicts are made by :mod:`braincam.pipeline.cam_verdicts`.
"""

from __future__ import annotations

import json
from pathlib import Path

from braincam.layout import RunLayout
from braincam.report import blocks as B
from braincam.summary_schema import (
    VERDICT_CHECKS,
    CamEvaluation,
    PerturbationSection,
    ShortcutSection,
    Summary,
    Verdict,
    validate_cam_evaluation,
)

__all__ = ["FAMILY_COLUMNS", "NOT_RUN", "cam_evaluation", "not_run_note", "verdicts_section"]

#: What the report shows for a check family left out of ``cams.checks``.
NOT_RUN = "not run"


FAMILY_COLUMNS = (
    ("inside_brain", "stays inside the brain (vs area)"),
    ("localizes", "localizes (vs uniform map)"),
    ("faithful", "faithful (vs random order)"),
    ("randomization", "passes randomization (vs unrelated maps)"),
    ("perturbation", "perturbation hurts (vs random regions)"),
)


def cam_evaluation(out: Path, summary: Summary, run: Path) -> CamEvaluation | None:
    """A run's heatmap evaluation, read through the schema (work summary, else the run's)."""
    if summary.cam_evaluation and run.name in summary.cam_evaluation:
        return summary.cam_evaluation[run.name]
    path = RunLayout(run).cam_eval("test").summary
    return validate_cam_evaluation(json.loads(path.read_text())) if path.is_file() else None


def not_run_note(run: str, ev: CamEvaluation) -> B.Block | None:
    """The families this evaluation skipped (``cams.checks``), said in words; None if none."""
    if not ev.skipped:
        return None
    return B.note(
        f"{run}: {NOT_RUN} (left out of cams.checks): {', '.join(ev.skipped)} — no figure or "
        "verdict exists for these families in this evaluation."
    )


def _verdict_cell(key: str, v: Verdict | None, skipped: bool = False) -> list[B.Span]:
    if skipped:  # the family was left out of cams.checks: no figure, no verdict
        return [(NOT_RUN, "")]
    if v is None:  # a family added after this evaluation was written
        return [("n/a", "")]
    cell: list[B.Span] = [
        (B.fmt_value(v.verdict) if v.verdict is not None else "n/a", f"{key}/verdict"),
        (" — ", ""),
        (B.fmt_value(v.figure), f"{key}/figure"),
        (" vs ", ""),
        (B.fmt_value(v.baseline), f"{key}/baseline"),
    ]
    if v.ci_low is not None or v.ci_high is not None:
        cell += [
            (" (difference 95 % CI ", ""),
            (B.fmt_value(v.ci_low), f"{key}/ci_low"),
            (", ", ""),
            (B.fmt_value(v.ci_high), f"{key}/ci_high"),
            (")", ""),
        ]
    return cell


def _control_sentence(run: str, which: str, section: PerturbationSection) -> B.Block:
    verdict = getattr(section, f"{which}_control")
    test = section.controls.get(which)
    base = f"cam_evaluation/{run}/perturbation"
    label = {
        "positive": "Positive control — imputing the planted ground-truth region hurts, and more "
        "than random brain regions of its shape (expected: yes): ",
        "negative": "Negative control — imputing a region of the same area outside the brain "
        "hurts, and more than random brain regions (expected: no): ",
    }[which]
    spans: list[B.Span] = [(label, ""), (B.fmt_value(verdict), f"{base}/{which}_control")]
    if test is not None:
        c, k = test.comparison, f"{base}/controls/{which}/comparison"
        spans += [
            ("; drop ", ""),
            (B.fmt_value(c.region_drop), f"{k}/region_drop"),
            (" vs ", ""),
            (B.fmt_value(c.random_drop), f"{k}/random_drop"),
            (" for random regions; difference ", ""),
            (B.fmt_value(c.mean_difference), f"{k}/mean_difference"),
            (", 95 % CI [", ""),
            (B.fmt_value(c.ci_low), f"{k}/ci_low"),
            (", ", ""),
            (B.fmt_value(c.ci_high), f"{k}/ci_high"),
            ("]; its own drop's 95 % CI lower bound ", ""),
            (B.fmt_value(c.region_ci_low), f"{k}/region_ci_low"),
            ("; d_z ", ""),
            (B.fmt_value(c.effect_size, 2), f"{k}/effect_size"),
            ("; n = ", ""),
            (str(c.n_images), f"{k}/n_images"),
            (" images, random baseline n = ", ""),
            (str(c.n_random), f"{k}/n_random"),
            (" placements.", ""),
        ]
    return B.keyed(spans)


def _shortcut_sentence(run: str, section: ShortcutSection) -> B.Block:
    """The shortcut alarm, stated whether or not it fired (a warning when it did)."""
    key = f"cam_evaluation/{run}/shortcut"
    spans: list[B.Span] = [
        ("Shortcut alarm — a method's heatmaps put more than their area's share of mass outside "
         f"the brain or in the head's rim ({section.rim_mm:g} mm) (expected: no): ", ""),
        (B.fmt_value(section.alarm), f"{key}/alarm"),
    ]  # fmt: skip
    if section.alarm:
        spans.append(
            (
                f". WARNING: {', '.join(section.alarm_methods)} — the model may separate the "
                "groups by something outside the brain (scalp, skull, head size, field of view); "
                "use brain extraction (`prepare.anat.brain_mask: extract`, "
                "`outside_brain: zero`) and check the cohort.",
                "",
            )
        )
    return B.keyed(spans)


def verdicts_section(out: Path, summary: Summary, runs: list[Path]) -> B.Section:
    """At the top: per model × method, each family's verdict with its figure and chance level."""
    sec = B.Section("verdicts", "Verdicts")
    found = False
    for run in runs:
        ev = cam_evaluation(out, summary, run)
        if ev is None or not ev.verdicts:
            continue
        found = True
        cells = []
        for method, v in ev.verdicts.items():
            base = f"cam_evaluation/{run.name}/verdicts/{method}"
            row = [[(method, "")]]
            row += [
                _verdict_cell(f"{base}/{fam}", getattr(v, fam), VERDICT_CHECKS[fam] in ev.skipped)
                for fam, _ in FAMILY_COLUMNS
            ]
            cells.append(row)
        sec.add(
            B.keyed_table(
                ["method", *(title for _, title in FAMILY_COLUMNS)],
                cells,
                title=f"{run.name} ({ev.model}): verdict — figure vs chance baseline",
            )
        )
        first = next(iter(ev.verdicts.values()))
        sec.add(
            B.note(
                "Rules. "
                + " ".join(
                    f"{title}: {getattr(first, fam).metric}; {getattr(first, fam).rule}."
                    for fam, title in FAMILY_COLUMNS
                    if getattr(first, fam) is not None and VERDICT_CHECKS[fam] not in ev.skipped
                )
            )
        )
        note = not_run_note(run.name, ev)
        if note is not None:
            sec.add(note)
        if ev.shortcut is not None:
            sec.add(_shortcut_sentence(run.name, ev.shortcut))
        if ev.perturbation is not None:
            for which in ("positive", "negative"):
                sec.add(_control_sentence(run.name, which, ev.perturbation))
    if not found:
        sec.add(B.note("No heatmap evaluation yet (run `braincam evaluate-cams`)."))
    return sec
