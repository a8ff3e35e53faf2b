"""The training step: ``fit`` a zoo model on a slice store, or a 3-D model on a volume store
(checkpoints, resume, curves, DDP).

Outputs in ``RUN/`` (paths: :class:`braincam.layout.RunLayout`)::

    checkpoints/best.ckpt, checkpoints/last.ckpt   Lightning checkpoints (load with weights_only)
    model.pt        {"state_dict": best weights, "record": JSON-able record}  (weights_only)
    record.json     the same record, readable without torch
    metrics.tsv     one row per epoch: train/val loss and accuracy, learning rate
    throughput.tsv  one row per epoch: train images/s, epoch seconds, peak GPU memory
    curves.png      the training curves
    logs/           Lightning CSV (and TensorBoard, if installed) logs

The LightningModule is :mod:`braincam.training.module`; a trained run is loaded back, without
Lightning, by :func:`braincam.training.loading.load_trained`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from braincam.config import TrainConfig
from braincam.data.augment3d import VolumeAugmenter, augment_enabled, check_augment_for
from braincam.errors import ConfigError, InputError
from braincam.io import read_json, write_atomic, write_json
from braincam.layout import RunLayout, WorkLayout
from braincam.metrics.classification import subject_loss_accuracy
from braincam.provenance import library_versions
from braincam.summary_schema import update_summary
from braincam.training import zoo
from braincam.training.datamodule import (
    SliceDataModule,
    Store,
    channel_stats,
    images_path,
    is_volume,
    open_store,
    split_rows,
    split_subjects,
)
from braincam.training.loading import RECORD_FORMAT, read_checkpoint
from braincam.training.module import (
    ClassifierModule,
    EpochSeed,
    EpochTable,
    Throughput,
    read_metrics,
)

__all__ = ["fit", "training_summary"]


def _loggers(run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name=RunLayout.LOGS_NAME)]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(save_dir=str(run_dir), name=RunLayout.TENSORBOARD_NAME))
    return loggers


def _identity(model: str, store: Store) -> dict[str, Any]:
    """What a checkpoint must have been trained on to be resumed: model, classes, split."""
    meta_path = store.path / "meta.json"
    fingerprint = read_json(meta_path).get("fingerprint") if meta_path.is_file() else None
    return {
        "model": model,
        "classes": store.classes,
        "split": split_subjects(store),
        "channels": store.channels,
        "size": store.size,
        "store_fingerprint": fingerprint,
        **({"representation": "volume"} if is_volume(store) else {}),
    }


def _check_representation(model: str, cfg: TrainConfig, store: Store) -> None:
    """The model takes the store's samples (2-D slices, 3-D volumes), and the store gets no
    option of the other representation (augmentations, channels_last): say so up front."""
    from braincam.errors import ModelError

    try:
        dims = zoo.model_spatial_dims(model)
    except ModelError:
        dims = None  # a model outside the registry (tests substitute one): its own business
    want = 3 if is_volume(store) else 2
    if dims is not None and dims != want:
        raise ConfigError(
            f"model {model!r} takes {'volumes' if dims == 3 else 'slices'} but the work "
            f"directory holds a {'volume' if want == 3 else 'slice'} store (prepare's "
            "representation: volume needs a model whose name contains '3d')"
        )
    # resized_crop / erasing are 2-D only, bias_field volume only.
    check_augment_for(cfg.augment, 3 if is_volume(store) else 2)
    if not is_volume(store):
        return
    if cfg.channels_last:
        raise ConfigError("train.channels_last: 2-D memory format; not for a volume store")


def _volume_augmenter(cfg: TrainConfig, store: Store, std: list[float]) -> VolumeAugmenter | None:
    """The train split's per-sample augmenter of a volume store (``None``: slices, or nothing
    enabled). Volumes are in RAS+ order, so left-right is the first spatial axis; ``std`` (the
    train split's, as z-scoring uses) scales ``noise.std`` to raw intensities."""
    if not is_volume(store) or not augment_enabled(cfg.augment):
        return None
    return VolumeAugmenter(cfg.augment, seed=cfg.seed, lr_axis=0, channel_std=std)


def _resolve_resume(run_dir: Path, resume: bool | None, identity: dict[str, Any]) -> Path | None:
    layout = RunLayout(run_dir)
    last = layout.last_checkpoint
    inputs = layout.inputs
    same_inputs = inputs.is_file() and read_json(inputs) == identity
    if resume is None and last.is_file() and not same_inputs:
        # The store (split, classes, images) or the model changed since that checkpoint:
        # continuing it would mix two experiments, so start afresh.
        warnings.warn(
            f"{last} was trained on other inputs (model or slice store changed); starting afresh",
            stacklevel=3,
        )
        resume = False
    if resume is not False and last.is_file():
        # Lightning would fail with a traceback on a truncated or foreign file: check it first.
        read_checkpoint(last, keys=("state_dict", "epoch", "loops", "braincam"))
    if resume is None:
        return last if last.is_file() else None
    if resume:
        if not last.is_file():
            raise InputError("cannot resume: no last checkpoint", path=last)
        if not same_inputs:
            raise InputError(
                "cannot resume: the model or the slice store differs from the checkpoint's "
                "(use --no-resume to start afresh)",
                path=last,
            )
        return last
    # An explicit fresh start: stale checkpoints and epochs must not mix with the new run.
    stale_files = (layout.metrics, layout.model, layout.record)
    for stale in (*layout.checkpoints.glob("*.ckpt"), *stale_files):
        stale.unlink(missing_ok=True)
    return None


def _record(
    *,
    model: str,
    store: Store,
    work_dir: Path,
    cfg: TrainConfig,
    mean: list[float],
    std: list[float],
) -> dict[str, Any]:
    return {
        "format": RECORD_FORMAT,
        "model": model,
        "model_config": {
            "in_channels": store.channels,
            "num_classes": len(store.classes),
            "dropout": cfg.dropout,
            "weights": cfg.weights,
        },
        "classes": store.classes,
        "input": {"channels": store.channels, "size": store.size},
        **({"representation": "volume"} if is_volume(store) else {}),
        "normalization": {"enabled": cfg.normalize, "mean": mean, "std": std},
        "split": split_subjects(store),
        "store": str(store.path.resolve()),
        "work_dir": str(work_dir.resolve()),
        "train_config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "versions": library_versions(),
    }


@dataclass(frozen=True)
class SubjectScorer:
    """Subject-level validation loss and accuracy from store rows (picklable for DDP spawn)."""

    row_subjects: list[str]  # participant_id of every row of the slice store

    def __call__(
        self, rows: np.ndarray, targets: np.ndarray, probs: np.ndarray
    ) -> tuple[float, float]:
        subjects = [self.row_subjects[int(r)] for r in rows]
        return subject_loss_accuracy(subjects, targets, probs)


def _make_trainer(cfg: TrainConfig, run_dir: Path, callbacks: list[Any], progress: bool) -> Any:
    kwargs: dict[str, Any] = {}
    if cfg.limit_train_batches is not None:
        kwargs["limit_train_batches"] = cfg.limit_train_batches
    return L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
        # "warn" keeps deterministic kernels where they exist without failing on GPU ops that
        # have none (e.g. adaptive max pooling's backward).
        deterministic="warn" if cfg.deterministic else False,
        callbacks=callbacks,
        logger=_loggers(run_dir),
        default_root_dir=str(run_dir),
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        **kwargs,
    )


def fit(
    work_dir: str | Path,
    run_dir: str | Path,
    *,
    model: str,
    config: TrainConfig | None = None,
    resume: bool | None = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Train ``model`` on the store of ``work_dir`` (slices, or volumes for a 3-D model); write
    everything into ``run_dir``.

    ``resume=None`` continues from ``RUN/checkpoints/last.ckpt`` when it exists, ``True``
    requires it, ``False`` starts afresh. A run already finished with the same model, config
    and slice store is not trained again. Returns the training summary (``None`` on non-zero
    DDP ranks).
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    cfg = config or TrainConfig()
    work_dir, run_dir = Path(work_dir), Path(run_dir)
    layout = RunLayout(run_dir)
    store = open_store(work_dir)
    _check_representation(model, cfg, store)
    train_rows = split_rows(store, "train")
    split_rows(store, "val")  # validation drives checkpoints and early stopping: it must exist
    zoo.check_model_name(model)

    identity = _identity(model, store)
    done = _finished_summary(run_dir, model, cfg, identity) if resume is not False else None
    if done is not None:
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = _resolve_resume(run_dir, resume, identity)

    if cfg.normalize:
        mean, std = channel_stats(images_path(store), train_rows)
    else:
        mean, std = [0.0] * store.channels, [1.0] * store.channels
    record = _record(model=model, store=store, work_dir=work_dir, cfg=cfg, mean=mean, std=std)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = ClassifierModule(
        model, store.channels, len(store.classes), cfg.model_dump(mode="json"), mean, std
    )
    module.record = record
    module.score_subjects = SubjectScorer(store.index["participant_id"].astype(str).tolist())
    monitor, mode = cfg.checkpoint.monitor, cfg.checkpoint.mode
    checkpoint = ModelCheckpoint(
        dirpath=str(layout.checkpoints),
        filename=RunLayout.BEST_CHECKPOINT_NAME,
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    callbacks: list[Any] = [EpochSeed(cfg.seed), EpochTable(run_dir), checkpoint]
    if cfg.early_stopping.enabled:
        callbacks.append(
            EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=cfg.early_stopping.patience,
                min_delta=cfg.early_stopping.min_delta,
            )
        )
    datamodule = SliceDataModule(
        store,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        augment=_volume_augmenter(cfg, store, std),
    )
    callbacks.append(Throughput(run_dir))
    trainer = _make_trainer(cfg, run_dir, callbacks, progress)
    # Pinned host memory only helps (and only works) when batches go to a CUDA device.
    datamodule.pin_memory = trainer.strategy.root_device.type == "cuda"
    if trainer.is_global_zero:
        write_json(layout.inputs, identity)
    with warnings.catch_warnings():
        # Expected here, not a user problem: a resumed run writes into its own checkpoint
        # directory.
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=str(ckpt_path) if ckpt_path else None,
            weights_only=True,
        )
    if not trainer.is_global_zero:
        return None
    return _finish(run_dir, work_dir, record, checkpoint, trainer)


def _finish(
    run_dir: Path, work_dir: Path, record: dict[str, Any], checkpoint: Any, trainer: Any
) -> dict[str, Any]:
    """Write ``model.pt`` (best weights + record), ``record.json`` and the summary section."""
    layout = RunLayout(run_dir)
    best_path = Path(checkpoint.best_model_path or layout.last_checkpoint)
    ckpt = read_checkpoint(best_path, keys=("state_dict", "epoch"))
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    table = read_metrics(run_dir)
    record = {
        **record,
        "best_epoch": int(ckpt["epoch"]),
        "best_val_loss": float(table.loc[table["epoch"] == ckpt["epoch"], "val_loss"].iloc[0])
        if (table["epoch"] == ckpt["epoch"]).any()
        else None,
        "epochs_run": int(table["epoch"].max()) + 1,
        "stopped_early": int(table["epoch"].max()) + 1 < int(trainer.max_epochs),
        "completed": True,
    }
    write_atomic(layout.model, lambda tmp: torch.save({"state_dict": state, "record": record}, tmp))
    write_json(layout.record, record)
    summary = training_summary(run_dir, record)
    _update_section(work_dir, "training", run_dir.name, summary)
    return summary


def training_summary(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The ``summary.json`` entry of one training run."""
    table = read_metrics(run_dir)
    best = table[table["epoch"] == record["best_epoch"]]
    return {
        "model": record["model"],
        "run_dir": str(Path(run_dir).resolve()),
        "best_epoch": record["best_epoch"],
        "epochs_run": record["epochs_run"],
        "best_val_loss": record["best_val_loss"],
        "best_val_acc": float(best["val_acc"].iloc[0]) if len(best) else None,
        "classes": record["classes"],
        "subjects": {k: len(v) for k, v in record["split"].items()},
        "seed": record["seed"],
    }


def _update_section(work_dir: Path, section: str, key: str, value: Any) -> None:
    summary_path = WorkLayout(work_dir).summary
    current = read_json(summary_path).get(section, {}) if summary_path.exists() else {}
    if not isinstance(current, dict):
        current = {}
    current[key] = value
    update_summary(work_dir, section, current)


def _finished_summary(
    run_dir: Path, model: str, cfg: TrainConfig, identity: dict[str, Any]
) -> dict[str, Any] | None:
    """The summary of a completed run with the same model, config and inputs, else ``None``."""
    layout = RunLayout(run_dir)
    path, inputs = layout.record, layout.inputs
    if not (path.is_file() and layout.model.is_file() and inputs.is_file()):
        return None
    if read_json(inputs) != identity:
        return None
    record = read_json(path)
    same = record.get("model") == model and record.get("train_config") == cfg.model_dump(
        mode="json"
    )
    if not (same and record.get("completed") and layout.metrics.is_file()):
        return None
    return training_summary(run_dir, record)
