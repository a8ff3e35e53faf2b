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

from braincam.layout import RunLayout, WorkLayout
from braincam.report import blocks as B
from braincam.report.blocks import plt as _plt
from braincam.report.blocks import read_tsv as _read_tsv
from braincam.report.evaluation import evaluation_section
from braincam.report.render import write_report
from braincam.report.verdicts import verdicts_section
from braincam.report.volumes import DEFAULT_MAX_VIEWERS, volume_heatmap_blocks
from braincam.summary_schema import Summary, load_summary

# ------------------------------------------------------------------------------- dataset


def dataset_section(out: Path, summary: Summary) -> B.Section:
    """Subjects per class and split, example slices per axis (volumes: orthogonal planes),
    preprocessing parameters."""
    from braincam.data.slices import SliceStore
    from braincam.data.volumes import VolumeStore, is_volume_store

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
    store_dir = WorkLayout(out).slices
    if (store_dir / "meta.json").is_file():
        store = SliceStore.open(store_dir)
        sec.add(example_slices(store))
    elif is_volume_store(WorkLayout(out).volumes):
        sec.add(example_volumes(VolumeStore.open(WorkLayout(out).volumes)))
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


def example_volumes(store: Any) -> B.Block:
    """Orthogonal planes through the grid centre of the first volume of each class."""
    from braincam.figures import PLANES, orthogonal_planes

    plt = _plt()
    classes = list(store.classes)
    fig, grid = plt.subplots(len(classes), 3, figsize=(7.2, 2.5 * len(classes)), squeeze=False)
    centre = [n // 2 for n in store.shape]
    for r, label in enumerate(classes):
        rows = store.index[store.index["label"] == label]
        for c, plane in enumerate(PLANES):
            ax = grid[r][c]
            ax.set_axis_off()
            if rows.empty:
                continue
            vol = np.asarray(store.images[rows.index[0], 0])
            ax.imshow(orthogonal_planes(vol, centre)[c], cmap="gray")
            ax.set_title(f"{label} · {rows['participant_id'].iloc[0]} · {plane}", fontsize=8)
    fig.tight_layout()
    return B.figure_from_matplotlib(
        fig, title="Example volumes (channel 0): orthogonal planes through the grid centre"
    )


# -------------------------------------------------------------------------------- models


def models_section(out: Path, summary: Summary, runs: list[Path]) -> B.Section:
    """Comparison table, and per model its curves, test metrics and confusion matrix."""
    sec = B.Section("models", "Models")
    comparison = _read_tsv(WorkLayout(out).comparison_tsv)
    if comparison is not None:
        sec.add(B.table(comparison, title="Comparison (the dMRI study's Table I)"))
        sec.add(
            B.note(
                "Subject-level accuracy aggregates the slice probabilities of each subject; it is "
                "the honest figure, since slices of one subject are not independent."
            )
        )
    for run in runs:
        layout = RunLayout(run)
        if layout.curves.is_file():
            sec.add(B.figure_from_file(layout.curves, title=f"{run.name}: training curves"))
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
        confusion = _read_tsv(layout.eval_table("test", "confusion"))
        if confusion is not None:
            sec.add(B.table(confusion, title=f"{run.name}: test confusion matrix"))
    return sec


# ------------------------------------------------------------------------------ heatmaps


def _heatmaps(run: Path, split: str = "test") -> tuple[pd.DataFrame, dict[str, np.ndarray]] | None:
    layout = RunLayout(run).heatmaps(split)
    if not layout.meta.is_file():
        return None
    meta = json.loads(layout.meta.read_text())
    table = pd.read_csv(layout.slices, sep="\t", dtype={"participant_id": str})
    maps = {m: np.load(layout.maps(m), mmap_mode="r") for m in meta["methods"]}
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


def heatmaps_section(
    out: Path, runs: list[Path], max_viewers: int = DEFAULT_MAX_VIEWERS
) -> B.Section:
    """Same image under each model × method; per-method montages with boxes and outlines.

    Volume runs add, for a few test subjects, each method's heatmap NIfTI in the interactive
    viewer and as orthogonal slices through its maximum (:mod:`braincam.report.volumes`; at
    most ``max_viewers`` viewers in all)."""
    from braincam.data.slices import SliceStore
    from braincam.data.volumes import VolumeStore, is_volume_store

    sec = B.Section("heatmaps", "Heatmaps")
    loaded = {run.name: h for run in runs if (h := _heatmaps(run)) is not None}
    slices = WorkLayout(out).slices
    volumes = is_volume_store(WorkLayout(out).volumes)
    if not loaded or not ((slices / "meta.json").is_file() or volumes):
        return sec.add(B.note("No heatmaps yet (run `braincam explain`)."))
    if not volumes:
        _same_slices_montage(sec, SliceStore.open(slices), loaded)
    for run in runs:
        for png in sorted(RunLayout(run).heatmaps("test").overlays.glob("*.png")):
            sec.add(
                B.figure_from_file(
                    png,
                    title=f"{run.name} · {png.stem}: "
                    + (
                        "orthogonal planes of test volumes (through the ground truth, else "
                        "the map's peak)"
                        if volumes
                        else "sample of test slices (per class)"
                    ),
                )
            )
    if volumes:
        _volume_subjects(sec, VolumeStore.open(WorkLayout(out).volumes), runs, max_viewers)
    return sec


def _volume_subjects(sec: B.Section, store: Any, runs: list[Path], max_viewers: int) -> None:
    """Per run, the picked test subjects' 3-D heatmaps: slices through the maximum, viewers."""
    shown = 0
    for run in runs:
        blocks, used = volume_heatmap_blocks(run, store, max_viewers=max_viewers - shown)
        for block in blocks:
            sec.add(block)
        shown += used
    sec.add(
        B.note(
            f"{shown} interactive 3-D viewer(s) of single-subject heatmaps (at most "
            f"{max_viewers}: report.max_viewers); each weighs ≈ 0.2–1 MB."
        )
    )


def _same_slices_montage(sec: B.Section, store: Any, loaded: dict[str, Any]) -> None:
    """The same slices under every model and method (slice stores only)."""
    import torch

    from braincam.figures import overlay_montage
    from braincam.metrics.boxes import bounding_boxes

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


def regions_section(out: Path, runs: list[Path]) -> B.Section:
    """Per-class lobe ranking with a bar chart, class differences, and the 3D mean heatmap."""
    import nibabel as nib

    sec = B.Section("regions", "Brain regions")
    found = False
    for run in runs:
        root = RunLayout(run).cam_eval("test")
        ranking = _read_tsv(root.table("lobe_ranking"))
        if ranking is None:
            continue
        found = True
        sec.add(_lobe_bars(ranking, run.name))
        top = ranking.sort_values(["method", "label", "rank"]).groupby(["method", "label"]).head(5)
        sec.add(B.table(top, title=f"{run.name}: top lobes per class (fraction of heatmap mass)"))
        diffs = _read_tsv(root.table("region_differences"))
        if diffs is not None:
            sec.add(B.table(diffs.head(10), title=f"{run.name}: regions that differ most"))
        atlas = _read_tsv(root.table("atlas"))
        if atlas is not None:
            row = atlas.iloc[0]
            sec.add(B.text(f"Atlas: {row['atlas']} from {row['source']}. {row['licence']}"))
        for path in root.mni_means("gradcam")[:2]:
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
    work = WorkLayout(out)
    if work.config.is_file():
        sec.add(B.preformatted(work.config.read_text(), title="Configuration"))
    versions = summary.prepare.versions if summary.prepare else library_versions()
    sec.add(
        B.table(
            pd.DataFrame({"library": list(versions), "version": list(versions.values())}),
            title="Versions",
        )
    )
    splits = _read_tsv(work.splits)
    if splits is not None:
        sec.add(B.table(splits, title="Subject split"))
    sec.add(
        B.preformatted(
            f"braincam run {work.config} --out {out}\n"
            f"braincam evaluate-cams {work.run('<model>').root}\n"
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
    max_viewers: int = DEFAULT_MAX_VIEWERS,
) -> Path:
    """Write ``OUT/report.html`` for an experiment directory and return its path.

    ``runs`` defaults to every trained run under ``OUT/runs/``; ``max_viewers`` caps the
    interactive viewers of single-subject 3-D heatmaps (volume runs).
    """
    out = Path(out_dir)
    work = WorkLayout(out)
    summary = load_summary(work.summary)
    if runs is None:
        runs = sorted(p for p in work.runs.glob("*") if RunLayout(p).model.is_file())
    runs = [Path(r) for r in runs]
    sections = [
        verdicts_section(out, summary, runs),
        dataset_section(out, summary),
        models_section(out, summary, runs),
        heatmaps_section(out, runs, max_viewers),
        evaluation_section(out, summary, runs),
        regions_section(out, runs),
        provenance_section(out, summary),
    ]
    name = title or f"braincam report — {out.resolve().name}"
    subtitle = f"{len(runs)} model(s): " + ", ".join(r.name for r in runs)
    return write_report(work.report, sections, title=name, subtitle=subtitle)
