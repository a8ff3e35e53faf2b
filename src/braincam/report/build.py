"""Assemble the HTML report of an experiment directory (``braincam run`` / ``braincam demo``).

Reads what the pipeline wrote — ``summary.json``, ``config.yaml``, the slice store, each run's
metrics, evaluations, heatmaps and heatmap evaluations — and renders one self-contained file.
Missing parts (e.g. no CAM evaluation yet) become a short note instead of an error, so a report
can be made at any stage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braincam.report import blocks as B
from braincam.report.render import write_report
from braincam.summary_schema import (
    CamEvaluation,
    PerturbationSection,
    SanityEntry,
    Summary,
    Verdict,
    load_summary,
    validate_cam_evaluation,
)


def _read_tsv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------- dataset


def dataset_section(out: Path, summary: Summary) -> B.Section:
    """Subjects per class and split, example slices per axis, preprocessing parameters."""
    from braincam.data.slices import SliceStore

    sec = B.Section("dataset", "Dataset")
    prep = summary.prepare
    if prep is None:
        return sec.add(B.note("No preparation summary found (run `braincam prepare`)."))
    counts = pd.DataFrame([p.model_dump() for p in prep.participants])
    if not counts.empty:
        table = counts.pivot_table(
            index="label", columns="split", values="participant_id", aggfunc="count", fill_value=0
        ).reset_index()
        sec.add(B.table(table, title="Subjects per class and split"))
    slices = prep.slices_per_split
    if slices:
        sec.add(B.text(f"Slices per split: {slices}"))
    store_dir = out / "slices"
    if (store_dir / "meta.json").is_file():
        store = SliceStore.open(store_dir)
        sec.add(example_slices(store))
    params = prep.parameters
    if params:
        frame = pd.DataFrame(
            {"parameter": list(params), "value": [str(v) for v in params.values()]}
        )
        sec.add(B.table(frame, title="Preprocessing parameters"))
    failures = [f.model_dump() for f in prep.failures]
    sec.add(B.text(f"Failed subjects: {len(failures)}"))
    if failures:
        sec.add(B.table(pd.DataFrame(failures), title="Failures"))
    return sec


def example_slices(store: Any) -> B.Block:
    """The centre slice of each axis for the first subject of each class."""
    plt = _plt()
    index = store.index
    axes = list(dict.fromkeys(index["axis"]))
    classes = list(store.classes)
    fig, grid = plt.subplots(
        len(classes), len(axes), figsize=(2.4 * len(axes), 2.5 * len(classes)), squeeze=False
    )
    for r, label in enumerate(classes):
        first = index[index["label"] == label]["participant_id"]
        for c, axis in enumerate(axes):
            ax = grid[r][c]
            ax.set_axis_off()
            if first.empty:
                continue
            rows = index[(index["participant_id"] == first.iloc[0]) & (index["axis"] == axis)]
            if rows.empty:
                continue
            row = rows.index[len(rows) // 2]
            ax.imshow(np.asarray(store.images[row][0]), cmap="gray")
            ax.set_title(f"{label} · {first.iloc[0]} · {axis}", fontsize=8)
    fig.tight_layout()
    return B.figure_from_matplotlib(fig, title="Example slices (channel 0) per class and axis")


# -------------------------------------------------------------------------------- models


def models_section(out: Path, summary: Summary, runs: list[Path]) -> B.Section:
    """Comparison table, and per model its curves, test metrics and confusion matrix."""
    sec = B.Section("models", "Models")
    comparison = _read_tsv(out / "comparison.tsv")
    if comparison is not None:
        sec.add(B.table(comparison, title="Comparison (the dMRI study's Table I)"))
        sec.add(
            B.note(
                "Subject-level accuracy aggregates the slice probabilities of each subject; it is "
                "the honest figure, since slices of one subject are not independent."
            )
        )
    for run in runs:
        if (run / "curves.png").is_file():
            sec.add(B.figure_from_file(run / "curves.png", title=f"{run.name}: training curves"))
        entry = (summary.evaluation or {}).get(run.name)
        test = entry.test if entry is not None else None
        if test is not None:
            trained = (summary.training or {}).get(run.name)
            k = len(trained.classes) if trained is not None else None
            chance = None if not k else 1.0 / k  # balanced classes; AUC's chance is 0.5
            frame = pd.DataFrame(
                {
                    "metric": ["slice accuracy", "subject accuracy", "AUC", "loss"],
                    "value": [test.slice_accuracy, test.subject_accuracy, test.auc, test.loss],
                    "chance": [chance, chance, 0.5, None],
                    "n": [test.slices, test.subjects, test.slices, test.slices],
                }
            )
            sec.add(B.table(frame, title=f"{run.name}: test metrics next to chance"))
        confusion = _read_tsv(run / "eval_test_confusion.tsv")
        if confusion is not None:
            sec.add(B.table(confusion, title=f"{run.name}: test confusion matrix"))
    return sec


# ------------------------------------------------------------------------------ heatmaps


def _heatmaps(run: Path, split: str = "test") -> tuple[pd.DataFrame, dict[str, np.ndarray]] | None:
    root = run / "heatmaps" / split
    if not (root / "meta.json").is_file():
        return None
    meta = json.loads((root / "meta.json").read_text())
    table = pd.read_csv(root / "slices.tsv", sep="\t", dtype={"participant_id": str})
    maps = {m: np.load(root / f"{m}.npy", mmap_mode="r") for m in meta["methods"]}
    return table, maps


def _pick_examples(table: pd.DataFrame, store: Any) -> list[int]:
    """One slice per class: the one with most ground-truth mask pixels, else the centre one."""
    picks = []
    for _, group in table.groupby("label"):
        rows = group["store_row"].to_numpy()
        if store.masks is not None:
            pixels = np.asarray(store.masks[rows]).reshape(len(rows), -1).sum(1)
            if pixels.max() > 0:
                picks.append(int(group.index[int(pixels.argmax())]))
                continue
        picks.append(int(group.index[len(group) // 2]))
    return picks


def heatmaps_section(out: Path, runs: list[Path]) -> B.Section:
    """Same image under each model × method; per-method montages with boxes and outlines."""
    from braincam.data.slices import SliceStore
    from braincam.evaluate.localization import bounding_boxes
    from braincam.report.figures import overlay_montage

    sec = B.Section("heatmaps", "Heatmaps")
    loaded = {run.name: h for run in runs if (h := _heatmaps(run)) is not None}
    if not loaded or not (out / "slices" / "meta.json").is_file():
        return sec.add(B.note("No heatmaps yet (run `braincam explain`)."))
    import torch

    store = SliceStore.open(out / "slices")
    first_table = next(iter(loaded.values()))[0]
    picks = _pick_examples(first_table, store)
    rows = first_table["store_row"].to_numpy()[picks]
    images, titles, maps, masks = [], [], [], []
    for name, (table, method_maps) in loaded.items():
        local = [int(np.flatnonzero(table["store_row"].to_numpy() == r)[0]) for r in rows]
        for method, m in method_maps.items():
            for r, i in zip(rows, local, strict=True):
                images.append(np.asarray(store.images[r][0]))
                maps.append(np.asarray(m[i]))
                masks.append(np.zeros_like(images[-1]) if store.masks is None else store.masks[r])
                label = table["label"].iloc[i]
                titles.append(f"{name} · {method} · {label}")
    boxes, _ = bounding_boxes(torch.from_numpy(np.stack(maps)))
    fig = overlay_montage(
        np.stack(images),
        np.stack(maps),
        titles=titles,
        boxes=boxes.numpy(),
        masks=np.stack(masks),
        columns=len(rows) * max(len(m) for _, m in loaded.values()),
    )
    sec.add(
        B.figure_from_matplotlib(
            fig,
            title="The same slices under every model and method (the dMRI study's Fig. 7)",
            caption="Green: the paper's box (20 % of the maximum, largest connected component). "
            "White: ground-truth effect region where one exists.",
        )
    )
    for run in runs:
        for png in sorted((run / "heatmaps" / "test" / "overlays").glob("*.png")):
            sec.add(
                B.figure_from_file(
                    png, title=f"{run.name} · {png.stem}: sample of test slices (per class)"
                )
            )
    return sec


# ---------------------------------------------------------------------------- evaluation

FAMILY_COLUMNS = (
    ("localizes", "localizes (vs uniform map)"),
    ("faithful", "faithful (vs random order)"),
    ("randomization", "passes randomization (vs unrelated maps)"),
    ("perturbation", "perturbation hurts (vs random regions)"),
)


def _cam_evaluation(out: Path, summary: Summary, run: Path) -> CamEvaluation | None:
    """A run's heatmap evaluation, read through the schema (work summary, else the run's)."""
    if summary.cam_evaluation and run.name in summary.cam_evaluation:
        return summary.cam_evaluation[run.name]
    path = run / "cam_eval" / "test" / "summary.json"
    return validate_cam_evaluation(json.loads(path.read_text())) if path.is_file() else None


def _verdict_cell(key: str, v: Verdict) -> list[B.Span]:
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
        "positive": "Positive control — imputing the planted ground-truth region hurts more than "
        "random brain regions of its shape (expected: yes): ",
        "negative": "Negative control — imputing a region of the same area outside the brain "
        "hurts more than random brain regions (expected: no): ",
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
            ("], d_z ", ""),
            (B.fmt_value(c.effect_size, 2), f"{k}/effect_size"),
            ("; n = ", ""),
            (str(c.n_images), f"{k}/n_images"),
            (" images, random baseline n = ", ""),
            (str(c.n_random), f"{k}/n_random"),
            (" placements.", ""),
        ]
    return B.keyed(spans)


def verdicts_section(out: Path, summary: Summary, runs: list[Path]) -> B.Section:
    """At the top: per model × method, each family's verdict with its figure and chance level."""
    sec = B.Section("verdicts", "Verdicts")
    found = False
    for run in runs:
        ev = _cam_evaluation(out, summary, run)
        if ev is None or not ev.verdicts:
            continue
        found = True
        cells = []
        for method, v in ev.verdicts.items():
            base = f"cam_evaluation/{run.name}/verdicts/{method}"
            row = [[(method, "")]]
            row += [_verdict_cell(f"{base}/{fam}", getattr(v, fam)) for fam, _ in FAMILY_COLUMNS]
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
                )
            )
        )
        if ev.perturbation is not None:
            for which in ("positive", "negative"):
                sec.add(_control_sentence(run.name, which, ev.perturbation))
    if not found:
        sec.add(B.note("No heatmap evaluation yet (run `braincam evaluate-cams`)."))
    return sec


def evaluation_section(out: Path, summary: Summary, runs: list[Path]) -> B.Section:
    """Localization, perturbation, faithfulness, sanity, consistency — each with its baseline."""
    sec = B.Section("evaluation", "Are the heatmaps right?")
    found = False
    for run in runs:
        root = run / "cam_eval" / "test"
        ev = _cam_evaluation(out, summary, run)
        if ev is None:
            continue
        found = True
        if ev.localization:
            loc = pd.DataFrame([r.model_dump() for r in ev.localization])
            cols = [
                c
                for c in (
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
                if c in loc.columns
            ]
            sec.add(B.table(loc[cols], title=f"{run.name}: localization against ground truth"))
            sec.add(
                B.note(
                    "Read each method against the baseline rows: a uniform map scores the "
                    "mask's share of the image on mass and rank accuracy, AUROC 0.5."
                )
            )
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
            if (root / "curves.npz").is_file():
                sec.add(_faithfulness_figure(root, run.name))
        if ev.sanity:
            sec.add(_sanity_curves(run.name, ev.sanity))
            if (root / "sanity_maps.npz").is_file():
                sec.add(_sanity_maps(root / "sanity_maps.npz", run.name))
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
            sanity = _read_tsv(root / "sanity.tsv")
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


def _faithfulness_figure(root: Path, name: str) -> B.Block:
    plt = _plt()
    curves = np.load(root / "curves.npz")
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


# ------------------------------------------------------------------------------- regions


def regions_section(out: Path, runs: list[Path]) -> B.Section:
    """Per-class lobe ranking with a bar chart, class differences, and the 3D mean heatmap."""
    import nibabel as nib

    sec = B.Section("regions", "Brain regions")
    found = False
    for run in runs:
        root = run / "cam_eval" / "test"
        ranking = _read_tsv(root / "lobe_ranking.tsv")
        if ranking is None:
            continue
        found = True
        sec.add(_lobe_bars(ranking, run.name))
        top = ranking.sort_values(["method", "label", "rank"]).groupby(["method", "label"]).head(5)
        sec.add(B.table(top, title=f"{run.name}: top lobes per class (fraction of heatmap mass)"))
        diffs = _read_tsv(root / "region_differences.tsv")
        if diffs is not None:
            sec.add(B.table(diffs.head(10), title=f"{run.name}: regions that differ most"))
        atlas = _read_tsv(root / "atlas.tsv")
        if atlas is not None:
            row = atlas.iloc[0]
            sec.add(B.text(f"Atlas: {row['atlas']} from {row['source']}. {row['licence']}"))
        for path in sorted(root.glob("mni_mean_gradcam_*.nii.gz"))[:2]:
            label = path.name.removeprefix("mni_mean_gradcam_").removesuffix(".nii.gz")
            sec.add(
                B.brain_viewer(
                    nib.load(path),
                    title=f"{run.name}: mean Grad-CAM of class {label} in MNI space",
                    caption="Interactive: click to move the cursor; threshold at 20 % of the max.",
                )
            )
    if not found:
        sec.add(B.note("No region attribution yet (run `braincam evaluate-cams`)."))
    return sec


def _lobe_bars(ranking: pd.DataFrame, name: str) -> B.Block:
    plt = _plt()
    methods = list(dict.fromkeys(ranking["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        part = ranking[(ranking["method"] == method) & (ranking["lobe"] != "outside")]
        table = part.pivot_table(index="lobe", columns="label", values="mean")
        table.sort_values(table.columns[0], ascending=False).plot.bar(ax=ax)
        ax.set_title(method)
        ax.set_ylabel("share of heatmap mass")
    fig.tight_layout()
    return B.figure_from_matplotlib(fig, title=f"{name}: heatmap mass per lobe and class")


# ---------------------------------------------------------------------------- provenance


def provenance_section(out: Path, summary: Summary) -> B.Section:
    """Config, versions, seed, split and the commands that reproduce the run."""
    from braincam.provenance import library_versions

    sec = B.Section("provenance", "Provenance")
    if (out / "config.yaml").is_file():
        sec.add(B.preformatted((out / "config.yaml").read_text(), title="Configuration"))
    versions = summary.prepare.versions if summary.prepare else library_versions()
    sec.add(
        B.table(
            pd.DataFrame({"library": list(versions), "version": list(versions.values())}),
            title="Versions",
        )
    )
    splits = _read_tsv(out / "splits.tsv")
    if splits is not None:
        sec.add(B.table(splits, title="Subject split"))
    sec.add(
        B.preformatted(
            f"braincam run {out / 'config.yaml'} --out {out}\n"
            f"braincam evaluate-cams {out / 'runs' / '<model>'}\n"
            f"braincam report {out}",
            title="Commands",
        )
    )
    return sec


def build_report(
    out_dir: str | Path,
    *,
    runs: Sequence[str | Path] | None = None,
    title: str | None = None,
) -> Path:
    """Write ``OUT/report.html`` for an experiment directory and return its path.

    ``runs`` defaults to every trained run under ``OUT/runs/``.
    """
    out = Path(out_dir)
    summary = load_summary(out / "summary.json")
    if runs is None:
        runs = sorted(p for p in (out / "runs").glob("*") if (p / "model.pt").is_file())
    runs = [Path(r) for r in runs]
    sections = [
        verdicts_section(out, summary, runs),
        dataset_section(out, summary),
        models_section(out, summary, runs),
        heatmaps_section(out, runs),
        evaluation_section(out, summary, runs),
        regions_section(out, runs),
        provenance_section(out, summary),
    ]
    name = title or f"braincam report — {out.resolve().name}"
    subtitle = f"{len(runs)} model(s): " + ", ".join(r.name for r in runs)
    return write_report(out / "report.html", sections, title=name, subtitle=subtitle)
