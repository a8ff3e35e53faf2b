"""Building the slice store: validate the sources, slice every subject, write atomically.

The build is skipped when the store on disk was made from the same inputs (its fingerprint:
spec, classes, splits, input paths and bytes). The read side is :mod:`braincam.data.slices`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from braincam.config.prepare import VolumeSpec
from braincam.data.slices import (
    FORMAT_VERSION,
    NA,
    SliceSource,
    SliceStore,
)
from braincam.data.slicing import SliceSpec, _volume_data, extract_slices
from braincam.data.splits import check_splits
from braincam.errors import ConfigError, InputError
from braincam.imaging.hashing import file_sha256
from braincam.io import write_json
from braincam.progress import track
from braincam.provenance import library_versions


def _file_digest(path: Path) -> str:
    """sha256 of a file's bytes (``"missing"`` when absent, so the build reports it later)."""
    return file_sha256(path) if path.is_file() else "missing"


def store_fingerprint(
    sources: Sequence[SliceSource],
    splits: pd.DataFrame,
    spec: SliceSpec | VolumeSpec,
    classes: Sequence[str] | None = None,
) -> str:
    """Hash of what a store depends on: spec, classes, splits, input paths and bytes (the
    volume store passes its :class:`~braincam.config.prepare.VolumeSpec` as ``spec``)."""
    split_of = dict(
        zip(splits["participant_id"].astype(str), splits["split"].astype(str), strict=True)
    )
    payload = {
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "classes": None if classes is None else [str(c) for c in classes],
        "sources": [
            {
                "participant_id": s.participant_id,
                "label": s.label,
                "split": split_of.get(s.participant_id),
                "images": [[str(p), _file_digest(p)] for p in s.images],
                "mask": None if s.mask is None else [str(s.mask), _file_digest(s.mask)],
                **(
                    {}
                    if s.brain_mask is None
                    else {"brain_mask": [str(s.brain_mask), _file_digest(s.brain_mask)]}
                ),
            }
            for s in sources
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_image(path: Path, subject: str, what: str) -> nib.Nifti1Image:
    """Load a NIfTI fully into memory, turning every read failure into an InputError."""
    try:
        img = nib.load(str(path))
        data = _volume_data(img, what)
    except InputError as exc:
        raise InputError(str(exc), subject=subject, path=path) from exc
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"cannot read {what}: {exc}", subject=subject, path=path) from exc
    return nib.Nifti1Image(data, img.affine)


def validate_sources(
    sources: Sequence[SliceSource], splits: pd.DataFrame, classes: Sequence[str] | None
) -> tuple[list[str], dict[str, str]]:
    """Check the sources against the splits; return (classes, split per subject)."""
    if not sources:
        raise InputError("no subjects to slice")
    ids = [s.participant_id for s in sources]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError("duplicate subject in slice sources", subject=dup[0])
    channels = {len(s.images) for s in sources}
    if len(channels) != 1:
        raise InputError("all subjects need the same number of images", value=sorted(channels))
    table = check_splits(splits)
    split_of = dict(zip(table["participant_id"], table["split"], strict=True))
    label_of = dict(zip(table["participant_id"], table["label"], strict=True))
    for s in sources:
        if s.participant_id not in split_of:
            raise InputError("subject is not in the split table", subject=s.participant_id)
        if label_of[s.participant_id] != s.label:
            raise InputError(
                "label differs from the split table",
                subject=s.participant_id,
                value=(s.label, label_of[s.participant_id]),
            )
    labels = sorted({s.label for s in sources})
    if classes is None:
        classes = labels
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be distinct, got {classes!r}")
    unknown = [lab for lab in labels if lab not in classes]
    if unknown:
        raise InputError(
            "label not among the classes", value={"labels": unknown, "classes": classes}
        )
    return classes, split_of


def store_is_current(out_dir: str | Path, fingerprint: str) -> bool:
    """True when ``out_dir`` holds a complete store built from inputs with this fingerprint."""
    try:
        store = SliceStore.open(out_dir)
    except InputError:
        return False
    return store.meta.get("fingerprint") == fingerprint


def build_slice_store(
    out_dir: str | Path,
    sources: Sequence[SliceSource],
    splits: pd.DataFrame,
    spec: SliceSpec,
    classes: Sequence[str] | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> SliceStore:
    """Write the slice store of ``sources`` to ``out_dir`` atomically and open it.

    The store is built subject by subject in a hidden sibling directory and moved onto
    ``out_dir`` only when complete, so an interrupted build never leaves a store that looks
    finished. When ``out_dir`` already holds a store built from the same inputs (same
    fingerprint) it is returned as is, unless ``force``.
    """
    out_dir = Path(out_dir)
    sources = list(sources)
    classes, split_of = validate_sources(sources, splits, classes)
    fingerprint = store_fingerprint(sources, splits, spec, classes)
    if not force and store_is_current(out_dir, fingerprint):
        return SliceStore.open(out_dir)

    build_atomically(
        out_dir,
        fingerprint,
        lambda tmp: _write_store(tmp, sources, split_of, spec, classes, progress=progress),
    )
    return SliceStore.open(out_dir)


def build_atomically(
    out_dir: Path, fingerprint: str, write: Callable[[Path], dict[str, Any]]
) -> None:
    """Build a store directory in a hidden sibling and move it onto ``out_dir`` when complete.

    ``write(tmp)`` fills ``tmp`` and returns meta.json's content; meta.json (with
    ``fingerprint``) is written last, so a store that opens is complete (shared by the slice
    and the volume store).
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Left behind by a killed build (SIGKILL skips the cleanup below); never a complete store.
    for pattern in (f".{out_dir.name}.tmp-*", f".{out_dir.name}.old-*"):
        for stale in out_dir.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = write(tmp)
        meta["fingerprint"] = fingerprint
        write_json(tmp / "meta.json", meta)  # last: its presence marks a complete store
        _swap_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_dir(new: Path, final: Path) -> None:
    """Move directory ``new`` onto ``final``, replacing an existing one."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_store(
    tmp: Path,
    sources: list[SliceSource],
    split_of: dict[str, str],
    spec: SliceSpec,
    classes: list[str],
    *,
    progress: bool,
) -> dict[str, Any]:
    """Stream every subject's slices into ``tmp``; return meta.json's content (sans fingerprint)."""
    per_subject = len(spec.axes) * spec.per_axis
    n_total = per_subject * len(sources)
    channels = len(sources[0].images)
    has_masks = any(s.mask is not None for s in sources)
    has_brain = any(s.brain_mask is not None for s in sources)
    images = np.lib.format.open_memmap(
        tmp / "images.npy",
        mode="w+",
        dtype=np.float32,
        shape=(n_total, channels, spec.size, spec.size),
    )
    masks, brains = (
        np.lib.format.open_memmap(
            tmp / name, mode="w+", dtype=np.uint8, shape=(n_total, spec.size, spec.size)
        )
        if wanted
        else None
        for name, wanted in (("masks.npy", has_masks), ("brain.npy", has_brain))
    )
    p2w = np.zeros((n_total, 4, 3))
    index_parts: list[pd.DataFrame] = []
    subjects: dict[str, Any] = {}
    voxel_sizes = set()
    target_of = {c: i for i, c in enumerate(classes)}
    for k, src in enumerate(track(sources, "Slicing subjects", disable=not progress)):
        pid = src.participant_id
        imgs = [read_image(p, pid, "image") for p in src.images]
        mask = None if src.mask is None else read_image(src.mask, pid, "mask")
        brain = None if src.brain_mask is None else read_image(src.brain_mask, pid, "brain mask")
        try:
            sl = extract_slices(imgs, spec, mask, brain)
        except InputError as exc:
            raise InputError(str(exc), subject=pid, path=src.images[0]) from exc
        rows = slice(k * per_subject, (k + 1) * per_subject)
        images[rows] = sl.images
        if masks is not None:
            masks[rows] = 0 if sl.masks is None else sl.masks
        if brains is not None:
            # A subject without a brain mask: every pixel counts as brain (nothing is "outside").
            brains[rows] = 1 if sl.brain is None else sl.brain
        p2w[rows] = sl.pixel_to_world
        index_parts.append(
            pd.DataFrame(
                {
                    "participant_id": pid,
                    "label": src.label,
                    "target": target_of[src.label],
                    "split": split_of[pid],
                    "axis": list(sl.axes),
                    "position": sl.positions,
                    "mask_pixels": pd.array(
                        [pd.NA] * len(sl) if sl.mask_pixels is None else sl.mask_pixels,
                        dtype="Int64",
                    ),
                }
            )
        )
        voxel_sizes.add(round(sl.voxel_size, 6))
        subjects[pid] = {
            "label": src.label,
            "split": split_of[pid],
            "rows": [rows.start, rows.stop],
            "images": [str(p) for p in src.images],
            "mask": None if src.mask is None else str(src.mask),
            "brain_mask": None if src.brain_mask is None else str(src.brain_mask),
            "voxel_size_mm": sl.voxel_size,
            "grid_affine": sl.grid_affine.tolist(),
            "grid_shape": list(sl.grid_shape),
            "source_affine": sl.source_affine.tolist(),
            "source_shape": list(sl.source_shape),
        }
    images.flush()
    del images
    for arr in (masks, brains):
        if arr is not None:
            arr.flush()
    del masks, brains
    np.save(tmp / "pixel_to_world.npy", p2w)
    index = pd.concat(index_parts, ignore_index=True)
    index.to_csv(tmp / "index.tsv", sep="\t", index=False, na_rep=NA)
    return {
        "format_version": FORMAT_VERSION,
        "classes": classes,
        "size": spec.size,
        "channels": channels,
        "axes": list(spec.axes),
        "slices_per_axis": spec.per_axis,
        "step": spec.step,
        "voxel_size_mm": (
            spec.voxel_size
            if spec.voxel_size is not None
            else (voxel_sizes.pop() if len(voxel_sizes) == 1 else None)
        ),
        "spec": spec.to_dict(),
        "n_slices": n_total,
        "has_masks": has_masks,
        "has_brain": has_brain,
        "source": {pid: info["images"][0] for pid, info in subjects.items()},
        "subjects": subjects,
        "orientation": {
            "axial": "rows anterior→posterior, columns left→right",
            "coronal": "rows superior→inferior, columns left→right",
            "sagittal": "rows superior→inferior, columns posterior→anterior",
        },
        "versions": library_versions(),
    }
