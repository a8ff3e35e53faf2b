"""The report's evaluation section ("Are the heatmaps right?"): localization, perturbation
(dose–response, controls, per-class tables), faithfulness curves, cascading randomization
(curves and maps at every step) and consistency — each next to its baseline, read from
summary.json through the schema (run files located by :class:`braincam.layout.CamEvalLayout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braincam.layout import RunLayout
from braincam.report import blocks as B
from braincam.report.blocks import plt as _plt
from braincam.report.blocks import read_tsv as _read_tsv
from braincam.report.verdicts import cam_evaluation, not_run_note
from braincam.summary_schema import LesionHitSection, PerturbationSection, SanityEntry, Summary

__all__ = ["evaluation_section"]


#: The localization table's columns, in the report's order (those present are shown).
LOCALIZATION_COLUMNS = (
    "method",
    "level",
    "n_scored",
    "pointing_game",
    "pointing_game_tolerant",
    "relevance_mass",
    "relevance_rank_accuracy",
    "iou_threshold",
    "iou_box",
    "auroc",
)


def evaluation_section(out: Path, summary: Summary, runs: list[Path]) -> B.Section:
    """Localization, perturbation, faithfulness, sanity, consistency — each with its baseline."""
    sec = B.Section("evaluation", "Are the heatmaps right?")
    found = False
    for run in runs:
        root = RunLayout(run).cam_eval("test")
        ev = cam_evaluation(out, summary, run)
        if ev is None:
            continue
        found = True
        note = not_run_note(run.name, ev)
        if note is not None:
            sec.add(note)
        if ev.localization:
            loc = pd.DataFrame([r.model_dump() for r in ev.localization])
            cols = [c for c in LOCALIZATION_COLUMNS if c in loc.columns]
            sec.add(B.table(loc[cols], title=f"{run.name}: localization against ground truth"))
            sec.add(
                B.note(
                    "Read each method against the baseline rows: a uniform map scores the "
                    "mask's share of the image on mass and rank accuracy, AUROC 0.5."
                )
            )
        if ev.localization_effects:
            eff = pd.DataFrame([r.model_dump() for r in ev.localization_effects])
            sec.add(
                B.table(
                    eff[[c for c in ("ground_truth", *LOCALIZATION_COLUMNS) if c in eff.columns]],
                    title=f"{run.name}: localization against each further effect (volumes)",
                )
            )
            sec.add(
                B.note(
                    "The same maps scored against the masks of the other effects the groups "
                    "differ by (atrophy: GM-dominant voxels the atrophy thinned; ventricles: "
                    "tissue that became ventricle): a map that finds them is not wrong."
                )
            )
        if ev.lesion_hits is not None and ev.lesion_hits.levels:
            sec.add(_lesion_hit_table(run.name, ev.lesion_hits))
            sec.add(B.note(f"Lesion hit rate: {ev.lesion_hits.rule}. " + LESION_NOTE))
        if ev.perturbation is not None:
            sec.add(_perturbation_blocks(run.name, ev.perturbation))
            for block in _perturbation_tables(run.name, ev.perturbation):
                sec.add(block)
        if ev.faithfulness:
            faith = pd.DataFrame([r.model_dump() for r in ev.faithfulness])
            sec.add(B.table(faith, title=f"{run.name}: deletion / insertion AUC", collapsed=True))
            sec.add(
                B.note(
                    "Lower deletion AUC and higher insertion AUC than the random order "
                    "mean the map ranks pixels the model really uses."
                )
            )
            if root.curves.is_file():
                sec.add(_faithfulness_figure(root.curves, run.name))
        if ev.sanity:
            sec.add(_sanity_curves(run.name, ev.sanity))
            if root.sanity_maps.is_file():
                sec.add(_sanity_maps(root.sanity_maps, run.name))
            for method, f in ev.sanity.items():
                key = f"cam_evaluation/{run.name}/sanity/{method}"
                sec.add(
                    B.keyed(
                        [
                            (f"{method}: ", ""),
                            (
                                B.fmt_value(f.flagged, vocabulary=("FLAGGED", "passes")),
                                f"{key}/flagged",
                            ),
                            (" — Spearman after full randomization ", ""),
                            (B.fmt_value(f.final_spearman), f"{key}/final_spearman"),
                            (" (absolute ", ""),
                            (B.fmt_value(f.final_spearman_abs), f"{key}/final_spearman_abs"),
                            ("), threshold ", ""),
                            (B.fmt_value(f.threshold), f"{key}/threshold"),
                            ("; two unrelated maps: ", ""),
                            (B.fmt_value(f.random_pairs_spearman), f"{key}/random_pairs_spearman"),
                            (f" ({f.rule}).", ""),
                        ]
                    )
                )
            sanity = _read_tsv(root.table("sanity"))
            if sanity is not None:
                sec.add(
                    B.table(
                        sanity,
                        title=f"{run.name}: cascading randomization, every step",
                        collapsed=True,
                    )
                )
        if ev.consistency:
            means = pd.DataFrame([r.model_dump() for r in ev.consistency])
            sec.add(B.table(means, title=f"{run.name}: consistency (mean pairwise correlation)"))
    if not found:
        sec.add(B.note("No heatmap evaluation yet (run `braincam evaluate-cams`)."))
    return sec


LESION_NOTE = (
    "Each cell: hit rate (lesions hit / lesions). A rate says something only above the "
    "random-map row of the same size bin: chance grows with lesion size; a uniform map hits "
    "nothing."
)


def _lesion_hit_table(run: str, section: LesionHitSection) -> B.Block:
    """Hit rate per method and level, overall and per size bin; every figure keyed to
    summary.json (report/audit.py checks them)."""
    bins: list[str] = []
    for methods in section.levels.values():
        for per_bin in methods.values():
            bins += [b for b in per_bin if b not in bins]
    cells = []
    for level, methods in section.levels.items():
        for method, per_bin in methods.items():
            row: list[list[B.Span]] = [[(method, "")], [(level, "")]]
            for name in bins:
                counts = per_bin.get(name)
                if counts is None:
                    row.append([("n/a", "")])
                    continue
                key = f"cam_evaluation/{run}/lesion_hits/levels/{level}/{method}/{name}"
                row.append(
                    [
                        (B.fmt_value(counts.hit_rate), f"{key}/hit_rate"),
                        (" (", ""),
                        (str(counts.n_hit), f"{key}/n_hit"),
                        ("/", ""),
                        (str(counts.n_lesions), f"{key}/n_lesions"),
                        (")", ""),
                    ]
                )
            cells.append(row)
    return B.keyed_table(
        ["method", "level", *(b.replace("mm", " mm") for b in bins)],
        cells,
        title=f"{run}: lesion-level hit rate by lesion size (equivalent diameter)",
    )


def _perturbation_blocks(run: str, p: PerturbationSection) -> B.Block:
    """The dose–response figure; the per-class and per-condition tables go below, collapsed."""
    plt = _plt()
    tests: dict[str, Any] = {**p.methods, **{f"control: {k}": v for k, v in p.controls.items()}}
    fig, axes = plt.subplots(
        1, len(tests), figsize=(3.3 * len(tests), 3.0), squeeze=False, sharey=True
    )
    for ax, (name, t) in zip(axes[0], tests.items(), strict=True):
        x = [d.strength for d in t.dose_response]
        ax.plot(x, [d.region_drop for d in t.dose_response], "o-", label="region")
        ax.plot(x, [d.random_drop for d in t.dose_response], "s--", label="random regions")
        lo = [np.nan if d.ci_low is None else d.ci_low for d in t.dose_response]
        hi = [np.nan if d.ci_high is None else d.ci_high for d in t.dose_response]
        diff = [np.nan if d.mean_difference is None else d.mean_difference for d in t.dose_response]
        ax.plot(x, diff, "k:", label="difference")
        ax.fill_between(x, lo, hi, color="grey", alpha=0.25, label="95 % CI of difference")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("strength (fraction imputed)")
    axes[0][0].set_ylabel("drop of target-class probability")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return B.figure_from_matplotlib(
        fig,
        title=f"{run}: perturbation dose–response (ROAD noisy linear imputation)",
        caption=p.rule,
    )


def _perturbation_tables(run: str, p: PerturbationSection) -> list[B.Block]:
    rows = []
    tests: dict[str, Any] = {**p.methods, **{f"control: {k}": v for k, v in p.controls.items()}}
    for name, t in tests.items():
        for label, c in {"all": t.comparison, **t.per_class}.items():
            rows.append({"test": name, "true class": label, **c.model_dump()})
    return [
        B.table(pd.DataFrame(rows), title=f"{run}: perturbation per true class", collapsed=True),
        B.table(
            pd.DataFrame([r.model_dump() for r in p.conditions]),
            title=f"{run}: perturbation conditions (accuracy, confidence, drop)",
            collapsed=True,
        ),
    ]


def _sanity_curves(run: str, sanity: dict[str, SanityEntry]) -> B.Block:
    """Mean Spearman to the original maps as layers are randomized, one curve per method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for method, f in sanity.items():
        steps = [0] + [s.step for s in f.steps]
        values = [1.0] + [np.nan if s.spearman_mean is None else s.spearman_mean for s in f.steps]
        line = ax.plot(steps, values, "o-", ms=3, label=method)[0]
        if f.random_pairs_spearman is not None:
            ax.axhline(f.random_pairs_spearman, color=line.get_color(), ls=":", lw=0.8)
    first = next(iter(sanity.values()))
    ax.axhline(first.threshold, color="red", ls="--", lw=0.8, label="flag threshold")
    ax.set_xticks([0] + [s.step for s in first.steps])
    ax.set_xticklabels(["original"] + [s.layer for s in first.steps], rotation=60, fontsize=6)
    ax.set_ylabel("Spearman to original maps")
    ax.set_title("cascading randomization, output layer first (dotted: unrelated maps)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return B.figure_from_matplotlib(fig, title=f"{run}: cascading randomization (Adebayo et al.)")


def _sanity_maps(path: Path, run: str) -> B.Block:
    """The maps of one image at every randomization step, one row per method (Adebayo Fig. 2)."""
    plt = _plt()
    data = np.load(path)
    image = data["images"][0]
    methods: dict[str, list[str]] = {}
    for key in data.files:
        if key != "images":
            methods.setdefault(key.split(":", 1)[0], []).append(key)
    cols = max(len(v) for v in methods.values()) + 1
    fig, grid = plt.subplots(
        len(methods), cols, figsize=(1.3 * cols, 1.45 * len(methods)), squeeze=False
    )
    for r, (method, keys) in enumerate(methods.items()):
        grid[r][0].imshow(image, cmap="gray")
        grid[r][0].set_title("image", fontsize=6)
        grid[r][0].set_ylabel(method, fontsize=7)
        for c, key in enumerate(sorted(keys), start=1):
            grid[r][c].imshow(data[key][0], cmap="jet")
            grid[r][c].set_title(key.split(":", 2)[2], fontsize=5)
        for ax in grid[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return B.figure_from_matplotlib(
        fig, title=f"{run}: maps at each randomization step (left: original; cumulative →)"
    )


def _faithfulness_figure(curves_path: Path, name: str) -> B.Block:
    plt = _plt()
    curves = np.load(curves_path)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        for key in curves.files:
            method, curve = key.split(":", 1)
            if curve.removeprefix("random_") != kind:
                continue
            label = "random order" if curve.startswith("random_") else method
            style = "--" if curve.startswith("random_") else "-"
            x = np.linspace(0, 1, len(curves[key]))
            ax.plot(x, curves[key], style, label=label)
        ax.set_title(kind)
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("target-class probability")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return B.figure_from_matplotlib(fig, title=f"{name}: mean deletion and insertion curves")
