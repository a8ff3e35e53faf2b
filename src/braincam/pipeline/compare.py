"""``braincam compare OUT_A OUT_B``: two experiments on the same cohort side by side (issue 15:
2.5D slices against 3-D volumes).

Reads each experiment directory's ``summary.json`` (accuracy, localization, preparation) and,
per run, what training and ``explain`` record beside it (``RUN/throughput.tsv``: seconds and
peak memory per epoch; ``RUN/heatmaps/<split>/meta.json``: seconds and peak memory of
``explain``). Writes one table three ways — ``FILE.html``, ``FILE.tsv``, ``FILE.json`` — with a
unit on every row. Refuses (:class:`CohortMismatch`) when the two experiments are not on the same
cohort — other subjects or labels, another test split, other synthesis settings — unless
``force``, which records the differences in the outputs instead.

Memory figures are the process's resident-memory high-water mark when the step ended: in one
``braincam run`` process they include the steps before it (preparation's DTI fits, for one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from braincam.errors import InputError
from braincam.io import read_json, write_json, write_text_atomic
from braincam.layout import WorkLayout
from braincam.summary_schema import Summary, load_summary

#: the table's columns before the per-run ones
KEY_COLUMNS = ("section", "quantity", "unit")


class CohortMismatch(InputError):
    """The two experiments are not on the same cohort (their comparison would mislead)."""


@dataclass
class Side:
    """One experiment directory as the comparison reads it."""

    name: str  # "A" or "B"
    out: Path
    summary: Summary
    runs: list[str]
    synth: dict[str, Any] | None  # OUT/.synth-params.json when the cohort was synthesized

    @property
    def representation(self) -> str:
        prep = self.summary.prepare
        if prep is not None and prep.volume_store is not None:
            return "volume"
        return "slices"


@dataclass
class Comparison:
    """The comparison's table, the cohort check, and where it was written."""

    table: pd.DataFrame
    cohort: dict[str, Any]
    sides: dict[str, dict[str, Any]]
    paths: dict[str, Path] = field(default_factory=dict)


def _side(name: str, out: str | Path) -> Side:
    out = Path(out)
    work = WorkLayout(out)
    if not work.summary.is_file():
        raise InputError("no summary.json: not an experiment directory (braincam run)", path=out)
    summary = load_summary(work.summary)
    runs = sorted((summary.evaluation or {}).keys() | (summary.training or {}).keys())
    stamp = out / ".synth-params.json"
    return Side(name, out, summary, runs, read_json(stamp) if stamp.is_file() else None)


def cohort_differences(a: Side, b: Side) -> list[str]:
    """Why ``a`` and ``b`` are not on the same cohort (empty when they are): subjects and their
    labels, the test split, the synthesis settings (when both were synthesized)."""
    problems = []
    pa, pb = a.summary.prepare, b.summary.prepare
    if pa is None or pb is None:
        missing = [s.name for s, p in ((a, pa), (b, pb)) if p is None]
        return [f"no preparation summary in {', '.join(missing)}: the cohort cannot be checked"]
    la = {p.participant_id: p.label for p in pa.participants}
    lb = {p.participant_id: p.label for p in pb.participants}
    only_a, only_b = sorted(la.keys() - lb.keys()), sorted(lb.keys() - la.keys())
    if only_a or only_b:
        listed = [
            f"{len(ids)} only in {side} ({', '.join(ids[:5])}{', …' if len(ids) > 5 else ''})"
            for side, ids in (("A", only_a), ("B", only_b))
            if ids
        ]
        problems.append("subjects differ: " + ", ".join(listed))
    relabelled = sorted(p for p in la.keys() & lb.keys() if la[p] != lb[p])
    if relabelled:
        problems.append(
            f"labels differ for {len(relabelled)} subjects ({', '.join(relabelled[:5])})"
        )
    ta, tb = set(pa.splits.get("test", [])), set(pb.splits.get("test", []))
    if ta != tb:
        problems.append(
            f"test splits differ ({len(ta ^ tb)} subjects in one only: "
            f"{', '.join(sorted(ta ^ tb)[:5])})"
        )
    if a.synth is not None and b.synth is not None and a.synth != b.synth:
        keys = sorted(
            k for k in a.synth.keys() | b.synth.keys() if a.synth.get(k) != b.synth.get(k)
        )
        shown = ", ".join(f"{k}: {a.synth.get(k)!r} vs {b.synth.get(k)!r}" for k in keys[:6])
        problems.append(f"synthesis settings differ ({shown})")
    elif (a.synth is None) != (b.synth is None):
        problems.append("one cohort was synthesized by the run, the other read from BIDS")
    return problems


# ---------------------------------------------------------------------------- the rows


def _accuracy(side: Side, run: str, split: str) -> list[tuple[str, str, str, Any]]:
    entry = (side.summary.evaluation or {}).get(run)
    ev = getattr(entry, split, None) if entry is not None else None
    get = (lambda k: None) if ev is None else (lambda k: getattr(ev, k))
    return [
        ("accuracy", f"{split} samples", "slices (2.5D) or volumes (3D)", get("slices")),
        ("accuracy", f"{split} subjects", "subjects", get("subjects")),
        (
            "accuracy",
            f"{split} sample accuracy (slice, or volume)",
            "fraction",
            get("slice_accuracy"),
        ),
        ("accuracy", f"{split} subject accuracy", "fraction", get("subject_accuracy")),
        ("accuracy", f"{split} subjects correct", "subjects", get("subjects_correct")),
        ("accuracy", f"{split} AUC (samples)", "AUC (0.5 = chance)", get("auc")),
    ]


def _localization(side: Side, run: str) -> list[tuple[str, str, str, Any]]:
    ev = (side.summary.cam_evaluation or {}).get(run)
    if ev is None or not ev.localization:
        return []
    rows: list[tuple[str, str, str, Any]] = []
    levels: set[str] = set()
    for r in ev.localization:
        extra = r.model_extra or {}
        where = f"{r.method}, {r.level}s"
        mass, fraction = extra.get("relevance_mass"), extra.get("mask_fraction")
        ratio = mass / fraction if mass is not None and fraction else None
        pointing = extra.get("pointing_game")
        if r.level not in levels:  # the masks, hence these two, are the same for every method
            levels.add(r.level)
            unit = f"{r.level}s with a mask"
            rows += [
                ("localization", f"maps scored ({r.level}s)", unit, r.n_scored),
                ("localization", f"mask fraction ({r.level}s)", f"of the {r.level}", fraction),
            ]
        rows += [
            ("localization", f"strict pointing game ({where})", "fraction of maps", pointing),
            ("localization", f"relevance mass ({where})", "fraction of map mass", mass),
            ("localization", f"relevance mass ÷ mask fraction ({where})", "× (uniform = 1)", ratio),
        ]
    return rows


def _throughput(out: Path, run: str) -> pd.DataFrame | None:
    path = WorkLayout(out).run(run).root / "throughput.tsv"  # training.module.Throughput
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def _explain_meta(out: Path, run: str, split: str) -> dict[str, Any]:
    path = WorkLayout(out).run(run).heatmaps(split).meta
    return json.loads(path.read_text()) if path.is_file() else {}


def _column_max(table: pd.DataFrame | None, column: str) -> float | None:
    if table is None or column not in table or table[column].isna().all():
        return None
    return float(table[column].max())


def _cost(side: Side, run: str, split: str) -> list[tuple[str, str, str, Any]]:
    prep = side.summary.prepare
    epochs = _throughput(side.out, run)
    meta = _explain_meta(side.out, run, split)
    ev = (side.summary.cam_evaluation or {}).get(run)
    train_s = None if epochs is None else float(epochs["epoch_seconds"].sum())
    per_epoch = None if epochs is None or epochs.empty else train_s / len(epochs)  # type: ignore[operator]
    images = None if epochs is None else float(epochs["images_per_s"].mean())
    rss = [p.peak_rss_mib for p in prep.participants if p.peak_rss_mib is not None] if prep else []
    prepare_s = None if prep is None else prep.timing.get("total_seconds")
    cams_s = None if ev is None else sum(ev.seconds.values())
    train_rss = _column_max(epochs, "peak_rss_mib")
    return [
        ("time", "preparation (whole cohort)", "s", prepare_s),
        ("time", "training (all epochs, validation included)", "s", train_s),
        ("time", "epochs run", "epochs", None if epochs is None else len(epochs)),
        ("time", "training per epoch", "s / epoch", per_epoch),
        ("time", "training throughput", "samples / s", images),
        ("time", f"explain ({split} split, every method)", "s", meta.get("seconds")),
        ("time", "evaluate-cams (every family)", "s", cams_s),
        ("memory", "preparation: largest subject's peak RSS", "MiB", max(rss) if rss else None),
        ("memory", "peak RSS by the end of training (process)", "MiB", train_rss),
        ("memory", "peak GPU memory in training", "MiB", _column_max(epochs, "peak_gpu_mb")),
        ("memory", "peak RSS by the end of explain (process)", "MiB", meta.get("peak_rss_mib")),
    ]


def comparison_table(a: Side, b: Side, split: str = "test") -> pd.DataFrame:
    """One row per quantity (with its unit), one column per run of each side (``A:<run>``;
    every value a number or empty — each side's representation is in :attr:`Comparison.sides`)."""
    columns: dict[str, dict[tuple[str, str, str], Any]] = {}
    order: list[tuple[str, str, str]] = []
    for side in (a, b):
        for run in side.runs:
            values = {}
            rows = [
                *_accuracy(side, run, split),
                *_localization(side, run),
                *_cost(side, run, split),
            ]
            for section, quantity, unit, value in rows:
                key = (section, quantity, unit)
                if key not in order:
                    order.append(key)
                values[key] = value
            columns[f"{side.name}:{run}"] = values
    frame = pd.DataFrame(order, columns=list(KEY_COLUMNS))
    for name, values in columns.items():
        frame[name] = [values.get(key) for key in order]
    return frame


# --------------------------------------------------------------------------- the outputs


def _html(result: Comparison, a: Side, b: Side) -> str:
    from braincam.report import blocks as B
    from braincam.report.render import render_html

    sec = B.Section("comparison", "Comparison")
    sec.add(
        B.text(
            f"A: {a.out} ({a.representation}; runs {', '.join(a.runs) or 'none'}). "
            f"B: {b.out} ({b.representation}; runs {', '.join(b.runs) or 'none'})."
        )
    )
    cohort = result.cohort
    if cohort["differences"]:
        sec.add(
            B.note(
                "NOT the same cohort (compared with --force): " + "; ".join(cohort["differences"])
            )
        )
    else:
        same = f"{cohort['subjects']} subjects, {cohort['test_subjects']} in the test split"
        sec.add(B.note(f"Same cohort: {same}."))
    for section in dict.fromkeys(result.table["section"]):
        part = result.table[result.table["section"] == section].drop(columns="section")
        sec.add(B.table(part, title=section.capitalize(), digits=4))
    sec.add(
        B.note(
            "Memory: the process's resident-memory high-water mark when the step ended; in one "
            "`braincam run` it includes the steps before (preparation). Localization baselines: "
            "the rows of baseline:uniform and baseline:random."
        )
    )
    return render_html([sec], title="braincam compare", subtitle=f"{a.out.name} vs {b.out.name}")


def compare_experiments(
    out_a: str | Path,
    out_b: str | Path,
    *,
    output: str | Path | None = None,
    force: bool = False,
    split: str = "test",
) -> Comparison:
    """Compare two experiment directories; write ``output`` (``.html``; default
    ``compare.html`` in the current directory) and the same table as ``.tsv`` and ``.json``.

    Raises :class:`CohortMismatch` when they are not on the same cohort, unless ``force``.
    """
    a, b = _side("A", out_a), _side("B", out_b)
    differences = cohort_differences(a, b)
    if differences and not force:
        raise CohortMismatch(
            "the two experiments are not on the same cohort: "
            + "; ".join(differences)
            + " (--force compares them anyway)"
        )
    prep = a.summary.prepare
    cohort = {
        "same": not differences,
        "differences": differences,
        "forced": bool(differences) and force,
        "subjects": None if prep is None else len(prep.participants),
        "test_subjects": None if prep is None else len(prep.splits.get("test", [])),
        "synth": a.synth,
    }
    sides = {
        s.name: {"out": str(s.out.resolve()), "representation": s.representation, "runs": s.runs}
        for s in (a, b)
    }
    result = Comparison(comparison_table(a, b, split), cohort, sides)
    html = Path(output) if output is not None else Path("compare.html")
    tsv, js = html.with_suffix(".tsv"), html.with_suffix(".json")
    write_text_atomic(html, _html(result, a, b))
    write_text_atomic(tsv, result.table.to_csv(sep="\t", index=False))
    write_json(
        js,
        {
            "sides": sides,
            "cohort": cohort,
            "split": split,
            "rows": json.loads(result.table.to_json(orient="records")),
        },
    )
    result.paths = {"html": html, "tsv": tsv, "json": js}
    return result
