"""The datasets training sees: each split's slices are exactly its recorded subjects' slices."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from braincam.data.splits import load_splits
from braincam.io import read_json
from braincam.training.datamodule import SPLITS, SliceDataModule, make_dataset, open_store


def _subjects(store, rows: np.ndarray) -> set[str]:
    return set(store.index["participant_id"].to_numpy()[rows])


def test_split_datasets_hold_the_recorded_subjects_and_never_overlap(
    tiny_run: tuple[Path, Path],
) -> None:
    work, run = tiny_run
    store = open_store(work / "slices")
    recorded = load_splits(work / "splits.tsv")  # what prepare decided, read from disk
    record = read_json(run / "record.json")["split"]  # what the run says it trained on
    datasets = {s: make_dataset(store, s) for s in SPLITS}
    seen = {s: _subjects(store, ds.rows) for s, ds in datasets.items()}
    for split, ds in datasets.items():
        expected = set(recorded.loc[recorded["split"] == split, "participant_id"])
        assert expected, split  # every split has subjects in the fixture
        assert seen[split] == expected, split
        assert sorted(record[split]) == sorted(expected), split
        # all of those subjects' slices, each once, and nothing else
        theirs = np.flatnonzero(store.index["participant_id"].isin(expected).to_numpy())
        assert sorted(ds.rows.tolist()) == theirs.tolist(), split
        # targets are the recorded labels' class numbers
        label_of = dict(zip(recorded["participant_id"], recorded["label"], strict=True))
        pids = store.index["participant_id"].to_numpy()[ds.rows]
        want = [store.classes.index(label_of[p]) for p in pids]
        assert ds.targets.tolist() == want, split
    for a, b in itertools.combinations(SPLITS, 2):
        assert seen[a].isdisjoint(seen[b]), (a, b)
    assert set().union(*seen.values()) == set(recorded["participant_id"])
    assert sum(len(ds) for ds in datasets.values()) == len(store)


def test_items_are_the_stores_slices_and_an_epoch_sees_each_train_slice_once(
    tiny_run: tuple[Path, Path],
) -> None:
    work, _ = tiny_run
    store = open_store(work / "slices")
    dm = SliceDataModule(store, batch_size=4, seed=1)
    train = dm.dataset("train")
    image, target, row = train[3]
    assert int(row) == int(train.rows[3])
    np.testing.assert_array_equal(image.numpy(), np.asarray(store.images[int(row)]))
    assert int(target) == int(store.index["target"].iloc[int(row)])
    rows = []
    for images, targets, batch_rows in dm.train_dataloader():
        rows += batch_rows.tolist()
        np.testing.assert_array_equal(images.numpy(), np.asarray(store.images[batch_rows.numpy()]))
        assert targets.tolist() == store.index["target"].to_numpy()[batch_rows.numpy()].tolist()
    assert sorted(rows) == sorted(train.rows.tolist())
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        got = torch.cat([r for _, _, r in loader]).tolist()
        assert got == dm.dataset(split).rows.tolist()
