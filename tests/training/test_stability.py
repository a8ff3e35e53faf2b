"""Issue 14, stable training: warm-up and schedule per epoch, checkpoint selection by a
subject-level validation figure or a smoothed loss, and the studies' settings left alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from braincam.config import ScheduleConfig, TrainConfig
from braincam.pipeline.train import fit
from braincam.training.loading import load_trained
from braincam.training.module import lr_factor, read_metrics
from builders.store import quick_config, write_store

pytestmark = pytest.mark.usefixtures("tiny_zoo")


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # 2 warm-up epochs: 1/3, 2/3 of lr; then constant.
        ({"warmup_epochs": 2}, [1 / 3, 2 / 3, 1.0, 1.0, 1.0]),
        # Warm-up 1, then cosine over the 4 remaining epochs from 1 to min_lr / lr = 0.1.
        (
            {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-4},
            [0.5] + [0.1 + 0.9 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)],
        ),
        # No warm-up: step decay by 0.5 every 2 epochs.
        ({"name": "step", "step_size": 2, "gamma": 0.5}, [1.0, 1.0, 0.5, 0.5, 0.25]),
    ],
)
def test_lr_factor_per_epoch(schedule: dict, expected: list[float]) -> None:
    cfg = ScheduleConfig.model_validate(schedule)
    got = [lr_factor(e, cfg, 5, 1e-3) for e in range(5)]
    assert got == pytest.approx(expected)


def test_cosine_without_warmup_matches_torch() -> None:
    # The closed form is PyTorch's CosineAnnealingLR (what the config meant before warm-up).
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6, eta_min=0.01)
    cfg = ScheduleConfig(name="cosine", min_lr=0.01)
    for epoch in range(6):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(epoch, cfg, 6, 0.1))
        opt.step()
        ref.step()


def test_warmup_lr_in_the_epoch_table(tmp_path: Path) -> None:
    work = write_store(tmp_path / "work")
    cfg = quick_config(epochs=4, schedule={"name": "cosine", "warmup_epochs": 2})
    fit(work, tmp_path / "run", model="tiny", config=cfg, progress=False)
    lr = read_metrics(tmp_path / "run")["lr"].to_numpy()
    # The table logs the lr at the end of each epoch, i.e. the one that epoch trained with.
    expected = [0.01 * lr_factor(e, cfg.schedule, 4, 0.01) for e in range(4)]
    assert lr == pytest.approx(expected)
    assert lr[0] < lr[1] < lr[2] and lr[3] < lr[2]


def _subject_loss_of(run: Path, work: Path) -> tuple[float, float]:
    """Subject-level val loss and accuracy of a run's saved (best) weights, computed here."""
    model, record = load_trained(run)
    store = work / "slices"
    index = pd.read_csv(store / "index.tsv", sep="\t")
    val = index[index["split"] == "val"]
    images = torch.from_numpy(np.load(store / "images.npy")[val.index.to_numpy()])
    mean, std = record["normalization"]["mean"][0], record["normalization"]["std"][0]
    with torch.no_grad():
        probs = torch.softmax(model((images - mean) / std), dim=1).numpy()
    losses, right = [], []
    for _, rows in val.assign(p=list(probs)).groupby("participant_id"):
        p = np.mean(np.stack(rows["p"].to_list()), axis=0)
        target = int(rows["target"].iloc[0])
        losses.append(-np.log(p[target]))
        right.append(int(p.argmax() == target))
    return float(np.mean(losses)), float(np.mean(right))


def test_checkpoint_by_subject_loss(tmp_path: Path) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    cfg = quick_config(epochs=4, checkpoint={"monitor": "val_subject_loss"})
    fit(work, run, model="tiny", config=cfg, progress=False)
    table = read_metrics(run)
    _, record = load_trained(run)
    # The best checkpoint is the epoch with the lowest subject-level loss...
    assert record["best_epoch"] == int(table["val_subject_loss"].idxmin())
    # ... and that logged figure is the subject-level loss of those weights, recomputed here
    # from the slices (mean probability per subject, then cross-entropy).
    loss, acc = _subject_loss_of(run, work)
    best = table.loc[table["epoch"] == record["best_epoch"]].iloc[0]
    assert best["val_subject_loss"] == pytest.approx(loss, rel=1e-4)
    assert best["val_subject_acc"] == pytest.approx(acc)
    assert (table["val_subject_loss"] != table["val_loss"]).all()


def test_smoothed_loss_is_a_running_average(tmp_path: Path) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    cfg = quick_config(epochs=4, checkpoint={"monitor": "val_loss_smooth", "smoothing": 0.6})
    fit(work, run, model="tiny", config=cfg, progress=False)
    table = read_metrics(run)
    expected = [table["val_loss"].iloc[0]]
    for value in table["val_loss"].iloc[1:]:
        expected.append(0.6 * expected[-1] + 0.4 * value)
    assert table["val_loss_smooth"].to_numpy() == pytest.approx(expected, rel=1e-5)
    _, record = load_trained(run)
    assert record["best_epoch"] == int(table["val_loss_smooth"].idxmin())


def test_defaults_keep_the_studies_settings() -> None:
    cfg = TrainConfig()
    assert cfg.checkpoint.monitor == "val_loss" and cfg.schedule.warmup_epochs == 0
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 1e-3
