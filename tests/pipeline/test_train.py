"""Training (the fit step and its LightningModule) on a tiny slice store: a step, save/load
round-trip, resume, determinism, bad inputs.

The store is written directly in the on-disk contract's format (docs/architecture.md), and the
model is a tiny GAP CNN substituted for the zoo, so these tests stay fast and independent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from braincam.data.normalization import zscore
from braincam.errors import InputError, ModelError
from braincam.pipeline.train import fit
from braincam.training.loading import load_trained
from braincam.training.module import read_metrics
from builders.store import SPLIT_OF, quick_config, tiny_build, tiny_check, write_store  # noqa: F401


def test_train_step_and_model_roundtrip(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    summary = fit(work, run, model="tiny", config=quick_config(), progress=False)
    assert summary is not None and summary["epochs_run"] == 2
    for name in ("model.pt", "record.json", "metrics.tsv", "curves.png"):
        assert (run / name).is_file(), name
    for name in ("best.ckpt", "last.ckpt"):
        # Lightning checkpoints load with weights_only=True (only tensors and primitives).
        ckpt = torch.load(run / "checkpoints" / name, weights_only=True)
        assert "state_dict" in ckpt
        assert ckpt["braincam"]["classes"] == ["young", "old"]
        assert ckpt["braincam"]["split"]["val"] == ["sub-09", "sub-10"]
        assert ckpt["braincam"]["normalization"]["mean"] == ckpt["hyper_parameters"]["mean"]
    table = read_metrics(run)
    assert table["epoch"].tolist() == [0, 1]
    assert table[["train_loss", "val_loss", "train_acc", "val_acc"]].notna().all().all()

    model, record = load_trained(run)
    assert not model.training
    assert record["classes"] == ["young", "old"]
    assert record["model"] == "tiny"
    assert record["split"]["test"] == ["sub-11", "sub-12"]
    assert set(record["split"]["train"]).isdisjoint(record["split"]["val"])
    assert "torch" in record["versions"] and "lightning" in record["versions"]
    # Normalization stats are the train split's, per channel.
    images = np.load(work / "slices" / "images.npy")
    train_rows = pd.read_csv(work / "slices" / "index.tsv", sep="\t")["split"] == "train"
    assert record["normalization"]["mean"][0] == pytest.approx(
        images[train_rows.values].mean(), rel=1e-5
    )
    assert record["normalization"]["std"][0] == pytest.approx(
        images[train_rows.values].std(), rel=1e-4
    )
    # The saved weights are the best checkpoint's.
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["state_dict"][f"model.{key}"]), key
    assert record["best_epoch"] == best["epoch"]
    summary_json = json.loads((work / "summary.json").read_text())
    assert summary_json["training"]["run"]["model"] == "tiny"


def test_three_channel_store_trains(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work", channels=3)
    summary = fit(
        work, tmp_path / "run", model="tiny", config=quick_config(epochs=1), progress=False
    )
    assert summary is not None
    model, record = load_trained(tmp_path / "run")
    assert record["input"]["channels"] == 3 and len(record["normalization"]["mean"]) == 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_resume_continues_from_last_epoch(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    fit(work, run, model="tiny", config=quick_config(epochs=1), progress=False)
    assert read_metrics(run)["epoch"].tolist() == [0]
    # An "interrupted" run: last.ckpt holds epoch 0; asking for 3 epochs continues from there.
    fit(work, run, model="tiny", config=quick_config(epochs=3), progress=False)
    assert read_metrics(run)["epoch"].tolist() == [0, 1, 2]
    # The second Lightning session logged only epochs 1 and 2: it did not start from scratch.
    second = pd.read_csv(run / "logs" / "version_1" / "metrics.csv")
    assert sorted(second["epoch"].dropna().unique().tolist()) == [1, 2]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2


def test_explicit_resume_without_checkpoint_fails(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    with pytest.raises(InputError, match="no last checkpoint"):
        fit(work, tmp_path / "run", model="tiny", config=quick_config(), resume=True)


def test_finished_run_is_not_retrained(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    cfg = quick_config(epochs=1)
    fit(work, run, model="tiny", config=cfg, progress=False)
    stamp = (run / "model.pt").stat().st_mtime_ns
    fit(work, run, model="tiny", config=cfg, progress=False)
    assert (run / "model.pt").stat().st_mtime_ns == stamp
    assert not (run / "logs" / "version_1").exists()


def test_same_seed_gives_identical_runs(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    augment = {
        "hflip": {"p": 0.5},
        "noise": {"p": 0.5, "std": 0.1},
        "resized_crop": {"p": 0.5},
        "erasing": {"p": 0.5},
        "affine": {"p": 0.5, "degrees": 10, "translate": 0.1, "scale": [0.9, 1.1]},
    }
    cfg = quick_config(seed=7, augment=augment)
    for name in ("a", "b"):
        fit(work, tmp_path / name, model="tiny", config=cfg, progress=False)
    ta, tb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    pd.testing.assert_frame_equal(ta, tb)
    ma, _ = load_trained(tmp_path / "a")
    mb, _ = load_trained(tmp_path / "b")
    for (ka, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    # A different seed gives a different run (so the equality above is not vacuous).
    fit(
        work,
        tmp_path / "c",
        model="tiny",
        config=quick_config(seed=8, augment=augment),
        progress=False,
    )
    mc, _ = load_trained(tmp_path / "c")
    assert not torch.equal(ma.fc.weight, mc.fc.weight)


def test_missing_store_is_a_clear_error(tmp_path: Path, tiny_zoo: None) -> None:
    with pytest.raises(InputError, match="slice store is missing"):
        fit(tmp_path / "nowhere", tmp_path / "run", model="tiny")


def test_unknown_model_is_a_clear_error(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    with pytest.raises(ModelError, match="valid"):
        fit(work, tmp_path / "run", model="resnet9000")
    assert not (tmp_path / "run").exists()


def test_empty_split_is_a_clear_error(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    index_path = work / "slices" / "index.tsv"
    index = pd.read_csv(index_path, sep="\t")
    index.loc[index["split"] == "val", "split"] = "train"
    index.to_csv(index_path, sep="\t", index=False)
    with pytest.raises(InputError, match="split 'val' of the slice store has no slices"):
        fit(work, tmp_path / "run", model="tiny")


def test_store_index_mismatch_is_a_clear_error(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    np.save(work / "slices" / "images.npy", np.zeros((3, 1, 32, 32), np.float32))
    with pytest.raises(InputError, match=r"disagree with index\.tsv"):
        fit(work, tmp_path / "run", model="tiny")


def test_changed_store_is_not_resumed(tmp_path: Path, tiny_zoo: None) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    fit(work, run, model="tiny", config=quick_config(epochs=1), progress=False)
    index_path = work / "slices" / "index.tsv"
    index = pd.read_csv(index_path, sep="\t")
    index.loc[index["participant_id"] == "sub-01", "split"] = "val"
    index.to_csv(index_path, sep="\t", index=False)
    with pytest.raises(InputError, match="differs from the checkpoint"):
        fit(work, run, model="tiny", config=quick_config(epochs=2), resume=True)
    # Automatic mode: the old checkpoint is set aside and training restarts at epoch 0.
    with pytest.warns(UserWarning, match="starting afresh"):
        fit(work, run, model="tiny", config=quick_config(epochs=2), progress=False)
    assert read_metrics(run)["epoch"].tolist() == [0, 1]
    _, record = load_trained(run)
    assert "sub-01" in record["split"]["val"]


def test_zoo_model_trains_and_loads(tmp_path: Path) -> None:
    work = write_store(tmp_path / "work", channels=3)
    cfg = quick_config(epochs=1, limit_train_batches=2)
    fit(work, tmp_path / "run", model="tinycnn-gap", config=cfg, progress=False)
    model, record = load_trained(tmp_path / "run")
    assert record["model"] == "tinycnn-gap"
    model.get_submodule(model.cam_layer)  # the zoo's CAM metadata survives the round-trip
    x = zscore(torch.rand(2, 3, 32, 32), record)
    assert model(x).shape == (2, 2)
