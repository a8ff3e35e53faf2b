"""The 2.5D slice store on disk: its format, what goes in (:class:`SliceSource`), and the read
side (:class:`SliceStore`, memory-mapped) with the counts ``summary.json`` reports.

Layout of a store directory: ``images.npy`` (float32, n × C × S × S), ``masks.npy`` (uint8, when
any subject has a ground-truth mask), ``brain.npy`` (uint8, the brain masks, when given),
``pixel_to_world.npy`` (n × 4 × 3), ``index.tsv`` (one row per slice: :data:`INDEX_COLUMNS`)
and ``meta.json`` (written last). How slices are taken from a
volume is :mod:`braincam.data.slicing`; building a store is :mod:`braincam.data.slice_build`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import pandas as pd

from braincam.config.prepare import SliceSpec  # noqa: F401  (part of the store's API)
from braincam.data.slicing import SubjectSlices, backproject
from braincam.data.store import IndexedStore
from braincam.errors import ConfigError, InputError
from braincam.imaging.orientation import AXES, FIXED_AXIS  # noqa: F401
from braincam.io import read_json

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
INDEX_COLUMNS = ("participant_id", "label", "target", "split", "axis", "position", "mask_pixels")
NA = "n/a"  # BIDS spelling of a missing value in TSV files


@dataclass(frozen=True)
class SliceSource:
    """One subject's input to :func:`build_slice_store`."""

    participant_id: str
    label: str
    images: Sequence[Path]
    mask: Path | None = None  # ground truth (where the groups differ)
    brain_mask: Path | None = None

    def __post_init__(self) -> None:
        images = (self.images,) if isinstance(self.images, str | Path) else self.images
        object.__setattr__(self, "images", tuple(Path(p) for p in images))
        object.__setattr__(self, "participant_id", str(self.participant_id))
        object.__setattr__(self, "label", str(self.label))
        for name in ("mask", "brain_mask"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if not self.images:
            raise InputError("slice source has no image", subject=self.participant_id)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Slice → volume
# --------------------------------------------------------------------------------------------


@dataclass
class SliceStore(IndexedStore):
    """Read side of a slice store directory (arrays memory-mapped read-only)."""

    path: Path
    images: np.ndarray
    index: pd.DataFrame
    meta: dict[str, Any]
    pixel_to_world: np.ndarray
    masks: np.ndarray | None = None
    brain: np.ndarray | None = None  # brain masks (n, S, S); None in stores without them

    @classmethod
    def open(cls, path: str | Path) -> SliceStore:
        """Open ``path``; InputError when it is missing, incomplete or inconsistent."""
        path = Path(path)
        needed = ["meta.json", "images.npy", "index.tsv", "pixel_to_world.npy"]
        missing = [n for n in needed if not (path / n).is_file()]
        if missing:
            raise InputError(
                "slice store is missing or incomplete (run `braincam prepare` first)",
                path=path,
                value=missing,
            )
        try:
            meta = read_json(path / "meta.json")
            images = np.load(path / "images.npy", mmap_mode="r")
            p2w = np.load(path / "pixel_to_world.npy")
            index = pd.read_csv(
                path / "index.tsv",
                sep="\t",
                dtype={"participant_id": str, "label": str, "split": str, "axis": str},
                keep_default_na=False,
                na_values={"mask_pixels": [NA]},
            )
            masks, brain = (
                np.load(path / name, mmap_mode="r") if (path / name).is_file() else None
                for name in ("masks.npy", "brain.npy")
            )
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read slice store: {exc}", path=path) from exc
        index["mask_pixels"] = index["mask_pixels"].astype("Int64")
        n = len(index)
        if (
            images.shape[0] != n
            or p2w.shape != (n, 4, 3)
            or any(m is not None and m.shape[0] != n for m in (masks, brain))
            or meta.get("n_slices") != n
        ):
            raise InputError(
                "slice store arrays disagree with index.tsv",
                path=path,
                value={"index": n, "images": images.shape, "pixel_to_world": p2w.shape},
            )
        return cls(
            path=path,
            images=images,
            index=index,
            meta=meta,
            pixel_to_world=p2w,
            masks=masks,
            brain=brain,
        )

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def grid(self, participant_id: str, which: str = "source") -> tuple[np.ndarray, tuple]:
        """(affine, shape) of a subject's ``"source"`` image grid or isotropic ``"grid"``."""
        if which not in ("source", "grid"):
            raise ConfigError(f"grid must be 'source' or 'grid', got {which!r}")
        info = self.meta["subjects"].get(participant_id)
        if info is None:
            raise InputError("subject not in slice store", subject=participant_id, path=self.path)
        key = "source" if which == "source" else "grid"
        return np.asarray(info[f"{key}_affine"]), tuple(info[f"{key}_shape"])

    def backproject(
        self,
        values: np.ndarray | torch.Tensor,
        participant_id: str,
        *,
        target: str = "source",
        rows: Sequence[int] | None = None,
        thickness: float | None = None,
    ) -> nib.Nifti1Image:
        """Back-project per-slice maps of one subject to a NIfTI on its source (or iso) grid.

        ``values`` are aligned with ``rows`` (default: all the subject's rows, in store order).
        ``thickness`` defaults to the store's isotropic voxel size, so each slice fills its slab.
        """
        if rows is None:
            rows = self.rows(participant_id=participant_id).index.to_numpy()
        affine, shape = self.grid(participant_id, target)
        if thickness is None:
            thickness = float(self.meta["subjects"][participant_id]["voxel_size_mm"])
        vol = backproject(
            values, self.pixel_to_world[np.asarray(rows)], affine, shape, thickness=thickness
        )
        return nib.Nifti1Image(vol, affine)


def count_mask_slices(obj: SliceStore | SubjectSlices) -> dict[str, int] | int | None:
    """Slices that contain mask pixels: per subject for a store, a count for one subject.

    Subjects without a mask are left out of the dict (``None`` for a SubjectSlices).
    """
    if isinstance(obj, SubjectSlices):
        return None if obj.mask_pixels is None else int((obj.mask_pixels > 0).sum())
    idx = obj.index.dropna(subset=["mask_pixels"])
    hits = (idx["mask_pixels"] > 0).groupby(idx["participant_id"], sort=False).sum()
    return {str(pid): int(n) for pid, n in hits.items()}


def store_summary(store: SliceStore) -> dict[str, Any]:
    """Counts for ``summary.json``: slices and subjects per split, mask-hit slices per subject."""
    idx = store.index
    per_split = idx.groupby("split", sort=True)
    return {
        "n_slices": len(idx),
        "n_subjects": int(idx["participant_id"].nunique()),
        "classes": store.classes,
        "slices_per_split": {str(k): len(g) for k, g in per_split},
        "subjects_per_split": {str(k): int(g["participant_id"].nunique()) for k, g in per_split},
        "slices_per_label": {
            str(k): int(n) for k, n in idx["label"].value_counts().sort_index().items()
        },
        "mask_slices": count_mask_slices(store),
        "size": store.size,
        "channels": store.channels,
        "axes": list(store.meta["axes"]),
        "slices_per_axis": int(store.meta["slices_per_axis"]),
        "voxel_size_mm": store.meta.get("voxel_size_mm"),
    }
