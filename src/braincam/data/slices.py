"""2.5D representation: centre slices per axis, the on-disk slice store, slice → volume mapping.

Geometry (see ``docs/slices.md``):

1. The first image defines the grid. Its closest RAS+ canonical orientation (what
   ``nibabel.as_closest_canonical`` gives) is made isotropic: voxel size ``spec.voxel_size`` or
   the smallest voxel size, same field-of-view centre, ``round(extent / voxel)`` voxels per axis.
2. Every image (and the mask) is resampled onto that grid straight from its own file grid
   (one interpolation: linear for images, nearest for the mask), only for the slabs needed.
3. ``per_axis`` centre slices per axis (centre = middle of the canonical isotropic array), each
   shown upright: axial rows run anterior→posterior and columns left→right, coronal rows
   superior→inferior and columns left→right, sagittal rows superior→inferior and columns
   posterior→anterior.
4. Each slice is zero-padded (centred) to a square and resized to ``size × size`` with
   ``align_corners=False`` (pixel centres: ``src = (dst + 0.5) * L / size - 0.5``).

``pixel_to_world[i]`` (4×3) composes these steps exactly: world = M @ [row, col, 1].
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

if TYPE_CHECKING:  # torch is imported lazily: prepare's workers need it only to resize
    import torch

from braincam.config.prepare import AXES, SliceSpec  # noqa: F401  # AXES: re-exported
from braincam.data.splits import check_splits
from braincam.errors import ConfigError, InputError
from braincam.io import read_json, write_json
from braincam.progress import track
from braincam.provenance import library_versions

# Array axis of the RAS+ canonical grid held fixed by each slice orientation.
FIXED_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
FORMAT_VERSION = 1
INDEX_COLUMNS = ("participant_id", "label", "target", "split", "axis", "position", "mask_pixels")
NA = "n/a"  # BIDS spelling of a missing value in TSV files


@dataclass
class SubjectSlices:
    """The slices of one subject: arrays aligned row by row."""

    images: np.ndarray  # float32 (n, C, S, S)
    masks: np.ndarray | None  # uint8 (n, S, S)
    axes: tuple[str, ...]  # per slice
    positions: np.ndarray  # int64 (n,), index along the fixed axis of the isotropic grid
    pixel_to_world: np.ndarray  # float64 (n, 4, 3)
    mask_pixels: np.ndarray | None  # int64 (n,), mask pixels per slice
    grid_affine: np.ndarray  # (4, 4) RAS+ canonical isotropic grid
    grid_shape: tuple[int, int, int]
    source_affine: np.ndarray  # (4, 4) the first image's own grid
    source_shape: tuple[int, int, int]
    voxel_size: float

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class SliceSource:
    """One subject's input to :func:`build_slice_store`."""

    participant_id: str
    label: str
    images: Sequence[Path]
    mask: Path | None = None

    def __post_init__(self) -> None:
        images = (self.images,) if isinstance(self.images, str | Path) else self.images
        object.__setattr__(self, "images", tuple(Path(p) for p in images))
        object.__setattr__(self, "participant_id", str(self.participant_id))
        object.__setattr__(self, "label", str(self.label))
        if self.mask is not None:
            object.__setattr__(self, "mask", Path(self.mask))
        if not self.images:
            raise InputError("slice source has no image", subject=self.participant_id)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def canonical_affine(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Affine of the closest RAS+ canonical reorientation (as ``nib.as_closest_canonical``)."""
    ornt = nib.orientations.io_orientation(affine)
    return affine @ nib.orientations.inv_ornt_aff(ornt, tuple(shape[:3]))


def isotropic_grid(
    affine: np.ndarray, shape: Sequence[int], voxel_size: float | None = None
) -> tuple[np.ndarray, tuple[int, int, int], float]:
    """RAS+ canonical isotropic grid covering the same field of view as ``(affine, shape)``.

    Returns ``(grid_affine, grid_shape, voxel_size)``; the grid keeps the axis directions of the
    canonical affine and its field-of-view centre.
    """
    shape3 = np.asarray(shape[:3])
    # Reorientation only permutes/flips axes; the extent is the same, so work on the canonical.
    canon = canonical_affine(np.asarray(affine, dtype=float), shape3)
    ornt = nib.orientations.io_orientation(affine)
    cshape = shape3[ornt[:, 0].astype(int).argsort()]
    zooms = np.sqrt((canon[:3, :3] ** 2).sum(axis=0))
    v = float(zooms.min()) if voxel_size is None else float(voxel_size)
    n = np.maximum(1, np.round(cshape * zooms / v)).astype(int)
    directions = canon[:3, :3] / zooms
    grid = np.eye(4)
    grid[:3, :3] = directions * v
    centre = canon[:3, :3] @ ((cshape - 1) / 2.0) + canon[:3, 3]
    grid[:3, 3] = centre - grid[:3, :3] @ ((n - 1) / 2.0)
    return grid, (int(n[0]), int(n[1]), int(n[2])), v


def slice_positions(n: int, per_axis: int, step: int = 1) -> np.ndarray:
    """Indices of ``per_axis`` slices ``step`` apart, centred in an axis of length ``n``."""
    span = (per_axis - 1) * step + 1
    start = (n - span) // 2
    return start + step * np.arange(per_axis, dtype=np.int64)


def _plane_axes(fixed: int) -> tuple[int, int]:
    """(row axis, column axis) of the canonical grid for slices normal to ``fixed``."""
    rest = [a for a in range(3) if a != fixed]
    # Rows run along the later axis, flipped (anterior/superior at the top); columns along the
    # earlier axis (left→right or posterior→anterior).
    return rest[1], rest[0]


def pixel_to_voxel(fixed: int, position: float, grid_shape: Sequence[int], size: int) -> np.ndarray:
    """4×3 matrix: isotropic-grid voxel (homogeneous) = P @ [row, col, 1] for one slice."""
    row_ax, col_ax = _plane_axes(fixed)
    h, w = int(grid_shape[row_ax]), int(grid_shape[col_ax])
    side = max(h, w)
    pad_r, pad_c = (side - h) // 2, (side - w) // 2
    s = side / size
    p = np.zeros((4, 3))
    # Resize (align_corners=False): padded = (pixel + 0.5) * s - 0.5; then remove the padding;
    # rows are flipped: voxel = h - 1 - padded_row_without_pad.
    p[row_ax, 0] = -s
    p[row_ax, 2] = h - 0.5 + pad_r - 0.5 * s
    p[col_ax, 1] = s
    p[col_ax, 2] = 0.5 * s - 0.5 - pad_c
    p[fixed, 2] = position
    p[3, 2] = 1.0
    return p


def _resample_slab(
    data: np.ndarray,
    src_affine: np.ndarray,
    grid_affine: np.ndarray,
    grid_shape: Sequence[int],
    fixed: int,
    positions: np.ndarray,
    order: int,
) -> np.ndarray:
    """Sample ``data`` on the isotropic grid, only at the slices ``positions`` of axis ``fixed``.

    Returns an array of grid shape with axis ``fixed`` replaced by ``len(positions)``.
    """
    step = int(positions[1] - positions[0]) if len(positions) > 1 else 1
    slab = np.eye(4)
    slab[fixed, fixed] = step
    slab[fixed, 3] = positions[0]
    # Pull resampling: output index → grid voxel → world → source voxel.
    t = np.linalg.solve(src_affine, grid_affine) @ slab
    out_shape = list(grid_shape)
    out_shape[fixed] = len(positions)
    if np.allclose(t, np.eye(4)) and tuple(out_shape) == data.shape:
        return data.copy()
    return ndimage.affine_transform(
        data,
        t[:3, :3],
        offset=t[:3, 3],
        output_shape=tuple(out_shape),
        order=order,
        mode="constant",
        cval=0.0,
        prefilter=False,
    )


def _slab_to_slices(slab: np.ndarray, fixed: int) -> np.ndarray:
    """(..., X, Y, Z) slab with the slices along ``fixed`` → (n, ..., rows, cols), upright."""
    lead = slab.ndim - 3
    arr = np.moveaxis(slab, lead + fixed, 0)  # (n, ..., a, b) with a < b the remaining axes
    arr = np.swapaxes(arr, -1, -2)  # rows along b, columns along a
    return arr[..., ::-1, :]


def _pad_square(arr: np.ndarray) -> np.ndarray:
    """Zero-pad the last two axes to a centred square."""
    h, w = arr.shape[-2:]
    side = max(h, w)
    pad_r, pad_c = (side - h) // 2, (side - w) // 2
    pad = [(0, 0)] * (arr.ndim - 2) + [(pad_r, side - h - pad_r), (pad_c, side - w - pad_c)]
    return np.pad(arr, pad)


def _resize(arr: np.ndarray, size: int, *, nearest: bool) -> np.ndarray:
    """Resize (n, C, L, L) to (n, C, size, size): align_corners=False, antialiased to shrink."""
    if arr.shape[-1] == size:
        return arr
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if nearest:
        # nearest-exact samples floor((dst + 0.5) * scale): the same pixel-centre convention.
        out = F.interpolate(t, size=(size, size), mode="nearest-exact")
    else:
        out = F.interpolate(
            t, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return out.numpy()


def _volume_data(img: nib.spatialimages.SpatialImage, what: str) -> np.ndarray:
    """3D float32 data of ``img`` (a trailing singleton 4th axis is dropped), checked finite."""
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{what} must be a 3D volume", value=tuple(img.shape))
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    if not np.isfinite(data).all():
        raise InputError(
            f"{what} contains NaN or Inf values", value=int((~np.isfinite(data)).sum())
        )
    return data


def extract_slices(
    images: Sequence[nib.spatialimages.SpatialImage],
    spec: SliceSpec,
    mask: nib.spatialimages.SpatialImage | None = None,
) -> SubjectSlices:
    """Take the 2.5D centre slices of co-registered 3D volumes (one channel per image).

    The first image defines the grid; the others and the mask are resampled onto it through their
    own affines. Slices are ordered by ``spec.axes`` then position.
    """
    if isinstance(images, nib.spatialimages.SpatialImage):
        images = [images]
    if len(images) == 0:
        raise InputError("extract_slices needs at least one image")
    ref = images[0]
    ref_shape = tuple(int(n) for n in ref.shape[:3])
    src_affine = np.asarray(ref.affine, dtype=float)
    grid_affine, grid_shape, v = isotropic_grid(src_affine, ref_shape, spec.voxel_size)
    volumes = [
        (_volume_data(img, f"image {c}"), np.asarray(img.affine, float))
        for c, img in enumerate(images)
    ]
    mask_vol = None
    if mask is not None:
        mask_vol = ((_volume_data(mask, "mask") > 0).astype(np.float32), np.asarray(mask.affine))

    imgs, msks, axes, positions, p2w = [], [], [], [], []
    for axis in spec.axes:
        fixed = FIXED_AXIS[axis]
        n = grid_shape[fixed]
        span = (spec.per_axis - 1) * spec.step + 1
        if span > n:
            raise InputError(
                f"{axis} axis has {n} slices at {v:g} mm; {spec.per_axis} slices "
                f"{spec.step} apart need {span}",
                value=grid_shape,
            )
        pos = slice_positions(n, spec.per_axis, spec.step)
        chans = [
            _slab_to_slices(
                _resample_slab(d, a, grid_affine, grid_shape, fixed, pos, spec.order), fixed
            )
            for d, a in volumes
        ]
        stack = _pad_square(np.stack(chans, axis=1))  # (n, C, L, L)
        imgs.append(_resize(stack, spec.size, nearest=spec.order == 0))
        if mask_vol is not None:
            m = _resample_slab(mask_vol[0], mask_vol[1], grid_affine, grid_shape, fixed, pos, 0)
            m = _pad_square(_slab_to_slices(m, fixed)[:, None])
            msks.append(_resize(m, spec.size, nearest=True)[:, 0] > 0.5)
        axes.extend([axis] * len(pos))
        positions.append(pos)
        p2w.extend(grid_affine @ pixel_to_voxel(fixed, p, grid_shape, spec.size) for p in pos)

    masks = np.concatenate(msks).astype(np.uint8) if msks else None
    return SubjectSlices(
        images=np.concatenate(imgs).astype(np.float32, copy=False),
        masks=masks,
        axes=tuple(axes),
        positions=np.concatenate(positions),
        pixel_to_world=np.stack(p2w).astype(np.float64),
        mask_pixels=None if masks is None else masks.reshape(len(masks), -1).sum(1).astype(int),
        grid_affine=grid_affine,
        grid_shape=grid_shape,
        source_affine=src_affine,
        source_shape=ref_shape,  # type: ignore[arg-type]
        voxel_size=v,
    )


# --------------------------------------------------------------------------------------------
# Slice → volume
# --------------------------------------------------------------------------------------------


def _voxels_near_plane(
    a: np.ndarray, offset: float, half: float, shape: tuple[int, ...]
) -> np.ndarray:
    """Integer voxels (m, 3) with ``|a·ijk - offset| <= half``, without scanning the volume.

    Solve for the axis with the largest coefficient: for every pair of the other two indices
    the admissible values form one interval, so the cost is one 2D grid plus the hits.
    """
    ax = int(np.argmax(np.abs(a)))
    o0, o1 = (d for d in range(3) if d != ax)
    base = a[o0] * np.arange(shape[o0])[:, None] + a[o1] * np.arange(shape[o1])[None, :]
    lo = (offset - half - base) / a[ax]
    hi = (offset + half - base) / a[ax]
    if a[ax] < 0:
        lo, hi = hi, lo
    kmin = np.maximum(np.ceil(lo), 0).astype(np.int64).ravel()
    kmax = np.minimum(np.floor(hi), shape[ax] - 1).astype(np.int64).ravel()
    counts = np.maximum(kmax - kmin + 1, 0)
    total = int(counts.sum())
    pairs = np.repeat(np.arange(counts.size), counts)
    # Position of each hit within its pair's interval.
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    ijk = np.empty((total, 3), dtype=np.int64)
    ijk[:, o0], ijk[:, o1] = np.unravel_index(pairs, (shape[o0], shape[o1]))
    ijk[:, ax] = kmin[pairs] + within
    return ijk


def backproject(
    values: np.ndarray | torch.Tensor,
    pixel_to_world: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    *,
    thickness: float = 0.0,
    order: int = 1,
    return_count: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Put per-slice 2D maps ``(n, S, S)`` back into a 3D volume on the grid ``(affine, shape)``.

    A target voxel is covered by a slice when the slice's plane passes through the voxel, or when
    the voxel centre lies within ``thickness / 2`` mm of the plane (pass the slice store's voxel
    size to fill whole slabs on a finer grid). A covered voxel gets the slice value sampled
    (bilinear for ``order=1``, nearest for 0) at the projection of its centre; values from
    several slices/axes are averaged. Uncovered voxels are NaN; ``return_count=True`` also
    returns the number of slices averaged per voxel.
    """
    if not isinstance(values, np.ndarray) and hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    m_all = np.asarray(pixel_to_world, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    if m_all.ndim == 2:
        m_all = m_all[None]
    if values.ndim != 3 or m_all.shape != (len(values), 4, 3):
        raise InputError(
            "backproject needs values (n, H, W) and pixel_to_world (n, 4, 3)",
            value=(values.shape, m_all.shape),
        )
    if order not in (0, 1):
        raise ConfigError(f"backproject order must be 0 or 1, got {order!r}")
    shape = tuple(int(s) for s in shape)
    affine = np.asarray(affine, dtype=np.float64)
    n_vox = int(np.prod(shape))
    total = np.zeros(n_vox)
    count = np.zeros(n_vox, dtype=np.int32)
    h, w = values.shape[1:]
    for vals, m in zip(values, m_all, strict=True):
        u, v, p0 = m[:3, 0], m[:3, 1], m[:3, 2]
        normal = np.cross(u, v)
        norm = np.linalg.norm(normal)
        if norm == 0:
            raise InputError("degenerate pixel_to_world matrix (zero pixel size)", value=m.tolist())
        normal /= norm
        # Signed distance of voxel (i, j, k) to the plane is a·(i, j, k) - offset.
        a = normal @ affine[:3, :3]
        # Half of the voxel's extent along the normal: the plane crosses the voxel within it.
        half_vox = 0.5 * np.abs(a).sum()
        half = max(half_vox, 0.5 * thickness) * (1 + 1e-9) + 1e-9
        offset = normal @ (p0 - affine[:3, 3])
        ijk = _voxels_near_plane(a, offset, half, shape)
        if len(ijk) == 0:
            continue
        idx = np.ravel_multi_index(ijk.T, shape)
        world = ijk @ affine[:3, :3].T + affine[:3, 3]
        rc = (world - p0) @ np.linalg.pinv(np.stack([u, v], axis=1)).T
        inside = (
            (rc[:, 0] >= -0.5) & (rc[:, 0] <= h - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] <= w - 0.5)
        )
        idx, rc = idx[inside], rc[inside]
        sampled = ndimage.map_coordinates(vals, rc.T, order=order, mode="nearest")
        ok = np.isfinite(sampled)
        total[idx[ok]] += sampled[ok]
        count[idx[ok]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        volume = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    volume = volume.reshape(shape).astype(np.float32)
    if return_count:
        return volume, count.reshape(shape)
    return volume


# --------------------------------------------------------------------------------------------
# The on-disk store
# --------------------------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    """sha256 of a file's bytes (``"missing"`` when absent, so the build reports it later)."""
    if not path.is_file():
        return "missing"
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def store_fingerprint(
    sources: Sequence[SliceSource],
    splits: pd.DataFrame,
    spec: SliceSpec,
    classes: Sequence[str] | None = None,
) -> str:
    """Hash of what a slice store depends on: spec, classes, splits, input paths and bytes."""
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
            }
            for s in sources
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_image(path: Path, subject: str, what: str) -> nib.Nifti1Image:
    """Load a NIfTI fully into memory, turning every read failure into an InputError."""
    try:
        img = nib.load(str(path))
        data = _volume_data(img, what)
    except InputError as exc:
        raise InputError(str(exc), subject=subject, path=path) from exc
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"cannot read {what}: {exc}", subject=subject, path=path) from exc
    return nib.Nifti1Image(data, img.affine)


def _validate_sources(
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
    classes, split_of = _validate_sources(sources, splits, classes)
    fingerprint = store_fingerprint(sources, splits, spec, classes)
    if not force and store_is_current(out_dir, fingerprint):
        return SliceStore.open(out_dir)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Left behind by a killed build (SIGKILL skips the cleanup below); never a complete store.
    for pattern in (f".{out_dir.name}.tmp-*", f".{out_dir.name}.old-*"):
        for stale in out_dir.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = _write_store(tmp, sources, split_of, spec, classes, progress=progress)
        meta["fingerprint"] = fingerprint
        write_json(tmp / "meta.json", meta)  # last: its presence marks a complete store
        _swap_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return SliceStore.open(out_dir)


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
    images = np.lib.format.open_memmap(
        tmp / "images.npy",
        mode="w+",
        dtype=np.float32,
        shape=(n_total, channels, spec.size, spec.size),
    )
    masks = (
        np.lib.format.open_memmap(
            tmp / "masks.npy", mode="w+", dtype=np.uint8, shape=(n_total, spec.size, spec.size)
        )
        if has_masks
        else None
    )
    p2w = np.zeros((n_total, 4, 3))
    index_parts: list[pd.DataFrame] = []
    subjects: dict[str, Any] = {}
    voxel_sizes = set()
    target_of = {c: i for i, c in enumerate(classes)}
    for k, src in enumerate(track(sources, "Slicing subjects", disable=not progress)):
        pid = src.participant_id
        imgs = [_read_image(p, pid, "image") for p in src.images]
        mask = None if src.mask is None else _read_image(src.mask, pid, "mask")
        try:
            sl = extract_slices(imgs, spec, mask)
        except InputError as exc:
            raise InputError(str(exc), subject=pid, path=src.images[0]) from exc
        rows = slice(k * per_subject, (k + 1) * per_subject)
        images[rows] = sl.images
        if masks is not None:
            masks[rows] = 0 if sl.masks is None else sl.masks
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
            "voxel_size_mm": sl.voxel_size,
            "grid_affine": sl.grid_affine.tolist(),
            "grid_shape": list(sl.grid_shape),
            "source_affine": sl.source_affine.tolist(),
            "source_shape": list(sl.source_shape),
        }
    images.flush()
    del images
    if masks is not None:
        masks.flush()
        del masks
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
        "source": {pid: info["images"][0] for pid, info in subjects.items()},
        "subjects": subjects,
        "orientation": {
            "axial": "rows anterior→posterior, columns left→right",
            "coronal": "rows superior→inferior, columns left→right",
            "sagittal": "rows superior→inferior, columns posterior→anterior",
        },
        "versions": library_versions(),
    }


@dataclass
class SliceStore:
    """Read side of a slice store directory (arrays memory-mapped read-only)."""

    path: Path
    images: np.ndarray
    index: pd.DataFrame
    meta: dict[str, Any]
    pixel_to_world: np.ndarray
    masks: np.ndarray | None = None

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
            masks = (
                np.load(path / "masks.npy", mmap_mode="r")
                if (path / "masks.npy").is_file()
                else None
            )
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read slice store: {exc}", path=path) from exc
        index["mask_pixels"] = index["mask_pixels"].astype("Int64")
        n = len(index)
        if (
            images.shape[0] != n
            or p2w.shape != (n, 4, 3)
            or (masks is not None and masks.shape[0] != n)
            or meta.get("n_slices") != n
        ):
            raise InputError(
                "slice store arrays disagree with index.tsv",
                path=path,
                value={"index": n, "images": images.shape, "pixel_to_world": p2w.shape},
            )
        return cls(
            path=path, images=images, index=index, meta=meta, pixel_to_world=p2w, masks=masks
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def classes(self) -> list[str]:
        """Label names in target order."""
        return list(self.meta["classes"])

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    def subjects(self, split: str | None = None) -> list[str]:
        """Participant ids in store order, optionally of one split."""
        rows = self.rows(split=split)
        return list(dict.fromkeys(rows["participant_id"]))

    def rows(self, split: str | None = None, participant_id: str | None = None) -> pd.DataFrame:
        """Index rows (their index labels are row numbers into ``images``), filtered."""
        keep = np.ones(len(self.index), dtype=bool)
        if split is not None:
            keep &= (self.index["split"] == split).to_numpy()
        if participant_id is not None:
            keep &= (self.index["participant_id"] == participant_id).to_numpy()
        return self.index[keep]

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
