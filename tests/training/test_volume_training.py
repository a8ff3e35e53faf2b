"""Training and evaluation on a volume store with a 3-D model (``tinycnn3d-gap``): the same
datamodule, z-scoring, subject splits and commands as 2.5D; one volume = one subject."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from braincam.data.normalization import zscore
from braincam.errors import ConfigError
from braincam.pipeline.evaluate import evaluate_run
from braincam.pipeline.train import fit
from braincam.training.datamodule import SliceDataModule, channel_stats, open_store
from braincam.training.loading import load_trained
from builders.volumes import SPEC, write_volume_work
from builders.volumes import TRAIN as CFG


def test_the_datamodule_serves_volumes_of_the_subject_splits(tmp_path: Path) -> None:
    store = write_volume_work(tmp_path / "work")
    assert open_store(tmp_path / "work").path == store.path  # the work directory's store
    dm = SliceDataModule(store, batch_size=4)
    images, targets, rows = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 1, *SPEC.shape) and images.dtype == torch.float32
    for split in ("train", "val", "test"):
        served = {store.index.loc[int(r), "participant_id"] for r in dm.dataset(split).rows}
        assert served == set(store.subjects(split))  # one sample per subject of the split
        assert len(dm.dataset(split)) == len(served)
    np.testing.assert_array_equal(targets.numpy(), store.index["target"].to_numpy()[rows.numpy()])


def test_channel_statistics_and_zscoring_cover_every_voxel(tmp_path: Path) -> None:
    store = write_volume_work(tmp_path / "work")
    rows = np.flatnonzero(store.index["split"].to_numpy() == "train")
    mean, std = channel_stats(store.path / "images.npy", rows, chunk=64)
    train = np.asarray(store.images[rows], dtype=np.float64)
    assert mean[0] == pytest.approx(train.mean(), rel=1e-9)
    assert std[0] == pytest.approx(train.std(), rel=1e-9)
    x = zscore(
        torch.from_numpy(train.astype(np.float32)), {"normalization": {"mean": mean, "std": std}}
    )
    assert x.shape == train.shape
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4) and float(x.std()) == pytest.approx(
        1.0, abs=1e-3
    )


def test_train_and_evaluate_a_3d_model_on_volumes(volume_run: tuple[Path, Path]) -> None:
    work, run = volume_run
    model, record = load_trained(run)
    assert record["representation"] == "volume" and record["input"]["size"] == list(SPEC.shape)
    store = open_store(work)
    assert record["split"]["test"] == sorted(store.subjects("test"))
    x = torch.zeros(2, 1, *SPEC.shape)
    assert model(x).shape == (2, 2)
    results = evaluate_run(run, splits=["val", "test"], work_dir=work)
    test = results["test"]
    # One volume = one subject: sample-level and subject-level metrics are the same numbers.
    n_test = len(store.subjects("test"))
    assert test["n"] == test["subject"]["n"] == n_test
    assert test["accuracy"] == test["subject"]["accuracy"]
    preds = (run / "predictions_test.tsv").read_text().splitlines()
    assert len(preds) - 1 == len(store.subjects("test"))
    assert "axis" not in preds[0].split("\t")
    subjects = (run / "eval_test_subjects.tsv").read_text().splitlines()
    assert len(subjects) - 1 == len(store.subjects("test"))
    entry = json.loads((work / "summary.json").read_text())["evaluation"][run.name]["test"]
    assert entry["subjects"] == entry["slices"] == n_test
    assert entry["subject_accuracy"] == pytest.approx(test["subject"]["accuracy"])


def test_a_2d_model_or_a_2d_only_augmentation_on_volumes_is_refused(tmp_path: Path) -> None:
    write_volume_work(tmp_path / "work")
    with pytest.raises(ConfigError, match="takes slices but the work directory holds a volume"):
        fit(tmp_path / "work", tmp_path / "run", model="tinycnn-gap", config=CFG, progress=False)
    crop = CFG.replace(augment={"resized_crop": {"p": 0.5}})
    with pytest.raises(ConfigError, match=r"train\.augment\.resized_crop: not available for vol"):
        fit(tmp_path / "work", tmp_path / "run", model="tinycnn3d-gap", config=crop, progress=False)


def test_a_3d_model_learns_a_bright_sphere_from_volumes(tmp_path: Path) -> None:
    """The whole 3-D training path learns an easy focal effect (seeded: the same every run)."""
    from braincam.training.module import read_metrics

    write_volume_work(tmp_path / "work", n=32)
    fit(tmp_path / "work", tmp_path / "run", model="tinycnn3d-gap", config=CFG.replace(epochs=15),
        progress=False)  # fmt: skip
    table = read_metrics(tmp_path / "run")
    assert table["train_loss"].iloc[0] > 0.6  # starts at chance
    assert table["train_loss"].iloc[-1] < 0.05 and table["val_acc"].iloc[-1] == 1.0
