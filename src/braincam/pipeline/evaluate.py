"""The evaluation step: a trained run's predictions on a split, its metrics, and a comparison.

``evaluate_run`` writes, per split, into ``RUN/`` (paths: :class:`braincam.layout.RunLayout`)::

    eval_<split>.json                 all metrics (:mod:`braincam.metrics.classification`)
    predictions_<split>.tsv           one row per slice
    eval_<split>_subjects.tsv         one row per subject (mean slice probabilities)
    eval_<split>_per_class.tsv        precision, recall, F1, support per class
    eval_<split>_confusion.tsv        the confusion matrix

``compare_runs`` writes ``WORK/comparison.tsv`` and ``WORK/comparison.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braincam.errors import InputError
from braincam.io import read_json, write_atomic, write_json, write_text_atomic
from braincam.layout import RunLayout, WorkLayout
from braincam.metrics.classification import aggregate_subjects, classification_metrics
from braincam.summary_schema import update_summary


def predict_split(
    model: Any, record: dict[str, Any], store: Any, split: str, *, batch_size: int = 64
) -> pd.DataFrame:
    """Class probabilities of every sample (slice, or volume) of ``split``, with its index
    columns (a volume store has no ``axis``/``position``: one row per subject)."""
    import torch

    from braincam.data.normalization import zscore
    from braincam.training.datamodule import make_dataset, make_loader

    dataset = make_dataset(store, split)
    device = next(model.parameters()).device
    rows, probs = [], []
    with torch.inference_mode():
        for images, _, batch_rows in make_loader(dataset, batch_size):
            x = zscore(images.to(device), record)
            probs.append(torch.softmax(model(x).float(), dim=1).cpu())
            rows.append(batch_rows)
    row_index = torch.cat(rows).numpy()
    prob = torch.cat(probs).numpy()
    order = np.argsort(row_index)
    index = store.index.iloc[row_index[order]]
    columns = ["participant_id", "label", "target", "axis", "position"]
    out = index[[c for c in columns if c in index.columns]].copy()
    out.insert(0, "row", row_index[order])
    out["pred"] = prob[order].argmax(axis=1)
    for i, name in enumerate(record["classes"]):
        out[f"prob_{name}"] = prob[order][:, i]
    return out.reset_index(drop=True)


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, sep="\t", index=False))


def evaluate_run(
    run_dir: str | Path,
    *,
    splits: Sequence[str] = ("val", "test"),
    work_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Evaluate a trained run on ``splits``; write ``RUN/eval_<split>.json`` and TSVs.

    Files per split: ``eval_<split>.json`` (all metrics), ``predictions_<split>.tsv`` (per slice),
    ``eval_<split>_subjects.tsv`` (per subject), ``eval_<split>_per_class.tsv`` and
    ``eval_<split>_confusion.tsv``. The run's work directory gets a ``summary.json`` section
    ``evaluation`` keyed by the run's name.
    """
    from braincam.training.datamodule import open_store, split_subjects, store_name
    from braincam.training.loading import load_trained

    run_dir = Path(run_dir)
    model, record = load_trained(run_dir, device=device)
    work = Path(work_dir) if work_dir is not None else Path(record["work_dir"])
    store = open_store(work)
    if store.classes != record["classes"]:
        raise InputError(
            f"{store_name(store)} classes {store.classes} differ from the model's "
            f"{record['classes']}",
            path=store.path,
        )
    current = split_subjects(store)
    classes = record["classes"]
    results: dict[str, dict[str, Any]] = {}
    for split in splits:
        if current.get(split) != record["split"].get(split):
            raise InputError(
                f"split '{split}' of the {store_name(store)} differs from the one the model was "
                "trained with (evaluating on it could leak training subjects)",
                path=store.path,
            )
        preds = predict_split(model, record, store, split, batch_size=batch_size)
        prob_cols = [f"prob_{c}" for c in classes]
        metrics = classification_metrics(
            preds["target"].to_numpy(),
            preds[prob_cols].to_numpy(),
            classes,
            subjects=preds["participant_id"].tolist(),
        )
        metrics.update({"split": split, "model": record["model"], "classes": classes})
        results[split] = metrics
        _write_split(run_dir, split, preds, metrics, classes)
    _update_evaluation(work, run_dir.name, record["model"], results)
    return results


def _write_split(
    run_dir: Path, split: str, preds: pd.DataFrame, metrics: dict[str, Any], classes: list[str]
) -> None:
    layout = RunLayout(run_dir)
    _write_tsv(preds, layout.predictions(split))
    prob_cols = [f"prob_{c}" for c in classes]
    subjects = aggregate_subjects(
        preds["participant_id"].tolist(), preds["target"].to_numpy(), preds[prob_cols].to_numpy()
    )
    subjects = subjects.rename(columns={f"p{i}": f"prob_{c}" for i, c in enumerate(classes)})
    subjects.insert(2, "label", [classes[t] for t in subjects["target"]])
    subjects["correct"] = subjects["pred"] == subjects["target"]
    _write_tsv(subjects, layout.eval_table(split, "subjects"))
    per_class = pd.DataFrame(metrics["per_class"])
    _write_tsv(per_class, layout.eval_table(split, "per_class"))
    confusion = pd.DataFrame(metrics["confusion"], columns=[f"pred_{c}" for c in classes])
    confusion.insert(0, "true", classes)
    _write_tsv(confusion, layout.eval_table(split, "confusion"))
    write_json(layout.eval_json(split), metrics)


def _compact(metrics: dict[str, Any]) -> dict[str, Any]:
    subject = metrics.get("subject", {})
    return {
        "loss": metrics["loss"],
        "slice_accuracy": metrics["accuracy"],
        "auc": metrics["auc"],
        "subject_accuracy": subject.get("accuracy"),
        "subjects": subject.get("n"),
        "subjects_correct": subject.get("correct"),
        "slices": metrics["n"],
    }


def _update_evaluation(
    work_dir: Path, run_name: str, model: str, results: dict[str, dict[str, Any]]
) -> None:
    path = WorkLayout(work_dir).summary
    section = read_json(path).get("evaluation", {}) if path.exists() else {}
    if not isinstance(section, dict):
        section = {}
    entry = section.get(run_name, {}) if isinstance(section.get(run_name), dict) else {}
    entry["model"] = model
    entry.update({split: _compact(m) for split, m in results.items()})
    section[run_name] = entry
    update_summary(work_dir, "evaluation", section)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.1f}"
    return str(value)


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> pd.DataFrame:
    """The dMRI study's Table I across runs: val/test accuracy per model, slice and subject level.

    Written as ``OUT/comparison.tsv`` and ``OUT/comparison.md`` (percentages) and into
    ``OUT/summary.json`` (section ``comparison``). Missing evaluations give empty cells.
    """
    rows = []
    for run in map(Path, run_dirs):
        layout = RunLayout(run)
        record = read_json(layout.record) if layout.record.exists() else {}
        row: dict[str, Any] = {"run": run.name, "model": record.get("model", run.name)}
        row["best_epoch"] = record.get("best_epoch")
        for split in ("val", "test"):
            path = layout.eval_json(split)
            m = read_json(path) if path.exists() else None
            row[f"{split}_slice_acc"] = m["accuracy"] if m else None
            row[f"{split}_subject_acc"] = m["subject"]["accuracy"] if m else None
            row[f"{split}_auc"] = m["auc"] if m else None
        rows.append(row)
    table = pd.DataFrame(rows)
    out_dir = Path(out_dir)
    work = WorkLayout(out_dir)
    _write_tsv(table, work.comparison_tsv)
    header = (
        "| model | val slice acc % | val subject acc % | test slice acc % | "
        "test subject acc % | test AUC % | best epoch |"
    )
    lines = [header, "|" + "---|" * 7]
    for row in rows:
        cells = [
            row["model"],
            _fmt(row["val_slice_acc"]),
            _fmt(row["val_subject_acc"]),
            _fmt(row["test_slice_acc"]),
            _fmt(row["test_subject_acc"]),
            _fmt(row["test_auc"]),
            _fmt(row["best_epoch"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    write_text_atomic(work.comparison_md, "\n".join(lines) + "\n")
    update_summary(
        out_dir, "comparison", table.astype(object).where(table.notna(), None).to_dict("records")
    )
    return table
