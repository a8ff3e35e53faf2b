"""Subject-level, label-stratified train/val/test splits (``WORK/splits.tsv``).

Splitting by subject, never by slice, is what keeps the 2.5D slices of one brain out of two
splits (the leak of the published dMRI code, where validation was an image-level split).
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from braincam.config.prepare import validate_ratios
from braincam.errors import InputError
from braincam.io import atomic_path

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.75, 0.10, 0.15)
SPLIT_COLUMNS = ("participant_id", "label", "split")
# Fewer subjects than this in a class and it cannot be present in all three splits.
MIN_PER_CLASS = len(SPLITS)


def validate_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Check the label table and return it sorted by participant_id (columns as str)."""
    if not isinstance(labels, pd.DataFrame):
        raise InputError("labels must be a DataFrame", value=type(labels).__name__)
    missing = [c for c in ("participant_id", "label") if c not in labels.columns]
    if missing:
        raise InputError(
            "label table lacks required columns", value={"missing": missing, "has": list(labels)}
        )
    df = labels[["participant_id", "label"]].copy()
    empty = df["participant_id"].isna() | (df["participant_id"].astype(str).str.strip() == "")
    if empty.any():
        raise InputError("label table has rows without a participant_id", value=int(empty.sum()))
    df["participant_id"] = df["participant_id"].astype(str)
    no_label = df["label"].isna() | (df["label"].astype(str).str.strip().isin(["", "n/a"]))
    if no_label.any():
        subject = df.loc[no_label, "participant_id"].iloc[0]
        raise InputError(
            f"{int(no_label.sum())} subject(s) have no label", subject=subject, value="missing"
        )
    df["label"] = df["label"].astype(str)
    dup = df["participant_id"].duplicated(keep=False)
    if dup.any():
        subject = df.loc[dup, "participant_id"].iloc[0]
        raise InputError("duplicate participant_id in label table", subject=subject)
    if len(df) < MIN_PER_CLASS:
        raise InputError(
            f"need at least {MIN_PER_CLASS} subjects to split into train/val/test", value=len(df)
        )
    classes = sorted(df["label"].unique())
    if len(classes) < 2:
        raise InputError("all subjects have the same label; need at least two", value=classes)
    return df.sort_values("participant_id", kind="mergesort").reset_index(drop=True)


def allocate(n: int, ratios: Sequence[float]) -> tuple[int, int, int]:
    """Split ``n`` items into (train, val, test) counts close to ``ratios``.

    Largest-remainder rounding, then, when ``n >= 3``, every split gets at least one item (taken
    from the largest split) so that each class is present everywhere.
    """
    exact = np.asarray(ratios, dtype=float) * n
    counts = np.floor(exact).astype(int)
    # Ties go to the earlier split (train, val, test) because argsort is stable.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    if n >= MIN_PER_CLASS:
        for i in range(len(counts)):
            if counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    else:
        # Too few to cover every split: keep what there is in train first, then test.
        counts = np.zeros(3, dtype=int)
        for i in (0, 2, 1)[:n]:
            counts[i] = 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def make_splits(
    labels: pd.DataFrame, ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0
) -> pd.DataFrame:
    """Assign each subject to train, val or test, stratified by label and seeded.

    ``labels`` has columns ``participant_id`` and ``label`` (one row per subject). The result
    (``participant_id, label, split``, sorted by participant_id) depends only on the set of rows,
    the ratios and the seed — not on the input row order. Each class with at least three subjects
    appears in every split.
    """
    ratios = validate_ratios(ratios)
    df = validate_labels(labels)
    split = np.empty(len(df), dtype=object)
    for label, group in df.groupby("label", sort=True):
        # One stream per class, keyed by the label name, so a class's assignment does not change
        # when subjects of another class are added or removed.
        key = zlib.crc32(str(label).encode())
        rng = np.random.default_rng([int(seed), key])
        members = rng.permutation(group.index.to_numpy())
        n_train, n_val, _ = allocate(len(members), ratios)
        if len(members) < MIN_PER_CLASS:
            warnings.warn(
                f"class {label!r} has only {len(members)} subject(s); it cannot be present in "
                "all of train, val and test",
                stacklevel=2,
            )
        split[members[:n_train]] = "train"
        split[members[n_train : n_train + n_val]] = "val"
        split[members[n_train + n_val :]] = "test"
    df["split"] = split
    return df


def check_splits(df: pd.DataFrame, *, path: str | Path | None = None) -> pd.DataFrame:
    """Validate a split table (columns, split names, one row per subject); return it as str."""
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError("split table lacks required columns", path=path, value=missing)
    out = df[list(SPLIT_COLUMNS)].astype(str).reset_index(drop=True)
    bad = ~out["split"].isin(SPLITS)
    if bad.any():
        row = out[bad].iloc[0]
        raise InputError(
            f"split must be one of {', '.join(SPLITS)}",
            subject=row["participant_id"],
            path=path,
            value=row["split"],
        )
    dup = out["participant_id"].duplicated(keep=False)
    if dup.any():
        raise InputError(
            "subject appears more than once in the split table (leakage)",
            subject=out.loc[dup, "participant_id"].iloc[0],
            path=path,
        )
    return out


def save_splits(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``splits.tsv`` (participant_id, label, split) atomically."""
    out = check_splits(df)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False)
    return Path(path)


def load_splits(path: str | Path) -> pd.DataFrame:
    """Read and validate a ``splits.tsv`` written by :func:`save_splits`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("split table not found", path=path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read split table: {exc}", path=path) from exc
    return check_splits(df, path=path)


def summarize_splits(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Subjects per split and label, e.g. ``{"train": {"old": 7, "young": 8}, ...}``."""
    counts = df.groupby(["split", "label"]).size()
    return {
        s: {str(label): int(n) for label, n in counts[s].items()} if s in counts.index else {}
        for s in SPLITS
    }
