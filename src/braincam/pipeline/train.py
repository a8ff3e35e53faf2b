"""Training: a LightningModule around a zoo model, ``fit`` (checkpoints, resume, curves, DDP) and
``load_trained`` (the trained model back, in eval mode, with its record).

Outputs in ``RUN/``::

    checkpoints/best.ckpt, checkpoints/last.ckpt   Lightning checkpoints (load with weights_only)
    model.pt        {"state_dict": best weights, "record": JSON-able record}  (weights_only)
    record.json     the same record, readable without torch
    metrics.tsv     one row per epoch: train/val loss and accuracy, learning rate
    curves.png      the training curves
    logs/           Lightning CSV (and TensorBoard, if installed) logs
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from braincam.config import AugmentConfig, TrainConfig
from braincam.data.augment import Augmenter
from braincam.data.slices import SliceStore
from braincam.errors import InputError, ModelError
from braincam.io import read_json, update_summary, write_atomic, write_json
from braincam.provenance import library_versions
from braincam.training.datamodule import (
    SliceDataModule,
    channel_stats,
    images_path,
    open_store,
    split_rows,
    split_subjects,
)

RECORD_FORMAT = "braincam-trained-model/1"
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a zoo model by name (indirection so tests can substitute a tiny model)."""
    from braincam import models

    return models.build_model(name, **kwargs)


def check_model_name(name: str) -> None:
    """Raise ``ModelError`` (listing the valid names) if ``name`` is not in the zoo."""
    from braincam import models

    get_spec = getattr(models, "get_spec", None)
    if get_spec is not None:
        get_spec(name)


class ClassifierModule(L.LightningModule):
    """Cross-entropy classification of slices; z-scoring and augmentation happen on the batch.

    The normalization statistics are buffers, so they travel with every checkpoint.
    """

    def __init__(
        self,
        model_name: str,
        in_channels: int,
        num_classes: int,
        train_config: dict[str, Any],
        mean: list[float],
        std: list[float],
    ) -> None:
        super().__init__()
        # Only primitives here: the checkpoint must load with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.cfg = TrainConfig.model_validate(train_config)
        self.model = build_model(
            model_name,
            in_channels=in_channels,
            num_classes=num_classes,
            weights=self.cfg.weights,
            dropout=self.cfg.dropout,
        )
        self.register_buffer("norm_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("norm_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.augmenter = Augmenter(AugmentConfig.model_validate(self.cfg.augment.model_dump()))
        # braincam's JSON-able record (classes, split, versions...), stored in every checkpoint.
        self.record: dict[str, Any] = {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["braincam"] = self.record

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, targets, rows = batch
        augment = self.trainer is not None and self.trainer.training and self.augmenter.enabled
        if augment:
            images = self.augmenter.before_normalize(images)
        images = (images - self.norm_mean) / self.norm_std
        if augment:
            images = self.augmenter.after_normalize(images)
        return images, targets, rows

    def _step(self, batch: Any, stage: str) -> Tensor:
        images, targets, _ = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, targets)
        acc = (logits.argmax(dim=1) == targets).float().mean()
        n = targets.shape[0]
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        opt_cfg, sched_cfg = self.cfg.optimizer, self.cfg.schedule
        params = self.model.parameters()
        if opt_cfg.name == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=opt_cfg.lr, momentum=opt_cfg.momentum, weight_decay=opt_cfg.weight_decay
            )
        elif opt_cfg.name == "adam":
            optimizer = torch.optim.Adam(params, lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
        if sched_cfg.name == "none":
            return optimizer
        if sched_cfg.name == "cosine":
            scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=self.cfg.epochs, eta_min=sched_cfg.min_lr
            )
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=sched_cfg.step_size, gamma=sched_cfg.gamma
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


def _float(metrics: dict[str, Any], key: str) -> float:
    value = metrics.get(key)
    return float(value) if value is not None else math.nan


def plot_curves(table: pd.DataFrame, path: str | Path) -> Path:
    """Loss and accuracy per epoch, train and validation (the studies' training curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for stage, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(table["epoch"], table[f"{stage}_loss"], style, label=stage, markersize=3)
        ax_acc.plot(table["epoch"], table[f"{stage}_acc"], style, label=stage, markersize=3)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="slice accuracy", title="Accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


class EpochTable(L.Callback):
    """Append each epoch's train/val loss and accuracy to ``metrics.tsv`` and redraw the curves.

    Rows of epochs at or after the current one are dropped first, so a run resumed after an
    interruption never lists an epoch twice.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "metrics.tsv"
        self.png = run_dir / "curves.png"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        epoch = trainer.current_epoch
        row = {
            "epoch": epoch,
            "train_loss": _float(metrics, "train_loss"),
            "train_acc": _float(metrics, "train_acc"),
            "val_loss": _float(metrics, "val_loss"),
            "val_acc": _float(metrics, "val_acc"),
            "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
        }
        table = read_metrics(self.path.parent) if self.path.exists() else None
        if table is not None:
            table = table[table["epoch"] < epoch]
        new = pd.DataFrame([row], columns=list(METRIC_COLUMNS))
        table = new if table is None or table.empty else pd.concat([table, new], ignore_index=True)
        write_atomic(self.path, lambda tmp: table.to_csv(tmp, sep="\t", index=False))
        plot_curves(table, self.png)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The per-epoch table ``RUN/metrics.tsv``."""
    return pd.read_csv(Path(run_dir) / "metrics.tsv", sep="\t")


def _loggers(run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="logs")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard"))
    return loggers


def _identity(model: str, store: SliceStore) -> dict[str, Any]:
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
    }


def _resolve_resume(run_dir: Path, resume: bool | None, identity: dict[str, Any]) -> Path | None:
    last = run_dir / "checkpoints" / "last.ckpt"
    inputs = run_dir / "inputs.json"
    same_inputs = inputs.is_file() and read_json(inputs) == identity
    if resume is None and last.is_file() and not same_inputs:
        # The store (split, classes, images) or the model changed since that checkpoint:
        # continuing it would mix two experiments, so start afresh.
        warnings.warn(
            f"{last} was trained on other inputs (model or slice store changed); starting afresh",
            stacklevel=3,
        )
        resume = False
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
    stale_files = (run_dir / "metrics.tsv", run_dir / "model.pt", run_dir / "record.json")
    for stale in (*(run_dir / "checkpoints").glob("*.ckpt"), *stale_files):
        stale.unlink(missing_ok=True)
    return None


def _record(
    *,
    model: str,
    store: SliceStore,
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
        "normalization": {"enabled": cfg.normalize, "mean": mean, "std": std},
        "split": split_subjects(store),
        "store": str(store.path.resolve()),
        "work_dir": str(work_dir.resolve()),
        "train_config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "versions": library_versions(),
    }


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
    """Train ``model`` on the slice store of ``work_dir``; write everything into ``run_dir``.

    ``resume=None`` continues from ``RUN/checkpoints/last.ckpt`` when it exists, ``True``
    requires it, ``False`` starts afresh. A run already finished with the same model, config
    and slice store is not trained again. Returns the training summary (``None`` on non-zero
    DDP ranks).
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    cfg = config or TrainConfig()
    work_dir, run_dir = Path(work_dir), Path(run_dir)
    store = open_store(work_dir / "slices")
    train_rows = split_rows(store, "train")
    split_rows(store, "val")  # validation drives checkpoints and early stopping: it must exist
    check_model_name(model)

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
    checkpoint = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="best",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    callbacks: list[Any] = [EpochTable(run_dir), checkpoint]
    if cfg.early_stopping.enabled:
        callbacks.append(
            EarlyStopping(
                monitor="val_loss",
                mode="min",
                patience=cfg.early_stopping.patience,
                min_delta=cfg.early_stopping.min_delta,
            )
        )
    datamodule = SliceDataModule(store, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    trainer = _make_trainer(cfg, run_dir, callbacks, progress)
    if trainer.is_global_zero:
        write_json(run_dir / "inputs.json", identity)
    with warnings.catch_warnings():
        # Expected here, not a user problem: batch hooks live in the module by design, and a
        # resumed run writes into its own checkpoint directory.
        warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")
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
    best_path = Path(checkpoint.best_model_path or run_dir / "checkpoints" / "last.ckpt")
    ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
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
    write_atomic(
        run_dir / "model.pt", lambda tmp: torch.save({"state_dict": state, "record": record}, tmp)
    )
    write_json(run_dir / "record.json", record)
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
    summary_path = work_dir / "summary.json"
    current = read_json(summary_path).get(section, {}) if summary_path.exists() else {}
    if not isinstance(current, dict):
        current = {}
    current[key] = value
    update_summary(work_dir, section, current)


def _finished_summary(
    run_dir: Path, model: str, cfg: TrainConfig, identity: dict[str, Any]
) -> dict[str, Any] | None:
    """The summary of a completed run with the same model, config and inputs, else ``None``."""
    path = run_dir / "record.json"
    inputs = run_dir / "inputs.json"
    if not (path.is_file() and (run_dir / "model.pt").is_file() and inputs.is_file()):
        return None
    if read_json(inputs) != identity:
        return None
    record = read_json(path)
    same = record.get("model") == model and record.get("train_config") == cfg.model_dump(
        mode="json"
    )
    if not (same and record.get("completed") and (run_dir / "metrics.tsv").is_file()):
        return None
    return training_summary(run_dir, record)


def load_trained(
    run_dir: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """The best model of a run (eval mode, on ``device``) and its record.

    The record holds ``model``, ``classes``, ``normalization`` (``mean``/``std`` per channel —
    apply :func:`normalize` to raw store images before calling the model), ``split``, ``input``,
    ``train_config`` and ``versions``.
    """
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise InputError("no trained model in the run directory (run `braincam train`)", path=path)
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise InputError(f"cannot read trained model: {exc}", path=path) from None
    record = saved.get("record", {})
    if record.get("format") != RECORD_FORMAT:
        raise InputError("not a braincam model file", path=path, value=record.get("format"))
    cfg = record["model_config"]
    model = build_model(
        record["model"],
        in_channels=cfg["in_channels"],
        num_classes=cfg["num_classes"],
        weights=None,
        dropout=cfg["dropout"],
    )
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"weights in {path} do not match {record['model']}: {exc}") from None
    return model.to(device).eval(), record


def normalize(images: Tensor, record: dict[str, Any]) -> Tensor:
    """Z-score raw store images ``(N, C, S, S)`` with the run's train-split statistics."""
    norm = record["normalization"]
    mean = torch.tensor(norm["mean"], dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"], dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std
