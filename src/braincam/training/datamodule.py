"""Datasets and the Lightning DataModule over the memory-mapped slice store (``WORK/slices/``)
or volume store (``WORK/volumes/``: one ``(C, X, Y, Z)`` sample per subject).

The store's files are read as the contract in ``docs/architecture.md`` defines them. A batch is
fetched with one fancy-indexing read of the memmap (``__getitems__``), not one read per slice,
and each worker process opens its own memmap (the handle is dropped when pickled).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from braincam.data.augment3d import VolumeAugmenter
from braincam.data.slices import SliceStore
from braincam.data.volumes import VolumeStore, open_any_store, store_path  # noqa: F401
from braincam.errors import InputError

SPLITS = ("train", "val", "test")
_INDEX_COLUMNS = ("participant_id", "label", "target", "split", "axis", "position")
_VOLUME_COLUMNS = ("participant_id", "label", "target", "split")
#: The :func:`epoch_seed` stream of per-sample volume augmentation (0: EpochSeed, 1: the order).
AUGMENT_STREAM = 2
#: Any store training reads: 2.5D slices or whole volumes (the same index/classes/rows API).
Store = SliceStore | VolumeStore


def is_volume(store: Store) -> bool:
    """True for a whole-volume store (samples ``(C, X, Y, Z)``), False for 2.5D slices."""
    return isinstance(store, VolumeStore)


def store_name(store: Store) -> str:
    """``"slice store"`` or ``"volume store"``, for messages."""
    return "volume store" if is_volume(store) else "slice store"


def open_store(path: str | Path) -> Store:
    """Open a store for training: :func:`open_any_store` plus what training relies on (the
    index columns, float32 images, at least two classes, targets in range)."""
    store = open_any_store(path)
    path = store.path
    volume = is_volume(store)
    needed = _VOLUME_COLUMNS if volume else _INDEX_COLUMNS
    missing = [c for c in needed if c not in store.index.columns]
    if missing:
        raise InputError(f"store index lacks columns {missing}", path=path / "index.tsv")
    images = store.images
    if images.ndim != (5 if volume else 4) or images.dtype != np.float32:
        raise InputError(
            f"images.npy must be float32 {'(N, C, X, Y, Z)' if volume else '(N, C, S, S)'}",
            path=path / "images.npy",
            value=f"{images.dtype} {images.shape}",
        )
    if len(store.classes) < 2:
        raise InputError("meta.json must list at least two classes", path=path / "meta.json")
    targets = store.index["target"].to_numpy()
    if targets.min() < 0 or targets.max() >= len(store.classes):
        raise InputError(
            f"index targets must lie in 0..{len(store.classes) - 1}",
            path=path / "index.tsv",
            value=sorted(set(targets.tolist())),
        )
    return store


def split_rows(store: Store, split: str) -> np.ndarray:
    """Row numbers (into ``images``) of the slices in ``split``; error if there are none."""
    if split not in SPLITS:
        raise InputError(f"unknown split (expected one of {list(SPLITS)})", value=split)
    rows = np.flatnonzero(store.index["split"].to_numpy() == split)
    if rows.size == 0:
        raise InputError(
            f"split '{split}' of the {store_name(store)} has no "
            f"{'volumes' if is_volume(store) else 'slices'}",
            path=store.path / "index.tsv",
        )
    return rows


def split_subjects(store: Store) -> dict[str, list[str]]:
    """Sorted participant IDs per split (empty splits included)."""
    return {s: sorted(store.subjects(s)) for s in SPLITS}


def images_path(store: Store) -> Path:
    """The store's image array (opened per worker process by :class:`SliceDataset`)."""
    return store.path / "images.npy"


def channel_stats(
    images_path: str | Path, rows: np.ndarray, chunk: int = 512
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation over ``rows`` (float64 accumulation, chunked)
    of slices ``(N, C, S, S)`` or volumes ``(N, C, X, Y, Z)``."""
    images = np.load(images_path, mmap_mode="r")
    total = np.zeros(images.shape[1])
    total_sq = np.zeros(images.shape[1])
    count = 0
    rows = np.sort(rows)
    axes = (0, *range(2, images.ndim))  # every axis but the channels
    if images.ndim == 5:
        chunk = max(1, chunk // 64)  # a volume holds ~64 slices' worth of voxels
    for start in range(0, rows.size, chunk):
        block = np.asarray(images[rows[start : start + chunk]], dtype=np.float64)
        total += block.sum(axis=axes)
        total_sq += np.square(block).sum(axis=axes)
        count += block.size // block.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std < 1e-8, 1.0, std)  # a constant channel: leave it unscaled
    return mean.tolist(), std.tolist()


def _collate_batch(batch: Any) -> Any:
    """``__getitems__`` already returns a batch; keep it as is (a module-level function so
    worker processes can pickle it)."""
    return batch


#: What a loader asks a dataset for: a position, or ``(epoch, position)`` from a sampler that
#: tags its items with the epoch (:class:`EpochShuffle` of an augmenting dataset).
Item = int | tuple[int, int]


class SliceDataset(Dataset):
    """Samples ``rows`` of a store's ``images.npy`` (slices or volumes): items are
    ``(image, target, row)``.

    ``augment`` (volumes, the train split): a :class:`~braincam.data.augment3d.VolumeAugmenter`
    applied to each raw volume, before the module z-scores the batch, when the item asked for is
    ``(epoch, i)``; sample ``i`` of epoch ``epoch`` draws from ``epoch_seed(seed, epoch,
    stream=AUGMENT_STREAM, item=i)`` alone. A plain ``i`` (validation-style loaders, BatchNorm
    recalibration) serves the raw volume.

    Why the epoch travels with the item: the draws must depend on (seed, epoch, sample) only, so
    that a run resumed in epoch ``k`` sees what an uninterrupted one does, whatever the number of
    workers. With ``num_workers > 0`` (persistent workers) the dataset lives on as a copy in each
    worker process, so an epoch attribute set in the main process (from ``set_epoch`` or the
    module's ``on_train_epoch_start``) would never reach it; the sampler's indices do, every batch.
    """

    def __init__(
        self,
        images_path: str | Path,
        rows: np.ndarray,
        targets: np.ndarray,
        *,
        augment: VolumeAugmenter | None = None,
        seed: int = 0,
    ) -> None:
        self.images_path = Path(images_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getstate__(self) -> dict[str, Any]:
        # A memmap must not cross process boundaries: each worker reopens its own.
        state = self.__dict__.copy()
        state["_images"] = None
        return state

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.images_path, mmap_mode="r")
        return self._images

    def sample_seed(self, epoch: int, i: int) -> int:
        """The seed of sample ``i``'s augmentation in ``epoch``."""
        return epoch_seed(self.seed, epoch, stream=AUGMENT_STREAM, item=i)

    def _augmented(self, image: Tensor, epoch: int | None, i: int) -> Tensor:
        if self.augment is None or epoch is None:
            return image
        return self.augment(image, seed=self.sample_seed(epoch, i))

    def __getitem__(self, item: Item) -> tuple[Tensor, Tensor, Tensor]:
        epoch, i = _split_item(item)
        row = int(self.rows[i])
        image = torch.from_numpy(np.array(self.images[row], dtype=np.float32))
        return self._augmented(image, epoch, i), self.targets[i], torch.tensor(row)

    def __getitems__(self, items: list[Item]) -> tuple[Tensor, Tensor, Tensor]:
        # One sorted fancy-index read per batch; the order inside a batch does not matter.
        parts = [_split_item(item) for item in items]
        items_arr = np.asarray([i for _, i in parts], dtype=np.int64)
        rows = self.rows[items_arr]
        order = np.argsort(rows, kind="stable")
        rows, items_arr = rows[order], items_arr[order]
        images = torch.from_numpy(np.ascontiguousarray(self.images[rows], dtype=np.float32))
        if self.augment is not None:
            epochs = [parts[k][0] for k in order]
            images = torch.stack(
                [
                    self._augmented(image, epoch, int(i))
                    for image, epoch, i in zip(images, epochs, items_arr, strict=True)
                ]
            )
        return images, self.targets[torch.from_numpy(items_arr)], torch.from_numpy(rows)


def _split_item(item: Item) -> tuple[int | None, int]:
    """``(epoch, i)`` of an item; ``epoch`` is ``None`` for a plain position."""
    if isinstance(item, tuple):
        return int(item[0]), int(item[1])
    return None, int(item)


def make_dataset(
    store: Store, split: str, *, augment: VolumeAugmenter | None = None, seed: int = 0
) -> SliceDataset:
    """The dataset of one split of ``store``; ``augment`` (volumes): see :class:`SliceDataset`."""
    if augment is not None and not is_volume(store):
        raise InputError("a VolumeAugmenter augments volumes; this is a slice store")
    rows = split_rows(store, split)
    targets = store.index["target"].to_numpy()[rows]
    return SliceDataset(images_path(store), rows, targets, augment=augment, seed=seed)


class EpochShuffle(Sampler[Item]):
    """A random order that depends only on ``seed`` and the epoch (``set_epoch``, which
    Lightning calls before every training epoch), so a resumed run sees the same batches as
    an uninterrupted one.

    ``tag_epoch``: yield ``(epoch, i)`` instead of ``i``, for a dataset whose samples depend on
    the epoch (an augmenting :class:`SliceDataset`)."""

    def __init__(self, n: int, seed: int = 0, *, tag_epoch: bool = False) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0
        self.tag_epoch = bool(tag_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Item]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=1))
        order = torch.randperm(self.n, generator=gen).tolist()
        if self.tag_epoch:
            yield from ((self.epoch, i) for i in order)
        else:
            yield from order


def epoch_seed(seed: int, epoch: int, *, stream: int = 0, item: int | None = None) -> int:
    """A 63-bit seed derived from (run seed, epoch, stream[, item]): independent streams per
    epoch (and per sample ``item`` of a stream)."""
    key = f"{int(seed)}:{int(epoch)}:{int(stream)}"
    if item is not None:  # without it, the seeds of earlier versions (resume, reruns) stay
        key += f":{int(item)}"
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def make_loader(
    dataset: SliceDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader that fetches whole batches from the memmap; ``shuffle`` orders each epoch
    by (``seed``, epoch) — see :class:`EpochShuffle`. ``pin_memory`` for GPU training: page-
    locked batches copy to the device asynchronously."""
    # An augmenting dataset's samples depend on the epoch: its sampler says which (SliceDataset).
    tag = getattr(dataset, "augment", None) is not None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffle(len(dataset), seed, tag_epoch=tag) if shuffle else None,
        # Its own generator: creating an iterator then draws no number from the global RNG,
        # whose draws in training must not depend on when Lightning creates the iterator.
        generator=torch.Generator().manual_seed(int(seed)),
        num_workers=num_workers,
        collate_fn=_collate_batch,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )


class SliceDataModule(L.LightningDataModule):
    """Train/val/test loaders over a slice (or volume) store, split by its ``split`` column.

    ``augment`` (volume store): the train split's samples go through it (see
    :class:`SliceDataset`), seeded from ``seed``; val and test never."""

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        augment: VolumeAugmenter | None = None,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.augment = augment
        self.pin_memory = pin_memory
        self.store = store
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self._datasets: dict[str, SliceDataset] = {}

    def dataset(self, split: str) -> SliceDataset:
        if split not in self._datasets:
            augment = self.augment if split == "train" else None
            self._datasets[split] = make_dataset(self.store, split, augment=augment, seed=self.seed)
        return self._datasets[split]

    def train_dataloader(self) -> DataLoader:
        return make_loader(
            self.dataset("train"),
            self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            seed=self.seed,
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _eval_loader(self, split: str) -> DataLoader:
        return make_loader(
            self.dataset(split),
            self.eval_batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
