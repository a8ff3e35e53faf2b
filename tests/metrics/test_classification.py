"""Classification metrics on hand-made predictions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from braincam.errors import InputError
from braincam.metrics.classification import aggregate_subjects, classification_metrics

TARGETS = np.array([0, 0, 1, 1, 1, 0])
PROBS = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.3, 0.7]])
SUBJECTS = ["A", "A", "B", "B", "B", "C"]


def test_binary_metrics_match_hand_computation() -> None:
    m = classification_metrics(TARGETS, PROBS, ["young", "old"], subjects=SUBJECTS)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.4, 0.7, 0.3])))
    assert m["confusion"] == [[1, 2], [1, 2]]
    young, old = m["per_class"]
    assert (young["class"], young["precision"], young["recall"]) == (
        "young",
        0.5,
        pytest.approx(1 / 3),
    )
    assert old["precision"] == pytest.approx(0.5) and old["recall"] == pytest.approx(2 / 3)
    assert old["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert young["support"] == 3 and old["support"] == 3
    # Positives (0.8, 0.4, 0.7) vs negatives (0.1, 0.6, 0.7): 6.5 of 9 pairs ranked right.
    assert m["auc"] == pytest.approx(6.5 / 9)
    # Subjects: A mean (0.65, 0.35) → young ✓; B mean (0.37, 0.63) → old ✓; C → old ✗.
    assert m["subject"]["n"] == 3
    assert m["subject"]["correct"] == 2
    assert m["subject"]["accuracy"] == pytest.approx(2 / 3)


def test_subject_aggregation_means_probabilities() -> None:
    table = aggregate_subjects(SUBJECTS, TARGETS, PROBS)
    assert table["participant_id"].tolist() == ["A", "B", "C"]
    assert table["n_slices"].tolist() == [2, 3, 1]
    assert table["p1"].tolist() == pytest.approx([0.35, 1.9 / 3, 0.7])
    assert table["pred"].tolist() == [0, 1, 1]
    # Majority vote over slices would call B 'old' too, but A is a 1–1 tie: means decide.


def test_subject_with_two_targets_is_an_error() -> None:
    with pytest.raises(InputError, match="subject=A"):
        aggregate_subjects(["A", "A"], np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]))


def test_multiclass_macro_auc_and_absent_class() -> None:
    targets = np.array([0, 1, 2, 2])
    probs = np.eye(3)[targets] * 0.7 + 0.1
    m = classification_metrics(targets, probs, ["a", "b", "c"])
    assert m["auc"] == pytest.approx(1.0)
    assert m["accuracy"] == 1.0
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    # A class absent from the targets: AUC is undefined, reported as None (not a crash).
    m2 = classification_metrics(np.array([0, 0, 1]), np.eye(3)[[0, 0, 1]], ["a", "b", "c"])
    assert m2["auc"] is None


def test_probabilities_of_wrong_shape_are_an_error() -> None:
    with pytest.raises(InputError, match="shape"):
        classification_metrics(TARGETS, PROBS[:, :1], ["young", "old"])


def test_subject_loss_accuracy_by_hand() -> None:
    from braincam.metrics.classification import subject_loss_accuracy

    # sub-a (class 0): slices p0 = 0.9, 0.5 → mean 0.7; sub-b (class 1): p1 = 0.2, 0.4, 0.3 →
    # mean 0.3 (wrong); sub-c (class 1): p1 = 0.8 → right. Slices arrive interleaved.
    subjects = ["sub-b", "sub-a", "sub-b", "sub-c", "sub-a", "sub-b"]
    targets = np.array([1, 0, 1, 1, 0, 1])
    p1 = np.array([0.2, 0.1, 0.4, 0.8, 0.5, 0.3])
    probs = np.stack([1 - p1, p1], axis=1)
    loss, acc = subject_loss_accuracy(subjects, targets, probs)
    assert loss == pytest.approx(-(np.log(0.7) + np.log(0.3) + np.log(0.8)) / 3)
    assert acc == pytest.approx(2 / 3)
    # Not the slice-level figure: that would be the mean of -log over six slices.
    assert loss != pytest.approx(-np.log(np.where(targets == 1, p1, 1 - p1)).mean())
