"""Issue 15: volumes are augmented in training, per sample in the data loader (train split only),
with draws that depend on (seed, epoch, sample) alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from braincam.config import AugmentConfig
from braincam.data.augment import Augmenter
from braincam.data.augment3d import VolumeAugmenter
from braincam.errors import ConfigError
from braincam.pipeline import train as train_mod
from braincam.pipeline.train import fit
from braincam.training.datamodule import (
    AUGMENT_STREAM,
    SliceDataModule,
    epoch_seed,
    open_store,
)
from braincam.training.loading import load_trained
from braincam.training.module import ClassifierModule, read_metrics
from builders.volumes import TRAIN as CFG
from builders.volumes import write_volume_work

FLIP_AFFINE = {
    "hflip": {"p": 0.5},
    "affine": {"p": 1.0, "degrees": 10.0, "translate": 0.05, "scale": [0.95, 1.05]},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("volume_augment") / "work"
    write_volume_work(work)
    return work


def _augmenter(**augment: Any) -> VolumeAugmenter:
    return VolumeAugmenter(AugmentConfig.model_validate(augment), seed=0)


def _train_batches(
    work: Path, epoch: int, *, seed: int = 0, num_workers: int = 0, augment: Any = None
) -> list[tuple[torch.Tensor, ...]]:
    dm = SliceDataModule(
        open_store(work),
        batch_size=4,
        seed=seed,
        num_workers=num_workers,
        augment=_augmenter(**FLIP_AFFINE) if augment is None else augment,
    )
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning does before each training epoch
    return list(loader)


def test_training_augments_train_volumes_only(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit with hflip + affine: every train sample is the raw volume augmented with its own
    (seed, epoch, index) seed, in the data loader; validation and test samples are raw, and the
    2-D augmenter never sees a volume batch."""
    seen: list[tuple[str, int, torch.Tensor, torch.Tensor]] = []
    real_step = ClassifierModule._step

    def recording_step(self: ClassifierModule, batch: Any, stage: str) -> Any:
        seen.append((stage, self.trainer.current_epoch, batch[0].clone(), batch[2].clone()))
        return real_step(self, batch, stage)

    def no_2d(self: Augmenter, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError(f"2-D augmenter called on a batch of shape {tuple(x.shape)}")

    monkeypatch.setattr(ClassifierModule, "_step", recording_step)
    monkeypatch.setattr(Augmenter, "before_normalize", no_2d)
    monkeypatch.setattr(Augmenter, "after_normalize", no_2d)
    cfg = CFG.replace(epochs=2, augment=FLIP_AFFINE)
    fit(work, tmp_path / "run", model="tinycnn3d-gap", config=cfg, progress=False)
    assert read_metrics(tmp_path / "run")["epoch"].tolist() == [0, 1]

    store = open_store(work)
    raw = torch.from_numpy(np.array(store.images))
    train_rows = np.flatnonzero(store.index["split"].to_numpy() == "train")
    position = {int(r): i for i, r in enumerate(train_rows)}
    reference = _augmenter(**FLIP_AFFINE)
    stages = {stage for stage, *_ in seen}
    assert stages == {"train", "val"}
    n_train = 0
    for stage, epoch, images, rows in seen:
        assert images.shape[1:] == raw.shape[1:]
        for image, row in zip(images, rows.tolist(), strict=True):
            if stage == "val":
                assert torch.equal(image, raw[row])
                continue
            n_train += 1
            assert not torch.equal(image, raw[row])  # affine p 1: never the raw volume
            seed = epoch_seed(cfg.seed, epoch, stream=AUGMENT_STREAM, item=position[row])
            torch.testing.assert_close(image, reference(raw[row].clone(), seed=seed))
    assert n_train == 2 * len(train_rows)  # every train sample of both epochs
    # The test split (and val) loaders serve the raw volumes.
    dm = SliceDataModule(store, batch_size=4, augment=_augmenter(**FLIP_AFFINE))
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        for images, _, rows in loader:
            assert torch.equal(images, raw[rows])


def test_the_same_seed_and_epoch_give_the_same_augmented_batches(work: Path) -> None:
    first = _train_batches(work, epoch=0)
    again = _train_batches(work, epoch=0)
    for (a, ta, ra), (b, tb, rb) in zip(first, again, strict=True):
        assert torch.equal(ra, rb) and torch.equal(ta, tb) and torch.equal(a, b)
    # Worker processes (persistent, reused across epochs) draw exactly the same.
    workers = _train_batches(work, epoch=0, num_workers=2)
    for (a, _, ra), (b, _, rb) in zip(first, workers, strict=True):
        assert torch.equal(ra, rb) and torch.equal(a, b)


def _by_row(batches: list[tuple[torch.Tensor, ...]]) -> dict[int, torch.Tensor]:
    return {int(r): img for images, _, rows in batches for img, r in zip(images, rows, strict=True)}


def test_another_epoch_or_seed_draws_other_augmentations(work: Path) -> None:
    base = _by_row(_train_batches(work, epoch=0))
    for other in (_by_row(_train_batches(work, epoch=1)), _by_row(_train_batches(work, 0, seed=1))):
        assert other.keys() == base.keys()
        assert all(not torch.equal(base[r], other[r]) for r in base)
    # In one loader with persistent workers, set_epoch still reaches the draws.
    dm = SliceDataModule(open_store(work), batch_size=4, num_workers=1,
                         augment=_augmenter(**FLIP_AFFINE))  # fmt: skip
    loader = dm.train_dataloader()
    epoch0 = _by_row(list(loader))
    loader.sampler.set_epoch(1)
    epoch1 = _by_row(list(loader))
    assert all(torch.equal(epoch0[r], base[r]) for r in base)
    assert all(not torch.equal(epoch1[r], base[r]) for r in base)


def test_sample_seeds_depend_on_seed_epoch_and_index_only() -> None:
    seeds = {
        epoch_seed(s, e, stream=AUGMENT_STREAM, item=i)
        for s in (0, 1)
        for e in (0, 1)
        for i in range(5)
    }
    assert len(seeds) == 20
    # Adding the item leaves the seeds of the existing streams (order, global RNG) unchanged.
    assert epoch_seed(3, 2, stream=1) != epoch_seed(3, 2, stream=1, item=0)
    assert epoch_seed(3, 2, stream=1) == epoch_seed(3, 2, stream=1, item=None)


def test_unaugmented_items_and_bn_recalibration_read_raw_volumes(work: Path) -> None:
    dm = SliceDataModule(open_store(work), batch_size=4, augment=_augmenter(**FLIP_AFFINE))
    dataset = dm.dataset("train")
    raw = torch.from_numpy(np.array(dataset.images[dataset.rows[3]]))
    assert torch.equal(dataset[3][0], raw)  # a plain position: no epoch, no augmentation
    assert not torch.equal(dataset[(0, 3)][0], raw)
    # The single-item and the batched path draw the same for the same (epoch, index).
    images, _, rows = dataset.__getitems__([(0, 5), (0, 3)])
    got = _by_row([(images, None, rows)])
    assert torch.equal(got[int(dataset.rows[3])], dataset[(0, 3)][0])
    assert torch.equal(got[int(dataset.rows[5])], dataset[(0, 5)][0])


class _StopAt(L.Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.current_epoch == self.epoch and args[-1] == self.batch:
            raise RuntimeError("stopped")


def test_resume_with_volume_augmentation_is_exact(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    augment = {**FLIP_AFFINE, "affine": {**FLIP_AFFINE["affine"], "p": 0.5},
               "noise": {"p": 0.5, "std": 0.1}}  # fmt: skip
    cfg = CFG.replace(epochs=3, augment=augment)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(work, straight, model="tinycnn3d-gap", config=cfg, progress=False)
    real_trainer = train_mod._make_trainer

    def stopping_trainer(cfg: Any, run_dir: Path, callbacks: list, progress: bool) -> Any:
        return real_trainer(cfg, run_dir, [*callbacks, _StopAt(epoch=2, batch=1)], progress)

    monkeypatch.setattr(train_mod, "_make_trainer", stopping_trainer)
    with pytest.raises(RuntimeError, match="stopped"):
        fit(work, resumed, model="tinycnn3d-gap", config=cfg, progress=False)
    monkeypatch.setattr(train_mod, "_make_trainer", real_trainer)
    assert read_metrics(resumed)["epoch"].tolist() == [0, 1]
    fit(work, resumed, model="tinycnn3d-gap", config=cfg, progress=False)
    a, _ = load_trained(straight)
    b, _ = load_trained(resumed)
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key
    # Augmentation changes the weights, so the equality above is about the draws.
    plain = tmp_path / "plain"
    fit(work, plain, model="tinycnn3d-gap", config=CFG.replace(epochs=3), progress=False)
    c, _ = load_trained(plain)
    pairs = zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    assert not all(torch.equal(va, vc) for va, vc in pairs)


@pytest.mark.parametrize("key", ["resized_crop", "erasing"])
def test_2d_only_augmentations_on_volumes_are_refused(work: Path, tmp_path: Path, key: str) -> None:
    cfg = CFG.replace(augment={"hflip": {"p": 0.5}, key: {"p": 0.3}})
    with pytest.raises(ConfigError, match=rf"train\.augment\.{key}: not available for volumes"):
        fit(work, tmp_path / "run", model="tinycnn3d-gap", config=cfg, progress=False)
    assert not (tmp_path / "run").exists()  # refused up front


@pytest.mark.usefixtures("tiny_zoo")
def test_bias_field_on_slices_is_refused(tmp_path: Path) -> None:
    from builders.store import quick_config, write_store

    work = write_store(tmp_path / "work")
    cfg = quick_config(epochs=1, augment={"bias_field": {"p": 0.5}})
    with pytest.raises(ConfigError, match=r"train\.augment\.bias_field: not available for 2-D"):
        fit(work, tmp_path / "run", model="tiny", config=cfg, progress=False)
