"""Subject-level stratified splits: no leakage, stratification, determinism, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braincam.data.splits import (
    DEFAULT_RATIOS,
    SPLITS,
    allocate,
    load_splits,
    make_splits,
    save_splits,
    summarize_splits,
    validate_ratios,
)
from braincam.errors import ConfigError, InputError


def _labels(counts: dict[str, int]) -> pd.DataFrame:
    rows = []
    i = 0
    for label, n in counts.items():
        for _ in range(n):
            rows.append({"participant_id": f"sub-{i:03d}", "label": label})
            i += 1
    return pd.DataFrame(rows)


def test_no_subject_in_two_splits_and_all_assigned() -> None:
    labels = _labels({"young": 23, "old": 17})
    df = make_splits(labels, seed=3)
    assert set(df["split"]) == set(SPLITS)
    assert df["participant_id"].is_unique
    assert sorted(df["participant_id"]) == sorted(labels["participant_id"])
    per_split = {s: set(df.loc[df["split"] == s, "participant_id"]) for s in SPLITS}
    assert not per_split["train"] & per_split["val"]
    assert not per_split["train"] & per_split["test"]
    assert not per_split["val"] & per_split["test"]
    # Labels are carried over unchanged.
    merged = df.merge(labels, on="participant_id", suffixes=("", "_in"))
    assert (merged["label"] == merged["label_in"]).all()


@pytest.mark.parametrize("counts", [{"a": 40, "b": 20}, {"a": 3, "b": 5, "c": 11}])
def test_stratified_every_class_in_every_split(counts: dict[str, int]) -> None:
    df = make_splits(_labels(counts), seed=1)
    for label, n in counts.items():
        got = df[df["label"] == label]["split"].value_counts()
        for s in SPLITS:
            assert got.get(s, 0) >= 1, (label, s)
        expected = np.asarray(DEFAULT_RATIOS) * n
        observed = np.asarray([got.get(s, 0) for s in SPLITS])
        # Per class: rounded target sizes; the minimum-one rule may move one more subject.
        assert np.all(np.abs(observed - expected) < 2.0), (label, observed, expected)


def test_deterministic_under_row_shuffling_and_seeded() -> None:
    labels = _labels({"young": 20, "old": 20})
    ref = make_splits(labels, seed=7)
    for shuffle_seed in range(3):
        shuffled = labels.sample(frac=1.0, random_state=shuffle_seed).reset_index(drop=True)
        pd.testing.assert_frame_equal(make_splits(shuffled, seed=7), ref)
    assert not make_splits(labels, seed=8)["split"].equals(ref["split"])


def test_custom_ratios_change_sizes() -> None:
    labels = _labels({"a": 40, "b": 60})
    df = make_splits(labels, ratios=(0.5, 0.25, 0.25), seed=0)
    sizes = df["split"].value_counts()
    assert (sizes["train"], sizes["val"], sizes["test"]) == (50, 25, 25)


@pytest.mark.parametrize(
    "ratios",
    [(0.8, 0.1), (0.8, 0.3, 0.1), (0.9, 0.0, 0.1), (1.1, -0.05, -0.05), ("a", 1, 2), None],
)
def test_bad_ratios_raise_config_error(ratios: object) -> None:
    with pytest.raises(ConfigError):
        make_splits(_labels({"a": 5, "b": 5}), ratios=ratios)  # type: ignore[arg-type]


def test_validate_ratios_accepts_default() -> None:
    assert validate_ratios(DEFAULT_RATIOS) == DEFAULT_RATIOS


@pytest.mark.parametrize(
    "labels",
    [
        _labels({"a": 10}),  # single class
        _labels({"a": 1, "b": 1}),  # too few subjects
        pd.DataFrame({"participant_id": ["s1", "s1", "s2", "s3"], "label": list("abab")}),
        pd.DataFrame({"participant_id": ["s1", "s2", "s3", "s4"], "label": ["a", None, "b", "b"]}),
        pd.DataFrame({"participant_id": ["s1", "s2", "s3"], "group": ["a", "b", "a"]}),
    ],
)
def test_bad_labels_raise_input_error(labels: pd.DataFrame) -> None:
    with pytest.raises(InputError):
        make_splits(labels)


def test_small_class_warns_but_splits() -> None:
    with pytest.warns(UserWarning, match="only 2"):
        df = make_splits(_labels({"a": 10, "b": 2}))
    assert set(df.loc[df["label"] == "b", "split"]) <= {"train", "test"}


@pytest.mark.parametrize("n", range(0, 30))
def test_allocate_sums_and_minimum(n: int) -> None:
    counts = allocate(n, DEFAULT_RATIOS)
    assert sum(counts) == n
    if n >= 3:
        assert min(counts) >= 1


def test_save_load_roundtrip_and_validation(tmp_path) -> None:
    df = make_splits(_labels({"young": 6, "old": 6}), seed=2)
    path = save_splits(df, tmp_path / "splits.tsv")
    back = load_splits(path)
    pd.testing.assert_frame_equal(back, df.astype(str))
    assert not list(tmp_path.glob(".*tmp*"))
    header = path.read_text().splitlines()[0].split("\t")
    assert header == ["participant_id", "label", "split"]

    bad = df.copy()
    bad.loc[0, "split"] = "holdout"
    (tmp_path / "bad.tsv").write_text(bad.to_csv(sep="\t", index=False))
    with pytest.raises(InputError, match="holdout"):
        load_splits(tmp_path / "bad.tsv")
    dup = pd.concat([df, df.iloc[[0]]])
    with pytest.raises(InputError, match="more than once"):
        save_splits(dup, tmp_path / "dup.tsv")
    assert not (tmp_path / "dup.tsv").exists()
    with pytest.raises(InputError, match="not found"):
        load_splits(tmp_path / "missing.tsv")


def test_summarize_splits_counts() -> None:
    df = make_splits(_labels({"young": 8, "old": 12}), seed=0)
    summary = summarize_splits(df)
    assert set(summary) == set(SPLITS)
    assert sum(sum(v.values()) for v in summary.values()) == 20
    assert sum(v.get("old", 0) for v in summary.values()) == 12
