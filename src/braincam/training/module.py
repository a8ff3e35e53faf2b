"""The LightningModule of braincam training and its per-epoch table.

:class:`ClassifierModule` wraps a zoo model (z-scoring and 2-D augmentation happen on the batch;
volumes are augmented in the data loader);
:class:`EpochTable` writes ``RUN/metrics.tsv`` and ``RUN/curves.png`` after every epoch. The fit
step that uses them is :func:`braincam.pipeline.train.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from braincam.config import AugmentConfig, ScheduleConfig, TrainConfig
from braincam.data.augment import Augmenter
from braincam.io import write_atomic
from braincam.layout import RunLayout
from braincam.provenance import peak_rss_mib
from braincam.training import zoo
from braincam.training.datamodule import epoch_seed, make_loader

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_loss_smooth",
    "val_subject_loss",
    "val_subject_acc",
    "lr",
)


#: (store rows, targets, class probabilities) → (subject-level loss, subject-level accuracy)
SubjectScorer = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, float]]


def lr_factor(epoch: int, schedule: ScheduleConfig, epochs: int, base_lr: float) -> float:
    """The learning rate of ``epoch`` as a fraction of the optimizer's ``base_lr``.

    Linear warm-up first (epoch ``e < W``: ``(e + 1) / (W + 1)``), then the schedule over the
    remaining ``epochs − W`` epochs, counted from 0: cosine from 1 down to ``min_lr / base_lr``
    (the closed form of PyTorch's ``CosineAnnealingLR``), or ``gamma`` every ``step_size``.
    """
    warm = schedule.warmup_epochs
    if epoch < warm:
        return (epoch + 1) / (warm + 1)
    t = epoch - warm
    if schedule.name == "cosine":
        floor = schedule.min_lr / base_lr
        span = max(epochs - warm, 1)
        return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * min(t, span) / span)) / 2.0
    if schedule.name == "step":
        return schedule.gamma ** (t // schedule.step_size)
    return 1.0


class ClassifierModule(L.LightningModule):
    """Cross-entropy classification of slices (or volumes); z-scoring and (2-D) augmentation
    happen on the batch.

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
        self.model = zoo.build_model(
            model_name,
            in_channels=in_channels,
            num_classes=num_classes,
            weights=self.cfg.weights,
            dropout=self.cfg.dropout,
        )
        if self.cfg.channels_last:
            # NHWC weights: cuDNN's tensor-core convolutions (AMP) run without layout transposes.
            self.model = self.model.to(memory_format=torch.channels_last)
        self.register_buffer("norm_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("norm_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.augmenter = Augmenter(AugmentConfig.model_validate(self.cfg.augment.model_dump()))
        # braincam's JSON-able record (classes, split, versions...), stored in every checkpoint.
        self.record: dict[str, Any] = {}
        #: (store rows, targets, probabilities) → subject-level (loss, accuracy) of a validation
        #: epoch, for ``val_subject_loss`` / ``val_subject_acc``. Set by ``fit`` (the metric lives
        #: in ``braincam.metrics``, a layer training does not import).
        self.score_subjects: SubjectScorer | None = None
        self._val_outputs: list[tuple[Tensor, Tensor, Tensor]] = []
        #: the running average behind ``val_loss_smooth``; checkpointed so resume stays exact
        self.smooth_val_loss: float | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["braincam"] = self.record
        checkpoint["braincam_smooth_val_loss"] = self.smooth_val_loss

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.smooth_val_loss = checkpoint.get("braincam_smooth_val_loss")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def prepare_images(self, images: Tensor, *, train: bool) -> Tensor:
        """Z-score a batch (and augment it when ``train``), on its device.

        Done in the step, not in ``on_after_batch_transfer``: Lightning may transfer the first
        batch of an epoch before ``on_train_epoch_start``, where :class:`EpochSeed` seeds the
        random draws, and a resumed run must draw exactly what an uninterrupted one does.
        """
        # The 2-D augmenter takes slice batches (N, C, H, W) only: volumes (N, C, D, H, W) are
        # augmented per sample in the data loader (SliceDataset with a VolumeAugmenter).
        augment = train and self.augmenter.enabled and images.ndim == 4
        if augment:
            images = self.augmenter.before_normalize(images)
        # The buffers are (1, C, 1, 1) (their checkpointed shape); volumes add one axis.
        shape = (1, -1, *([1] * (images.ndim - 2)))
        images = (images - self.norm_mean.view(shape)) / self.norm_std.view(shape)
        if augment:
            images = self.augmenter.after_normalize(images)
        return images

    def _step(self, batch: Any, stage: str) -> tuple[Tensor, Tensor]:
        images, targets, _ = batch
        images = self.prepare_images(images, train=stage == "train")
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = self.model(images)
        loss = F.cross_entropy(logits, targets)
        acc = (logits.argmax(dim=1) == targets).float().mean()
        n = targets.shape[0]
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss, logits

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, logits = self._step(batch, "val")
        _, targets, rows = batch
        self._val_outputs.append((rows.detach(), targets.detach(), logits.detach().float()))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []
        if self.cfg.bn_recalibrate and not self.trainer.sanity_checking:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is not None:
                train = make_loader(datamodule.dataset("train"), self.cfg.batch_size)
                self.recalibrate_batchnorm(batch[0] for batch in train)

    def recalibrate_batchnorm(self, batches: Iterable[Tensor]) -> int:
        """Set every BatchNorm's running statistics to the average of its batch statistics over
        ``batches`` (raw images; z-scored here, not augmented), with the current weights.

        Running averages with momentum lag a network whose weights move fast, so evaluation
        sees statistics of older weights (issue 14: validation-loss spikes). The pass is in a
        fixed order without random draws, so a resumed run stays exact. Returns the number
        of BatchNorm layers reset.
        """
        norms = [
            m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        if not norms:
            return 0
        saved = [(m, m.momentum, m.training) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative: the plain mean over the batches
            m.train()
        # Validation runs under inference mode, where buffers cannot be updated for later use.
        with torch.inference_mode(False), torch.no_grad():
            for images in batches:
                self.model(self.prepare_images(images.to(self.device), train=False))
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
        return len(norms)

    def on_validation_epoch_end(self) -> None:
        """Log ``val_subject_loss``, ``val_subject_acc`` and ``val_loss_smooth`` for the epoch."""
        if not self._val_outputs:
            return
        rows, targets, logits = (torch.cat(parts) for parts in zip(*self._val_outputs, strict=True))
        self._val_outputs = []
        if self.trainer.world_size > 1:
            # Every rank scores the whole split (the sampler pads ranks to equal length, so a
            # few slices may count twice: the same as Lightning's own val_loss under DDP).
            gathered = (self.all_gather(t).flatten(0, 1) for t in (rows, targets, logits))
            rows, targets, logits = gathered
        probs = torch.softmax(logits, dim=1).cpu().numpy()
        slice_loss = float(F.cross_entropy(logits, targets).item())
        if not self.trainer.sanity_checking:  # the sanity check sees 2 batches: not an epoch
            beta = self.cfg.checkpoint.smoothing
            previous = self.smooth_val_loss
            self.smooth_val_loss = (
                slice_loss if previous is None else beta * previous + (1 - beta) * slice_loss
            )
        smooth = slice_loss if self.smooth_val_loss is None else self.smooth_val_loss
        values = {"val_loss_smooth": smooth}
        if self.score_subjects is not None:
            loss, acc = self.score_subjects(rows.cpu().numpy(), targets.cpu().numpy(), probs)
            values |= {"val_subject_loss": loss, "val_subject_acc": acc}
        # Every rank holds the same gathered figures, so each logs them (checkpointing and early
        # stopping run on every rank and need the monitored value there).
        for key, value in values.items():
            self.log(key, value, on_step=False, on_epoch=True)

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
        if sched_cfg.name == "none" and sched_cfg.warmup_epochs == 0:
            return optimizer  # the studies' constant learning rate, no scheduler state
        epochs, base = self.cfg.epochs, opt_cfg.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: lr_factor(epoch, sched_cfg, epochs, base)
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
        layout = RunLayout(run_dir)
        self.path = layout.metrics
        self.png = layout.curves
        self._lr = math.nan

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Read here: by on_train_epoch_end Lightning has already stepped an epoch scheduler, and
        # the table would show the next epoch's rate.
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])

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
            "val_loss_smooth": _float(metrics, "val_loss_smooth"),
            "val_subject_loss": _float(metrics, "val_subject_loss"),
            "val_subject_acc": _float(metrics, "val_subject_acc"),
            "lr": self._lr,  # the rate this epoch trained with
        }
        table = read_metrics(self.path.parent) if self.path.exists() else None
        if table is not None:
            table = table[table["epoch"] < epoch]
        new = pd.DataFrame([row], columns=list(METRIC_COLUMNS))
        table = new if table is None or table.empty else pd.concat([table, new], ignore_index=True)
        write_atomic(self.path, lambda tmp: table.to_csv(tmp, sep="\t", index=False))
        plot_curves(table, self.png)


class EpochSeed(L.Callback):
    """Seed Python, NumPy and torch at the start of every training epoch from (seed, epoch).

    Dropout and augmentation then draw the same numbers in epoch ``k`` whether the run went
    straight through or was stopped and resumed from the checkpoint of epoch ``k - 1``; the
    data order comes from :class:`~braincam.training.datamodule.EpochShuffle` the same way.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import random

        import numpy as np

        value = epoch_seed(self.seed, trainer.current_epoch) + trainer.global_rank
        random.seed(value)
        np.random.seed(value % 2**32)  # noqa: NPY002 - libraries may draw from it
        torch.manual_seed(value)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The per-epoch table ``RUN/metrics.tsv``."""
    return pd.read_csv(RunLayout(run_dir).metrics, sep="\t")


THROUGHPUT_COLUMNS = ("epoch", "train_images", "train_seconds", "epoch_seconds", "images_per_s",
                      "peak_gpu_mb", "peak_rss_mib")  # fmt: skip


class Throughput(L.Callback):
    """Write ``RUN/throughput.tsv``: per epoch, training images/s, seconds and peak GPU memory.

    ``train_seconds`` runs from the epoch's start to its last training batch (data loading
    included, validation not); ``epoch_seconds`` includes validation. ``peak_gpu_mb`` is
    ``torch.cuda.max_memory_allocated`` of this process (empty when not on a CUDA device);
    ``peak_rss_mib`` the process's resident-memory high-water mark so far (in ``braincam run``
    it also covers the steps before training in the same process).
    Rows of epochs at or after the current one are dropped first (resume, fresh start).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "throughput.tsv"
        self._start = self._last = 0.0
        self._images = 0

    @staticmethod
    def _cuda(pl_module: L.LightningModule) -> bool:
        return pl_module.device.type == "cuda"

    def _now(self, pl_module: L.LightningModule) -> float:
        import time

        if self._cuda(pl_module):
            torch.cuda.synchronize(pl_module.device)  # kernels are asynchronous
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._cuda(pl_module):
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._images = 0
        self._start = self._last = self._now(pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self._images += int(batch[1].shape[0]) * trainer.world_size
        self._last = self._now(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        end = self._now(pl_module)
        train_s = self._last - self._start
        peak = (
            torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            if self._cuda(pl_module)
            else None
        )
        row = {
            "epoch": trainer.current_epoch,
            "train_images": self._images,
            "train_seconds": train_s,
            "epoch_seconds": end - self._start,
            "images_per_s": self._images / train_s if train_s > 0 else math.nan,
            "peak_gpu_mb": peak,
            "peak_rss_mib": peak_rss_mib(),
        }
        table = read_throughput(self.path.parent)
        if table is not None:
            table = table[table["epoch"] < trainer.current_epoch]
        new = pd.DataFrame([row], columns=list(THROUGHPUT_COLUMNS))
        table = new if table is None or table.empty else pd.concat([table, new], ignore_index=True)
        write_atomic(self.path, lambda tmp: table.to_csv(tmp, sep="\t", index=False))


def read_throughput(run_dir: str | Path) -> pd.DataFrame | None:
    """The per-epoch table ``RUN/throughput.tsv``, or ``None`` if the run has none."""
    path = Path(run_dir) / "throughput.tsv"
    return pd.read_csv(path, sep="\t") if path.is_file() else None
