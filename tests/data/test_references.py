"""Reference inputs: the mean training image of the other classes at the same place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braincam.data.references import ClassReferences
from braincam.data.slices import SliceStore
from braincam.errors import InputError
from builders.store import write_store


def test_each_row_gets_the_other_class_mean_at_its_position(tmp_path: Path) -> None:
    store = SliceStore.open(write_store(tmp_path / "w", size=8, slices=3) / "slices")
    index, images = store.index, np.asarray(store.images)
    refs = ClassReferences(store, nearest=None)
    rows = np.array([0, 4, len(index) - 1])  # sub-01 position 10, sub-02 position 11, last row
    targets = index["target"].to_numpy()[rows]
    got = refs.for_rows(rows, targets)
    assert got.shape == (3, *images.shape[1:])
    for out, row, target in zip(got, rows, targets, strict=True):
        pick = (
            (index["split"] == "train")
            & (index["target"] != target)
            & (index["position"] == index["position"].iloc[row])
        ).to_numpy()
        assert pick.sum() == 4  # 8 training subjects, half of each class
        np.testing.assert_allclose(out, images[pick].mean(0), rtol=1e-6)
    # explained for the other class, the same row gets the other group's mean
    flipped = refs.for_rows(rows[:1], 1 - targets[:1])[0]
    assert not np.allclose(flipped, got[0])


def test_the_nearest_images_of_the_other_class_by_euclidean_distance(tmp_path: Path) -> None:
    """nearest=k: the mean of the k other-class training images at the row's position closest
    to the row's image (by hand); k ≥ their number gives the plain mean; bad k is named."""
    store = SliceStore.open(write_store(tmp_path / "w", size=8, slices=3) / "slices")
    index, images = store.index, np.asarray(store.images, np.float64)
    row = len(index) - 1  # a test slice
    target = int(index["target"].iloc[row])
    pick = np.flatnonzero(
        (
            (index["split"] == "train")
            & (index["target"] != target)
            & (index["position"] == index["position"].iloc[row])
        ).to_numpy()
    )
    distances = ((images[pick] - images[row]) ** 2).reshape(len(pick), -1).sum(1)
    for k in (1, 2, 3):
        got = ClassReferences(store, nearest=k).for_rows(np.array([row]), np.array([target]))[0]
        best = pick[np.argsort(distances)[:k]]
        np.testing.assert_allclose(got, images[best].mean(0), rtol=1e-6)
    everything = ClassReferences(store, nearest=10).for_rows(np.array([row]), np.array([target]))
    np.testing.assert_allclose(everything[0], images[pick].mean(0), rtol=1e-6)
    one = ClassReferences(store, nearest=1).for_rows(np.array([row]), np.array([target]))[0]
    assert not np.allclose(one, images[pick].mean(0))
    for bad in (0, 1.5, True, "all"):
        with pytest.raises(InputError, match="nearest"):
            ClassReferences(store, nearest=bad)  # type: ignore[arg-type]
    assert ClassReferences(store).nearest == 3  # "auto" on slices


def test_a_position_without_training_images_takes_the_nearest_one(tmp_path: Path) -> None:
    store = SliceStore.open(write_store(tmp_path / "w", size=8, slices=3) / "slices")
    refs = ClassReferences(store)
    np.testing.assert_array_equal(
        refs.reference(("axial", 40), 0), refs.reference(("axial", 12), 0)
    )
    with pytest.raises(InputError, match="no training image of another class"):
        refs.reference(("sagittal", 11), 0)


def test_a_volume_store_has_one_reference_per_class(tmp_path: Path) -> None:
    images = np.arange(4 * 1 * 2 * 2 * 2, dtype=np.float32).reshape(4, 1, 2, 2, 2)
    index = pd.DataFrame(
        {
            "participant_id": list("abcd"),
            "target": [0, 1, 1, 0],
            "split": ["train", "train", "train", "test"],
        }
    )

    class Volumes:  # what ClassReferences reads of a volume store
        path = tmp_path
        pass

    vol = Volumes()
    vol.index, vol.images = index, images  # type: ignore[attr-defined]
    assert ClassReferences(vol).nearest is None  # "auto" on volumes: all of them
    refs = ClassReferences(vol, nearest=None)
    np.testing.assert_allclose(refs.for_rows(np.array([3]), np.array([0]))[0], images[1:3].mean(0))
    np.testing.assert_allclose(refs.for_rows(np.array([3]), np.array([1]))[0], images[0])
    empty = index.assign(split="test")
    vol.index = empty  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="no 'train' images"):
        ClassReferences(vol)
