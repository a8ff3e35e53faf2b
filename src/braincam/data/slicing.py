"""2.5D geometry: centre slices of a volume on a canonical isotropic grid, and back again.

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
The store on disk that holds these slices is :mod:`braincam.data.slices`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
from scipy import ndimage

if TYPE_CHECKING:  # torch is imported lazily: prepare's workers need it only to resize
    import torch

from braincam.config.prepare import SliceSpec
from braincam.errors import ConfigError, InputError
from braincam.imaging.orientation import FIXED_AXIS


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
    brain: np.ndarray | None = None  # uint8 (n, S, S): the brain mask, when given

    def __len__(self) -> int:
        return int(self.images.shape[0])


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
    brain: nib.spatialimages.SpatialImage | None = None,
) -> SubjectSlices:
    """Take the 2.5D centre slices of co-registered 3D volumes (one channel per image).

    The first image defines the grid; the others and the masks (``mask``: ground truth,
    ``brain``: the brain mask) are resampled onto it through their own affines (nearest
    neighbour). Slices are ordered by ``spec.axes`` then position.
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
    labels = {
        name: ((_volume_data(img, name) > 0).astype(np.float32), np.asarray(img.affine))
        for name, img in (("mask", mask), ("brain", brain))
        if img is not None
    }

    imgs, axes, positions, p2w = [], [], [], []
    label_slices: dict[str, list[np.ndarray]] = {name: [] for name in labels}
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
        for name, (vol, aff) in labels.items():
            m = _resample_slab(vol, aff, grid_affine, grid_shape, fixed, pos, 0)
            m = _pad_square(_slab_to_slices(m, fixed)[:, None])
            label_slices[name].append(_resize(m, spec.size, nearest=True)[:, 0] > 0.5)
        axes.extend([axis] * len(pos))
        positions.append(pos)
        p2w.extend(grid_affine @ pixel_to_voxel(fixed, p, grid_shape, spec.size) for p in pos)

    stacked = {n: np.concatenate(v).astype(np.uint8) for n, v in label_slices.items()}
    masks = stacked.get("mask")
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
        brain=stacked.get("brain"),
    )


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
