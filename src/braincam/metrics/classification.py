"""Classification metrics at slice and subject level, from targets and probabilities.

Slices of one subject are not independent, so besides slice-level figures every evaluation
reports subject-level accuracy: the mean of a subject's slice probabilities, then argmax — the
honest figure. The step that runs a trained model over a split and writes these figures is
:func:`braincam.pipeline.evaluate.evaluate_run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from braincam.errors import InputError


def _auc(targets: np.ndarray, probs: np.ndarray) -> float | None:
    """ROC AUC (binary) or macro one-vs-rest AUC; ``None`` when a class is absent."""
    from sklearn.metrics import roc_auc_score

    k = probs.shape[1]
    if len(np.unique(targets)) < k:
        return None  # AUC is undefined unless every class occurs
    if k == 2:
        return float(roc_auc_score(targets, probs[:, 1]))
    return float(roc_auc_score(targets, probs, multi_class="ovr", average="macro"))


def slice_metrics(targets: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Loss, accuracy, per-class precision/recall/F1, confusion matrix and AUC of predictions.

    ``targets`` (N,) integer classes; ``probs`` (N, K) class probabilities (rows sum to 1).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    targets = np.asarray(targets, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if probs.ndim != 2 or probs.shape != (targets.size, k):
        raise InputError(
            f"probabilities must have shape ({targets.size}, {k})", value=tuple(probs.shape)
        )
    if targets.size == 0:
        raise InputError("no predictions to evaluate")
    preds = probs.argmax(axis=1)
    picked = probs[np.arange(targets.size), targets]
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, preds, labels=labels, zero_division=0
    )
    return {
        "n": int(targets.size),
        "loss": float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()),
        "accuracy": float((preds == targets).mean()),
        "per_class": [
            {
                "class": classes[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in labels
        ],
        "confusion": confusion_matrix(targets, preds, labels=labels).tolist(),
        "auc": _auc(targets, probs),
    }


def aggregate_subjects(
    subjects: Sequence[str], targets: np.ndarray, probs: np.ndarray
) -> pd.DataFrame:
    """One row per subject: its target, mean slice probabilities, prediction and slice count."""
    probs = np.asarray(probs, dtype=np.float64)
    frame = pd.DataFrame(probs, columns=[f"p{i}" for i in range(probs.shape[1])])
    frame.insert(0, "participant_id", list(subjects))
    frame.insert(1, "target", np.asarray(targets, dtype=np.int64))
    mixed = frame.groupby("participant_id")["target"].nunique()
    if (mixed > 1).any():
        bad = mixed[mixed > 1].index[0]
        raise InputError("slices of one subject carry different targets", subject=str(bad))
    grouped = frame.groupby("participant_id", sort=True)
    out = grouped.mean(numeric_only=True)
    out["target"] = grouped["target"].first()
    out["n_slices"] = grouped.size()
    prob_cols = [c for c in out.columns if c.startswith("p") and c[1:].isdigit()]
    out["pred"] = out[prob_cols].to_numpy().argmax(axis=1)
    return out.reset_index()[["participant_id", "target", "pred", "n_slices", *prob_cols]]


def classification_metrics(
    targets: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    subjects: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Slice-level metrics plus, when ``subjects`` is given, the same at subject level."""
    result = slice_metrics(targets, probs, classes)
    if subjects is not None:
        per_subject = aggregate_subjects(subjects, targets, probs)
        prob_cols = [f"p{i}" for i in range(len(classes))]
        subject = slice_metrics(
            per_subject["target"].to_numpy(), per_subject[prob_cols].to_numpy(), classes
        )
        subject["correct"] = int((per_subject["pred"] == per_subject["target"]).sum())
        result["subject"] = subject
    return result


def subject_loss_accuracy(
    subjects: Sequence[str], targets: np.ndarray, probs: np.ndarray
) -> tuple[float, float]:
    """Subject-level cross-entropy and accuracy: each subject's mean slice probabilities (as
    :func:`aggregate_subjects`) scored against its target. What checkpoint selection by
    ``val_subject_loss`` / ``val_subject_acc`` monitors."""
    per_subject = aggregate_subjects(subjects, targets, probs)
    prob_cols = [c for c in per_subject.columns if c.startswith("p") and c[1:].isdigit()]
    p = per_subject[prob_cols].to_numpy()
    t = per_subject["target"].to_numpy()
    picked = p[np.arange(t.size), t]
    loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    return loss, float((per_subject["pred"] == per_subject["target"]).mean())
