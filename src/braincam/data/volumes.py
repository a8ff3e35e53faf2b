"""The whole-brain volume store (``WORK/volumes/``): every subject's channels on one fixed grid,
for 3-D networks — the second *representation* next to the 2.5D slice store
(:mod:`braincam.data.slices`), with the same subjects, labels, splits and fingerprinting.

The grid: the brain's bounding box, centred in a fixed ``shape`` of isotropic ``spacing`` mm
voxels, in each subject's own (scanner) space, axes along the first image's closest RAS+
canonical directions. Chosen over a common space (MNI) because:

- every modality has a brain mask, but not every one a transform to a common space (``dwi``
  prepare estimates none), and a transform would be a second interpolation and its errors;
- the grid → subject map is then one affine per subject (``affines.npy``), so a heatmap goes
  back to the subject's space exactly (:meth:`VolumeStore.to_nifti`), and into MNI through the
  same native → MNI route as the 2.5D heatmaps;
- a fixed spacing keeps physical size (mm) — fitting each brain to the box would rescale it and
  hide size effects such as atrophy; only the position (the box centre) is normalized.

``volume_space: mni`` puts every subject on one grid instead: the same ``shape`` and ``spacing``
in MNI152NLin2009cAsym mm, centred on the template's brain, each subject sampled through its
MNI → subject mapping — the cohort's known coordinate map (synthetic cohorts keep
``from-MNI152NLin2009cAsym_to-native_coords`` next to the ground-truth mask) or an affine
registration of its first image to the MNI152 template (:func:`mni_points`). Worth it when the
effect sits at one anatomical place: in the brain box a subject's own position and shape move
it by a voxel or two, so the model and the other group's mean (``intgrad``'s reference) see it
blurred; in MNI it stays put (measured: BENCHMARKS.md, "3-D in MNI space"). The maps are then
in MNI, ``affines.npy`` holds the same MNI affine on every row, and :meth:`VolumeStore.to_nifti`
writes MNI images (there is no per-subject affine back to the scanner's space).

A brain larger than ``shape × spacing`` is cropped symmetrically (``meta.json``: ``cropped``
lists those subjects; in MNI every subject when the template's brain exceeds the grid). Images
are resampled once, straight from their own files (linear, or nearest with ``order: 0``), masks
with nearest neighbour; outside the field of view is 0.

Layout of a store directory (``meta.json`` written last; a store that opens is complete):

- ``images.npy`` — float32 ``(N, C, X, Y, Z)``, one row per subject (``mmap_mode="r"``);
- ``masks.npy`` — uint8 ``(N, X, Y, Z)`` ground truth, when any subject has a mask;
- ``brain.npy`` — uint8 ``(N, X, Y, Z)`` brain masks, when given;
- ``affines.npy`` — float64 ``(N, 4, 4)``: world (RAS mm, the subject's scanner space; MNI mm in
  MNI space) = ``A[i] @ [x, y, z, 1]`` for voxel ``(x, y, z)`` of row i;
- ``index.tsv`` — one row per subject: :data:`INDEX_COLUMNS` (``mask_voxels``: ``n/a`` without
  a ground-truth mask);
- ``meta.json`` — ``kind: "volume"``, ``space`` (``native`` or ``MNI152NLin2009cAsym``),
  ``classes``, ``channels``, ``shape``, ``spacing_mm``, ``spec``, ``subjects`` (per subject:
  ``row``, ``images``, ``mask``, ``brain_mask``, ``source_affine``/``source_shape`` of the first
  image, and in MNI ``transform``: ``known`` or ``registration``), ``fingerprint``,
  ``versions``.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from braincam.config.prepare import VolumeSpec
from braincam.data.slice_build import (
    build_atomically,
    read_image,
    store_fingerprint,
    validate_sources,
)
from braincam.data.slices import FORMAT_VERSION, NA, SliceSource, SliceStore
from braincam.data.slicing import canonical_affine
from braincam.data.store import IndexedStore
from braincam.errors import ConfigError, InputError
from braincam.imaging.groundtruth import MNI_TO_NATIVE_SUFFIX, mni_to_native_beside
from braincam.imaging.masks import dice
from braincam.imaging.resample import grid_points, pull_points, resample_to, sample_at_points
from braincam.imaging.templates import TEMPLATE_SPACE
from braincam.io import read_json
from braincam.layout import WorkLayout
from braincam.progress import track
from braincam.provenance import library_versions

KIND = "volume"
INDEX_COLUMNS = ("participant_id", "label", "target", "split", "mask_voxels")


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def brain_box_grid(
    ref: nib.spatialimages.SpatialImage,
    spec: VolumeSpec,
    brain: nib.spatialimages.SpatialImage | None = None,
) -> tuple[np.ndarray, bool]:
    """The grid → world affine of one subject and whether its brain box exceeds the grid.

    Axes along the closest RAS+ canonical directions of ``ref`` (the first image), voxels of
    ``spec.spacing`` mm, the grid centred on the brain's bounding box (``brain``'s nonzero
    voxels; without a brain mask, ``ref``'s nonzero voxels; with neither, ``ref``'s field of
    view).
    """
    canon = canonical_affine(np.asarray(ref.affine, dtype=float), ref.shape[:3])
    directions = canon[:3, :3] / np.sqrt((canon[:3, :3] ** 2).sum(axis=0))
    source = brain if brain is not None else ref
    data = np.asarray(source.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    ijk = np.argwhere(data != 0)
    if len(ijk) == 0:  # nothing to centre on: the field of view's corners
        ijk = np.array([[0, 0, 0], np.asarray(data.shape[:3]) - 1])
    world = ijk @ np.asarray(source.affine)[:3, :3].T + np.asarray(source.affine)[:3, 3]
    return _centred_grid(world, directions, spec)


def _centred_grid(
    world: np.ndarray, directions: np.ndarray, spec: VolumeSpec
) -> tuple[np.ndarray, bool]:
    """The grid of ``spec`` along orthonormal ``directions`` centred on the bounding box of the
    ``world`` points (mm), and whether the box exceeds it."""
    shape = np.asarray(spec.shape, dtype=float)
    along = world @ directions  # coordinates along the grid axes (directions are orthonormal)
    lo, hi = along.min(axis=0), along.max(axis=0)
    centre = directions @ ((lo + hi) / 2.0)
    affine = np.eye(4)
    affine[:3, :3] = directions * spec.spacing
    affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2.0)
    # The box spans hi - lo between voxel centres; the grid holds (shape - 1) * spacing.
    cropped = bool(np.any(hi - lo > (shape - 1) * spec.spacing + 1e-6))
    return affine, cropped


def template_grid(spec: VolumeSpec) -> tuple[np.ndarray, bool]:
    """The grid → MNI mm affine of a store in MNI space (RAS axes, ``spec.spacing`` mm, centred
    on the bounding box of the MNI152 brain: grey + white matter probability ≥ 0.5 in nilearn's
    bundled template) and whether that box exceeds the grid."""
    return _centred_grid(_mni_brain_box(), np.eye(3), spec)


@functools.cache
def _mni_brain() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 brain probability (grey + white matter, 1 mm) and its affine (read once per
    process: the template ships with nilearn and does not change)."""
    from braincam.imaging.templates import mni152_arrays

    arrays, affine = mni152_arrays(("gm", "wm"))
    return arrays["gm"] + arrays["wm"], affine


def _mni_brain_box() -> np.ndarray:
    """The two corners (mm) of the MNI152 brain's bounding box (probability ≥ 0.5)."""
    brain, affine = _mni_brain()
    world = np.argwhere(brain >= 0.5) @ affine[:3, :3].T + affine[:3, 3]
    return np.stack([world.min(axis=0), world.max(axis=0)])


def mni_brain_on(points: np.ndarray) -> np.ndarray:
    """The MNI152 brain (probability ≥ 0.5) at MNI mm ``points (..., 3)``, bool."""
    brain, affine = _mni_brain()
    return sample_at_points(brain, affine, points) >= 0.5


#: Below this Dice overlap of a subject's brain mask with the MNI152 brain, a store in MNI space
#: warns that the subject's transform looks wrong (a failed registration, a wrong map).
MIN_BRAIN_DICE = 0.5


def mni_points(
    source: SliceSource,
    ref: nib.spatialimages.SpatialImage,
    points: np.ndarray,
    transform: str = "auto",
) -> tuple[np.ndarray, str]:
    """Where MNI mm ``points (..., 3)`` lie in one subject (its scanner mm), and how that was
    found: ``"known"`` through the cohort's coordinate map beside the subject's ground-truth
    mask, ``"registration"`` through an affine registration of ``ref`` (the first image) to the
    MNI152 template. ``transform`` ``"auto"`` takes the known map when there is one; ``"known"``
    without one is an InputError naming the subject and the file looked for."""
    from braincam.imaging.registration import register_to_mni
    from braincam.imaging.sitk import transform_points

    pid = source.participant_id
    known = None if transform == "registration" else mni_to_native_beside(source.mask, pid)
    if known is not None:
        return pull_points(nib.load(known), points), "known"
    if transform == "known":
        where = None if source.mask is None else source.mask.parent / f"{pid}{MNI_TO_NATIVE_SUFFIX}"
        raise InputError(
            "volume_transform: known, but the subject has no MNI → native coordinate map",
            subject=pid,
            path=where,
        )
    try:
        moved = register_to_mni(nib.Nifti1Image(_data3d(ref), ref.affine))
    except (RuntimeError, InputError) as exc:
        raise InputError(
            f"registration to MNI failed: {exc}", subject=pid, path=source.images[0]
        ) from exc
    flat = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return transform_points(moved, flat).reshape(np.shape(points)), "registration"


@dataclass
class SubjectVolume:
    """One subject on the store grid."""

    images: np.ndarray  # float32 (C, X, Y, Z)
    mask: np.ndarray | None  # uint8 (X, Y, Z) ground truth
    brain: np.ndarray | None  # uint8 (X, Y, Z)
    affine: np.ndarray  # (4, 4) grid → world
    source_affine: np.ndarray  # (4, 4) the first image's own grid
    source_shape: tuple[int, int, int]
    cropped: bool


def _data3d(img: nib.spatialimages.SpatialImage) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])


def resample_subject(
    images: Sequence[nib.spatialimages.SpatialImage],
    spec: VolumeSpec,
    mask: nib.spatialimages.SpatialImage | None = None,
    brain: nib.spatialimages.SpatialImage | None = None,
    *,
    template: tuple[np.ndarray, bool, np.ndarray] | None = None,
) -> SubjectVolume:
    """Put co-registered volumes (one channel per image) and their masks on the store grid.

    ``template``: for a store in MNI space, the grid's ``(affine, cropped, points)`` where
    ``points (X, Y, Z, 3)`` are the subject's mm at each voxel (:func:`mni_points`); by default
    the grid is centred on the subject's brain box (:func:`brain_box_grid`).
    """
    if len(images) == 0:
        raise InputError("a volume needs at least one image")
    ref = images[0]
    if template is None:
        affine, cropped = brain_box_grid(ref, spec, brain)

        def pull(data: np.ndarray, img: nib.spatialimages.SpatialImage, order: int) -> np.ndarray:
            return resample_to(data, img.affine, spec.shape, affine, order=order)
    else:
        affine, cropped, points = template

        def pull(data: np.ndarray, img: nib.spatialimages.SpatialImage, order: int) -> np.ndarray:
            return sample_at_points(data, img.affine, points, order=order)

    chans = [pull(_data3d(img), img, spec.order) for img in images]

    def label(img: nib.spatialimages.SpatialImage | None) -> np.ndarray | None:
        if img is None:
            return None
        on = (_data3d(img) > 0).astype(np.float32)
        return (pull(on, img, 0) > 0.5).astype(np.uint8)

    return SubjectVolume(
        images=np.stack(chans).astype(np.float32, copy=False),
        mask=label(mask),
        brain=label(brain),
        affine=affine,
        source_affine=np.asarray(ref.affine, dtype=float),
        source_shape=tuple(int(n) for n in ref.shape[:3]),  # type: ignore[arg-type]
        cropped=cropped,
    )


# --------------------------------------------------------------------------------------------
# Read side
# --------------------------------------------------------------------------------------------


def is_volume_store(path: str | Path) -> bool:
    """True when ``path`` holds a (complete) volume store, by its meta.json."""
    meta = Path(path) / "meta.json"
    try:
        return meta.is_file() and read_json(meta).get("kind") == KIND
    except (OSError, ValueError):
        return False


@dataclass
class VolumeStore(IndexedStore):
    """Read side of a volume store directory (arrays memory-mapped read-only).

    Its interface follows :class:`~braincam.data.slices.SliceStore` where the concept is the
    same (``index`` rows ↔ ``images`` rows, ``classes``, ``channels``, ``subjects``, ``rows``),
    so training and evaluation treat both alike.
    """

    path: Path
    images: np.ndarray
    index: pd.DataFrame
    meta: dict[str, Any]
    affines: np.ndarray
    masks: np.ndarray | None = None
    brain: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path) -> VolumeStore:
        """Open ``path``; InputError when it is missing, incomplete or inconsistent."""
        path = Path(path)
        needed = ["meta.json", "images.npy", "index.tsv", "affines.npy"]
        missing = [n for n in needed if not (path / n).is_file()]
        if missing:
            raise InputError(
                "volume store is missing or incomplete (run `braincam prepare` with "
                "representation: volume first)",
                path=path,
                value=missing,
            )
        try:
            meta = read_json(path / "meta.json")
            images = np.load(path / "images.npy", mmap_mode="r")
            affines = np.load(path / "affines.npy")
            index = pd.read_csv(
                path / "index.tsv",
                sep="\t",
                dtype={"participant_id": str, "label": str, "split": str},
                keep_default_na=False,
                na_values={"mask_voxels": [NA]},
            )
            masks, brain = (
                np.load(path / name, mmap_mode="r") if (path / name).is_file() else None
                for name in ("masks.npy", "brain.npy")
            )
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read volume store: {exc}", path=path) from exc
        if meta.get("kind") != KIND:
            raise InputError("not a volume store (meta.json kind)", path=path / "meta.json")
        index["mask_voxels"] = index["mask_voxels"].astype("Int64")
        n = len(index)
        if (
            images.ndim != 5
            or images.shape[0] != n
            or affines.shape != (n, 4, 4)
            or any(m is not None and m.shape != (n, *images.shape[2:]) for m in (masks, brain))
        ):
            raise InputError(
                "volume store arrays disagree with index.tsv",
                path=path,
                value={"index": n, "images": images.shape, "affines": affines.shape},
            )
        return cls(path, images, index, meta, affines, masks, brain)

    @property
    def space(self) -> str:
        """``"native"`` (each subject's own space) or the template space of a common grid."""
        return str(self.meta.get("space", "native"))

    @property
    def shape(self) -> tuple[int, int, int]:
        """The grid, voxels."""
        return tuple(int(n) for n in self.meta["shape"])  # type: ignore[return-value]

    @property
    def size(self) -> list[int]:
        """The spatial size of one sample (a slice store's is an int): the grid shape."""
        return list(self.shape)

    def row(self, participant_id: str) -> int:
        """The row of one subject; InputError when it is not in the store."""
        rows = self.rows(participant_id=participant_id).index
        if len(rows) != 1:
            raise InputError("subject not in volume store", subject=participant_id, path=self.path)
        return int(rows[0])

    def grid(self, participant_id: str, which: str = "grid") -> tuple[np.ndarray, tuple]:
        """(affine, shape) of a subject's store ``"grid"`` or ``"source"`` (first image) grid."""
        if which not in ("source", "grid"):
            raise ConfigError(f"grid must be 'source' or 'grid', got {which!r}")
        row = self.row(participant_id)
        if which == "grid":
            return self.affines[row].copy(), self.shape
        info = self.meta["subjects"][participant_id]
        return np.asarray(info["source_affine"]), tuple(info["source_shape"])

    def to_nifti(
        self, values: np.ndarray, participant_id: str, *, target: str = "grid", order: int = 1
    ) -> nib.Nifti1Image:
        """A volume ``(X, Y, Z)`` of the store grid as a NIfTI in the subject's space (in MNI
        for a store in MNI space).

        ``target="grid"`` keeps the store grid (exact: its affine maps to the subject's world
        coordinates); ``"source"`` resamples onto the first image's grid (``order``: 1 linear,
        0 nearest), NaN outside the store grid — not for a store in MNI space (it keeps no map
        back to the scanner: a ConfigError).
        """
        values = np.asarray(values, dtype=np.float32)
        if values.shape != self.shape:
            raise InputError(
                "values must have the store's grid shape", subject=participant_id,
                value=(values.shape, self.shape),
            )  # fmt: skip
        affine, shape = self.grid(participant_id, target)
        if target == "grid":
            return nib.Nifti1Image(values, affine)
        if self.space != "native":
            raise ConfigError(
                f"a volume store in {self.space} keeps no map back to the subject's own grid: "
                "its volumes are written in MNI (target='grid')"
            )
        grid = self.affines[self.row(participant_id)]
        out = resample_to(values, grid, shape, affine, order=order)
        inside = resample_to(np.ones(self.shape, np.float32), grid, shape, affine, order=0)
        return nib.Nifti1Image(np.where(inside > 0.5, out, np.nan).astype(np.float32), affine)


def store_path(path: str | Path) -> Path:
    """The store directory of ``path``: itself when it holds a store (``meta.json``), else the
    store of the work directory ``path`` (``prepare`` leaves one: ``slices/`` or ``volumes/``)."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    layout = WorkLayout(path)
    found = [p for p in (layout.slices, layout.volumes) if (p / "meta.json").is_file()]
    if len(found) > 1:
        raise InputError(
            "work directory holds both a slice and a volume store; re-run `braincam prepare` "
            "(it keeps the configured representation's) or give the store's path",
            path=path,
        )
    return found[0] if found else layout.slices


def open_any_store(path: str | Path) -> SliceStore | VolumeStore:
    """Open a slice or a volume store (by its meta.json), or the one of a work directory."""
    path = store_path(path)
    return VolumeStore.open(path) if is_volume_store(path) else SliceStore.open(path)


def volume_summary(store: VolumeStore) -> dict[str, Any]:
    """Counts for ``summary.json``: volumes per split and label, mask voxels per subject."""
    idx = store.index
    with_mask = idx.dropna(subset=["mask_voxels"])
    return {
        "representation": KIND,
        "n_volumes": len(idx),
        "n_subjects": int(idx["participant_id"].nunique()),
        "classes": store.classes,
        "subjects_per_split": {str(k): len(g) for k, g in idx.groupby("split", sort=True)},
        "subjects_per_label": {
            str(k): int(n) for k, n in idx["label"].value_counts().sort_index().items()
        },
        "mask_voxels": {
            str(p): int(n)
            for p, n in zip(with_mask["participant_id"], with_mask["mask_voxels"], strict=True)
        },
        "shape": list(store.shape),
        "spacing_mm": store.meta["spacing_mm"],
        "channels": store.channels,
        "cropped": list(store.meta["cropped"]),
        "space": store.space,
        **(
            {
                "brain_dice": {
                    str(p): info.get("brain_dice") for p, info in store.meta["subjects"].items()
                }
            }
            if store.space != "native"
            else {}
        ),
    }


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def volume_store_is_current(out_dir: str | Path, fingerprint: str) -> bool:
    """True when ``out_dir`` holds a complete volume store built with this fingerprint."""
    try:
        store = VolumeStore.open(out_dir)
    except InputError:
        return False
    return store.meta.get("fingerprint") == fingerprint


def build_volume_store(
    out_dir: str | Path,
    sources: Sequence[SliceSource],
    splits: pd.DataFrame,
    spec: VolumeSpec,
    classes: Sequence[str] | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> VolumeStore:
    """Write the volume store of ``sources`` to ``out_dir`` atomically and open it.

    The same inputs and conventions as :func:`braincam.data.slice_build.build_slice_store`:
    sources checked against the split table; skipped when the store on disk has the same
    fingerprint (spec, classes, splits, input paths and bytes), unless ``force``.
    """
    out_dir = Path(out_dir)
    sources = list(sources)
    classes, split_of = validate_sources(sources, splits, classes)
    fingerprint = store_fingerprint(sources, splits, spec, classes)
    if not force and volume_store_is_current(out_dir, fingerprint):
        return VolumeStore.open(out_dir)
    build_atomically(
        out_dir,
        fingerprint,
        lambda tmp: _write_store(tmp, sources, split_of, spec, list(classes), progress=progress),
    )
    return VolumeStore.open(out_dir)


def _write_store(
    tmp: Path,
    sources: list[SliceSource],
    split_of: dict[str, str],
    spec: VolumeSpec,
    classes: list[str],
    *,
    progress: bool,
) -> dict[str, Any]:
    """Stream every subject's volume into ``tmp``; return meta.json's content."""
    n, channels, shape = len(sources), len(sources[0].images), tuple(spec.shape)
    has_masks = any(s.mask is not None for s in sources)
    has_brain = any(s.brain_mask is not None for s in sources)
    images = np.lib.format.open_memmap(
        tmp / "images.npy", mode="w+", dtype=np.float32, shape=(n, channels, *shape)
    )
    masks, brains = (
        np.lib.format.open_memmap(tmp / name, mode="w+", dtype=np.uint8, shape=(n, *shape))
        if wanted
        else None
        for name, wanted in (("masks.npy", has_masks), ("brain.npy", has_brain))
    )
    affines = np.zeros((n, 4, 4))
    rows: list[dict[str, Any]] = []
    subjects: dict[str, Any] = {}
    cropped: list[str] = []
    target_of = {c: i for i, c in enumerate(classes)}
    in_mni = spec.space == "mni"
    if in_mni:
        mni_affine, mni_cropped = template_grid(spec)
        mni_world = grid_points(mni_affine, shape)
        mni_brain = mni_brain_on(mni_world)
    for k, src in enumerate(track(sources, "Resampling volumes", disable=not progress)):
        pid = src.participant_id
        imgs = [read_image(p, pid, "image") for p in src.images]
        mask = None if src.mask is None else read_image(src.mask, pid, "mask")
        brain = None if src.brain_mask is None else read_image(src.brain_mask, pid, "brain mask")
        template, how = None, None
        if in_mni:
            points, how = mni_points(src, imgs[0], mni_world, spec.transform)
            template = (mni_affine, mni_cropped, points)
        vol = resample_subject(imgs, spec, mask, brain, template=template)
        overlap = None
        if in_mni and vol.brain is not None:
            # Quality control of the transform: the brain should land on the template's brain.
            overlap = round(dice(vol.brain > 0, mni_brain), 4)
            if overlap < MIN_BRAIN_DICE:
                warnings.warn(
                    f"{pid}: its brain mask overlaps the MNI152 brain by Dice {overlap:.2f} "
                    f"(< {MIN_BRAIN_DICE}) after the {how} transform; check it "
                    "(meta.json subjects.<id>.brain_dice)",
                    stacklevel=2,
                )
        images[k] = vol.images
        if masks is not None:
            masks[k] = 0 if vol.mask is None else vol.mask
        if brains is not None:
            # A subject without a brain mask: every voxel counts as brain (as in the slice store).
            brains[k] = 1 if vol.brain is None else vol.brain
        affines[k] = vol.affine
        if vol.cropped:
            cropped.append(pid)
        rows.append(
            {
                "participant_id": pid,
                "label": src.label,
                "target": target_of[src.label],
                "split": split_of[pid],
                "mask_voxels": pd.NA if vol.mask is None else int(vol.mask.sum()),
            }
        )
        subjects[pid] = {
            "label": src.label,
            "split": split_of[pid],
            "row": k,
            "images": [str(p) for p in src.images],
            "mask": None if src.mask is None else str(src.mask),
            "brain_mask": None if src.brain_mask is None else str(src.brain_mask),
            "source_affine": vol.source_affine.tolist(),
            "source_shape": list(vol.source_shape),
        } | ({"transform": how, "brain_dice": overlap} if in_mni else {})
    for arr in (images, masks, brains):
        if arr is not None:
            arr.flush()
    del images, masks, brains
    np.save(tmp / "affines.npy", affines)
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    index["mask_voxels"] = index["mask_voxels"].astype("Int64")
    index.to_csv(tmp / "index.tsv", sep="\t", index=False, na_rep=NA)
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "space": TEMPLATE_SPACE if in_mni else "native",
        "classes": classes,
        "channels": channels,
        "shape": list(shape),
        "spacing_mm": spec.spacing,
        "spec": spec.to_dict(),
        "n_volumes": n,
        "has_masks": has_masks,
        "has_brain": has_brain,
        "cropped": cropped,
        "orientation": (
            f"RAS+ {TEMPLATE_SPACE} mm"
            if in_mni
            else "axes along the first image's closest RAS+ directions (x→R, y→A, z→S)"
        ),
        "subjects": subjects,
        "versions": library_versions(),
    }
