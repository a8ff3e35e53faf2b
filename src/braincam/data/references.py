"""Reference inputs for attributions that compare an image with a group (Integrated Gradients
from a reference, :class:`braincam.cam.methods.reference.IntegratedGradients`).

The reference of an image explained for class ``c`` is the mean of the ``nearest`` training
images of the *other* classes at the same place (the same axis and slice position in a slice
store, the whole grid in a volume store) — nearest in Euclidean distance to the image; with
``nearest=None`` all of them — so the attribution says where this image differs from the other
group in a way that moves the score for ``c``. The default (``"auto"``) takes the 3 nearest
on slices and all on volumes, as measured (BENCHMARKS.md): on the random-sphere slice cohorts
the nearest ones match the image's own anatomy and position (each brain box moves a fixed effect
by a voxel or two) and raised the strict pointing game per slice from 0.51–0.56 to 0.78–0.84 on
the cohorts with the smallest cross-sections; on volumes, whose nearest are picked over the whole
brain, 3 of 10 gave a noisier reference and lowered the 3-D pointing game (0.88 → 0.68).
Means are taken over the training split only (the test images never shape their own
reference) and in the store's raw intensities; the caller z-scores them like the inputs (a
per-channel affine map, so the mean commutes with it).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import numpy as np

from braincam.errors import InputError

__all__ = ["ClassReferences"]

_PLACE = ("axis", "position")


class ClassReferences:
    """Per place and class, the training rows (and the sum of their images); :meth:`for_rows`
    gives each row its reference. ``store``: a slice or volume store (``index``, ``images``);
    ``nearest``: how many of the other classes' images to average (None: all; ``"auto"``: 3 in
    a slice store, all in a volume store)."""

    def __init__(
        self,
        store: Any,
        split: str = "train",
        chunk: int = 64,
        nearest: int | Literal["auto"] | None = "auto",
    ) -> None:
        index = store.index
        if isinstance(nearest, str) and nearest == "auto":
            nearest = 3 if any(c in index.columns for c in _PLACE) else None
        if nearest is not None and (
            isinstance(nearest, bool) or not isinstance(nearest, int) or nearest < 1
        ):
            raise InputError("nearest must be a positive integer, None or 'auto'", value=nearest)
        self.store = store
        self.nearest = nearest
        self.chunk = chunk
        self.place_columns = [c for c in _PLACE if c in index.columns]
        train = np.flatnonzero((index["split"] == split).to_numpy())
        if train.size == 0:
            raise InputError(f"no {split!r} images to build references from", path=store.path)
        self.classes = sorted(int(t) for t in index["target"].unique())
        sums: dict[tuple, np.ndarray] = {}
        counts: dict[tuple, int] = defaultdict(int)
        keys = [self._key(r) for r in train]
        self._rows: dict[tuple, list[int]] = defaultdict(list)
        for key, row in zip(keys, train, strict=True):
            self._rows[key].append(int(row))
        for start in range(0, len(train), chunk):  # a chunk at a time: volumes are large
            rows = train[start : start + chunk]
            images = np.asarray(store.images[rows], dtype=np.float64)
            for key, image in zip(keys[start : start + chunk], images, strict=True):
                if key in sums:
                    sums[key] += image
                else:
                    sums[key] = image.copy()
                counts[key] += 1
        self._sums, self._counts = sums, counts
        self._places = sorted({k[:-1] for k in sums})

    def _key(self, row: int) -> tuple:
        record = self.store.index.iloc[row]
        return (*(record[c] for c in self.place_columns), int(record["target"]))

    def _has_other(self, place: tuple, target: int) -> bool:
        return any((*place, c) in self._sums for c in self.classes if c != target)

    def _nearest_place(self, place: tuple, target: int) -> tuple:
        """``place`` if other classes were seen there, else the nearest position on its axis."""
        if not place or self._has_other(place, target):
            return place
        others = [p for p in self._places if p[:-1] == place[:-1] and self._has_other(p, target)]
        if not others:
            raise InputError(
                "no training image of another class on this axis to build a reference from",
                path=self.store.path,
                value=place,
            )
        return min(others, key=lambda p: abs(float(p[-1]) - float(place[-1])))

    def reference(self, place: tuple, target: int, image: np.ndarray | None = None) -> np.ndarray:
        """The mean training image of the classes other than ``target`` at ``place``: of the
        ``nearest`` ones to ``image`` (of all when ``nearest`` is None or no image is given)."""
        place = self._nearest_place(place, target)
        keys = [(*place, c) for c in self.classes if c != target and (*place, c) in self._sums]
        if not keys:
            raise InputError(
                "no training image of another class to build a reference from",
                path=self.store.path,
                value=(place, target),
            )
        rows = np.array(sorted(r for k in keys for r in self._rows[k]))
        if image is None or self.nearest is None or self.nearest >= len(rows):
            total = sum(self._sums[k] for k in keys)
            return (total / sum(self._counts[k] for k in keys)).astype(np.float32)
        distances = np.concatenate(
            [  # a chunk at a time: volumes are large
                ((np.asarray(self.store.images[rows[i : i + self.chunk]], np.float64) - image) ** 2)
                .reshape(len(rows[i : i + self.chunk]), -1)
                .sum(1)
                for i in range(0, len(rows), self.chunk)
            ]
        )
        best = np.sort(rows[np.argsort(distances, kind="stable")[: self.nearest]])
        return np.asarray(self.store.images[best], np.float64).mean(0).astype(np.float32)

    def for_rows(self, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """References for the store's ``rows`` explained for ``targets``: (len(rows), C, *S)."""
        out = []
        for row, target in zip(rows, targets, strict=True):
            place = self._key(int(row))[:-1]
            image = np.asarray(self.store.images[int(row)], np.float64)
            out.append(self.reference(place, int(target), image))
        return np.stack(out)
