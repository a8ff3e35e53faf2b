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


@pytest.mark.parametrize(
    ("n", "ratios", "expected"),
    [
        # exact (7.5, 1, 1.5): one left over, the tied remainders .5/.5 go to the earlier split
        (10, DEFAULT_RATIOS, (8, 1, 1)),
        # exact (3, .4, .6): largest remainder to test; then val takes one from the largest
        (4, DEFAULT_RATIOS, (2, 1, 1)),
        # exact (2.4, .3, .3) → (3, 0, 0), then val and test each take one from train
        (3, (0.8, 0.1, 0.1), (1, 1, 1)),
        # exact (3, 1.5, 1.5): the tie between val and test goes to val
        (6, (0.5, 0.25, 0.25), (3, 2, 1)),
        (20, DEFAULT_RATIOS, (15, 2, 3)),
        # the one for an empty split is taken from the largest split, wherever it is:
        # exact (.3, .3, 2.4) → (0, 0, 3) → (1, 0, 2) → (1, 1, 1)
        (3, (0.1, 0.1, 0.8), (1, 1, 1)),
        # exact (.4, 3.2, .4) → (1, 3, 0) (tie .4/.4 to train) → (1, 2, 1)
        (4, (0.1, 0.8, 0.1), (1, 2, 1)),
        # fewer than three: train first, then test, then nothing for val
        (2, DEFAULT_RATIOS, (1, 0, 1)),
        (1, DEFAULT_RATIOS, (1, 0, 0)),
        (0, DEFAULT_RATIOS, (0, 0, 0)),
    ],
)
def test_allocate_by_hand(n: int, ratios: tuple, expected: tuple[int, int, int]) -> None:
    got = allocate(n, ratios)
    assert got == expected
    assert all(type(c) is int for c in got)


def test_class_assignment_depends_on_its_own_stream_only() -> None:
    """Adding a class, or reordering rows, leaves another class's assignment unchanged; the
    default seed is 0."""
    labels = _labels({"a": 9, "b": 7})
    base = make_splits(labels)
    pd.testing.assert_frame_equal(base, make_splits(labels, seed=0))
    assert not base["split"].equals(make_splits(labels, seed=1)["split"])
    more = pd.concat(
        [labels, pd.DataFrame({"participant_id": ["sub-900", "sub-901", "sub-902"], "label": "c"})]
    )
    with_c = make_splits(more).set_index("participant_id")["split"]
    for pid, split in base.set_index("participant_id")["split"].items():
        assert with_c[pid] == split, pid
    # the result is sorted by participant_id, columns as strings
    assert list(base.columns) == ["participant_id", "label", "split"]
    assert base["participant_id"].tolist() == sorted(labels["participant_id"])


@pytest.mark.parametrize(
    ("pid", "label", "message", "subject"),
    [
        ("   ", "a", "without a participant_id", None),
        ("", "a", "without a participant_id", None),
        ("sub-9", "n/a", r"1 subject\(s\) have no label", "sub-9"),
        ("sub-9", " ", r"1 subject\(s\) have no label", "sub-9"),
        ("sub-9", None, r"1 subject\(s\) have no label", "sub-9"),
        ("sub-1", "a", "duplicate participant_id", "sub-1"),
    ],
)
def test_label_table_rows_checked_one_by_one(
    pid: str, label: str | None, message: str, subject: str | None
) -> None:
    rows = [("sub-1", "a"), ("sub-2", "b"), ("sub-3", "a"), (pid, label)]
    labels = pd.DataFrame(rows, columns=["participant_id", "label"])
    with pytest.raises(InputError, match=message) as err:
        make_splits(labels)
    assert err.value.subject == subject


def test_three_subjects_of_two_classes_are_enough() -> None:
    from braincam.data.splits import validate_labels

    labels = pd.DataFrame({"participant_id": ["s3", "s1", "s2"], "label": ["a", "b", 1]})
    df = validate_labels(labels)
    assert df["participant_id"].tolist() == ["s1", "s2", "s3"]
    assert df["label"].tolist() == ["b", "1", "a"]
    assert list(df.index) == [0, 1, 2]
    with pytest.raises(InputError, match="at least 3 subjects"):
        validate_labels(labels.iloc[:2])
    with pytest.raises(InputError, match="same label"):
        validate_labels(labels.assign(label="a"))


def test_a_class_stream_is_keyed_by_its_name() -> None:
    """Renaming a class reshuffles its subjects (each class draws from its own named stream)."""
    a = _labels({"a": 12, "b": 12})
    renamed = a.assign(label=a["label"].map({"a": "z", "b": "b"}))
    before = make_splits(a, seed=0).set_index("participant_id")["split"]
    after = make_splits(renamed, seed=0).set_index("participant_id")["split"]
    a_ids = a.loc[a["label"] == "a", "participant_id"]
    b_ids = a.loc[a["label"] == "b", "participant_id"]
    assert not before[a_ids].equals(after[a_ids])
    assert before[b_ids].equals(after[b_ids])


def test_only_classes_under_three_warn() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_splits(_labels({"a": 3, "b": 5}))  # three is enough: no warning
    with pytest.warns(UserWarning, match="'b' has only 2"):
        make_splits(_labels({"a": 3, "b": 2}))


def test_split_table_round_trip_keeps_text_ids_and_na_like_labels(tmp_path) -> None:
    df = pd.DataFrame(
        {"participant_id": ["001", "002", "010"], "label": ["NA", "n/a", "None"], "split": SPLITS}
    )
    path = save_splits(df, tmp_path / "splits.tsv")
    assert path == tmp_path / "splits.tsv"
    text = path.read_text().splitlines()
    assert text == [
        "participant_id\tlabel\tsplit",
        "001\tNA\ttrain",
        "002\tn/a\tval",
        "010\tNone\ttest",
    ]
    back = load_splits(path)
    assert back["participant_id"].tolist() == ["001", "002", "010"]
    assert back["label"].tolist() == ["NA", "n/a", "None"]


def test_split_table_errors_name_the_file(tmp_path) -> None:
    from braincam.data.splits import check_splits

    with pytest.raises(InputError, match="lacks required columns"):
        check_splits(pd.DataFrame({"participant_id": ["a"], "label": ["x"]}))
    bad = tmp_path / "splits.tsv"
    bad.write_text("participant_id\tlabel\tsplit\ns1\ta\ttrain\ns2\tb\tholdout\n")
    with pytest.raises(InputError, match="split must be one of") as err:
        load_splits(bad)
    assert err.value.path == str(bad) and err.value.subject == "s2"
    with pytest.raises(InputError, match="not found"):
        load_splits(tmp_path / "none.tsv")
    # a comma-separated file is not a split table (one column named by the whole header)
    commas = tmp_path / "commas.tsv"
    commas.write_text("participant_id,label,split\ns1,a,train\n")
    with pytest.raises(InputError, match="lacks required columns") as err:
        load_splits(commas)
    assert err.value.path == str(commas)


def test_the_first_duplicated_subject_is_named() -> None:
    labels = pd.DataFrame(
        {"participant_id": ["s2", "s1", "s2", "s1", "s3"], "label": ["a", "b", "a", "b", "a"]}
    )
    with pytest.raises(InputError, match="duplicate participant_id") as err:
        make_splits(labels)
    assert err.value.subject == "s2"  # in the table's order


def test_summarize_splits_with_an_empty_split() -> None:
    df = pd.DataFrame(
        {
            "participant_id": ["a", "b", "c"],
            "label": ["x", "y", "x"],
            "split": ["train"] * 2 + ["test"],
        }
    )
    assert summarize_splits(df) == {"train": {"x": 1, "y": 1}, "val": {}, "test": {"x": 1}}
