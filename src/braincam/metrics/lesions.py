"""Lesion-level hit rate by lesion size: does the map hold a local maximum inside each lesion?

The pixel-level metrics of :mod:`braincam.metrics.localization` score a whole mask at once: on a
slice with several lesions the pointing game asks about the one global maximum only, and
relevance mass is dominated by the largest lesion. Here every lesion is scored on its own.

Definitions (maps ``(N, *spatial)`` with 2 or 3 spatial dimensions, masks of the same shape):

- **Lesion**: one connected component of a sample's mask — per slice in 2-D, per volume in 3-D.
  Default connectivity ``"full"`` (8 neighbours in 2-D, 26 in 3-D): a synthetic or segmented
  lesion rasterized on a grid touches itself diagonally, and splitting it there would count one
  lesion twice. ``"face"`` (4 / 6) is available.
- **Local maximum**: a pixel equal to the maximum of its full 3×3 (3×3×3) neighbourhood whose
  plateau (the connected set of equal-valued pixels around it) has no higher neighbour. A flat
  shelf on a slope is therefore *not* a maximum; a flat top is (every pixel of it is).
- **Chance level** of a sample: the map's (K+1)-th largest value, K = the sample's number of
  mask pixels; a maximum counts only when strictly above it, i.e. when it is among the K highest
  pixels (fewer when the K-th and (K+1)-th tie). A map that spent its K highest values exactly on
  the lesions (relevance rank accuracy 1) clears it everywhere it peaks inside a lesion, while a
  small bump far below the map's top does not. The mean would be too lenient: half of a noise
  map's local maxima are above its mean, so a random map would hit almost every lesion of a few
  pixels. A constant map has nothing strictly above its level: it hits no lesion.
- **Hit**: a lesion holding at least one local maximum above the chance level.
- **Size**: the equivalent diameter in mm — of the circle (2-D) or sphere (3-D) with the lesion's
  area or volume, from the pixel spacing. Millimetres rather than pixel counts, so that slices
  at 64², native volumes and other grids share the bins; the default bins
  (:data:`DEFAULT_BINS_MM`: < 3, 3–6, 6–10, ≥ 10 mm) start at the 3 mm that MS diagnostic
  criteria take as the smallest lesion and reach the size of one cell of an 8×8 CAM grid on a
  brain slice (~20 mm).

Chance rows: the uniform map of :func:`braincam.metrics.localization.baseline_maps` hits nothing
(it is constant). The seeded random map (i.i.d. uniform noise) hits a lesion when one of its K
top pixels falls inside it and is a local maximum, so its rate grows with lesion size and with
the lesions' share of the field — which is why it is reported per size bin next to every method:
a rate is above chance only against that row. For a field of P pixels, K = 2 single-pixel
lesions that are not neighbours and a lesion pixel with n neighbours, the hit probability is
exactly 2/P − n / (P (P − 1)) (the pixel is among the top 2, unless it is second and the first
is one of its neighbours); tests/metrics/test_lesions.py checks the random map against it.

Connected components leave torch for SciPy (``scipy.ndimage.label``) once per batch, as in
:mod:`braincam.metrics.boxes`; the rest is batched torch on the maps' device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from braincam.errors import InputError
from braincam.metrics.boxes import Connectivity
from braincam.metrics.maps import check_maps, check_masks

__all__ = [
    "DEFAULT_BINS_MM",
    "bin_label",
    "chance_level",
    "equivalent_diameter",
    "hit_rate_by_size",
    "label_lesions",
    "lesion_hits",
    "local_maxima",
]

#: Upper edges (mm) of the equivalent-diameter bins below the last, open-ended one.
DEFAULT_BINS_MM: tuple[float, ...] = (3.0, 6.0, 10.0)


def label_lesions(masks: Tensor, connectivity: Connectivity = "full") -> tuple[Tensor, int]:
    """Connected components of boolean masks ``(N, *spatial)`` → (labels int64, count).

    Labels run 1..count over the whole batch in raster order (sample by sample), 0 is
    background; components never join across samples.
    """
    if connectivity not in ("full", "face"):
        raise InputError("connectivity must be 'full' or 'face'", value=connectivity)
    spatial = masks.ndim - 1
    inner = ndimage.generate_binary_structure(spatial, spatial if connectivity == "full" else 1)
    structure = np.zeros((3, *inner.shape), dtype=bool)
    structure[1] = inner  # the batch axis is unreachable: one scipy call for the batch
    labels, count = ndimage.label(masks.cpu().numpy(), structure=structure)
    return torch.from_numpy(labels.astype(np.int64)).to(masks.device), int(count)


def _pool(x: Tensor) -> Tensor:
    """Maximum over each voxel's full 3×3(×3) neighbourhood (itself included) of ``(N, 1, …)``."""
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(x, kernel_size=3, stride=1, padding=1)


def _peaks(maps: Tensor, floor: Tensor) -> Tensor:
    """Local maxima (plateau rule of the module docstring) among voxels strictly above ``floor``
    (one value per sample); voxels at or below it are never maxima and never searched, so a
    large flat background does not cost one pass per voxel of its width."""
    x = maps.unsqueeze(1)
    above = x > floor.view((-1,) + (1,) * (x.ndim - 1))
    peak = (x == _pool(x)) & above
    while True:
        # A candidate whose equal-valued neighbour is not a candidate sits on a plateau that
        # rises somewhere: drop it; repeated, the drop spreads over that whole plateau.
        # (Candidates are ≥ every neighbour, so "max of the non-candidates = own value" is
        # "an equal non-candidate neighbour".)
        others = _pool(x.masked_fill(peak, -math.inf))
        drop = peak & (others == x)
        if not bool(drop.any()):
            return peak.squeeze(1)
        peak &= ~drop


def local_maxima(maps: Tensor) -> Tensor:
    """Boolean ``(N, *spatial)``: the maps' local maxima (full neighbourhood, flat tops count,
    shelves do not). A constant map is one flat top: every voxel."""
    maps = check_maps(maps)
    return _peaks(maps, torch.full((len(maps),), -math.inf, dtype=maps.dtype, device=maps.device))


def chance_level(maps: Tensor, masks: Tensor) -> Tensor:
    """Per sample the (K+1)-th largest map value, K = its mask voxels (the minimum when K ≥ the
    field): a local maximum above it is among the K highest voxels."""
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    flat = maps.flatten(1)
    k = masks.flatten(1).sum(1).clamp_max(flat.shape[1] - 1)
    descending = flat.sort(1, descending=True).values
    return descending.gather(1, k[:, None])[:, 0]


def equivalent_diameter(voxels: Tensor, voxel_size: Tensor, ndim: int) -> Tensor:
    """Diameter (mm) of the circle (2-D) or sphere (3-D) of ``voxels`` × ``voxel_size`` (mm² or
    mm³ per voxel)."""
    size = voxels.double() * voxel_size.double()
    if ndim == 2:
        return torch.sqrt(4.0 * size / math.pi)
    return torch.pow(6.0 * size / math.pi, 1.0 / 3.0)


def _voxel_size(spacing: float | Sequence[float] | Tensor, n: int, ndim: int) -> Tensor:
    """Area or volume (mm² / mm³) of one voxel per sample, from a spacing given as one number,
    one per axis, or ``(N, ndim)``."""
    s = torch.as_tensor(spacing, dtype=torch.float64)
    if s.ndim == 0:
        s = s.expand(ndim)
    if s.ndim == 1 and s.shape[0] == ndim:
        s = s.expand(n, ndim)
    if tuple(s.shape) != (n, ndim) or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise InputError(
            f"spacing must be positive: one number, {ndim} per axis, or ({n}, {ndim})",
            value=tuple(s.shape),
        )
    return s.prod(1)


def lesion_hits(
    maps: Tensor,
    masks: Tensor,
    spacing: float | Sequence[float] | Tensor = 1.0,
    connectivity: Connectivity = "full",
) -> dict[str, Tensor]:
    """Every lesion of ``masks`` with its size and whether ``maps`` hits it (module docstring).

    ``spacing``: voxel edge lengths in mm (one number, one per spatial axis, or ``(N, ndim)``
    per sample). Returns per-lesion tensors (on the CPU), lesions in raster order sample by
    sample: ``sample`` (index into the batch), ``voxels``, ``diameter_mm``, ``hit`` (bool).
    Samples without mask voxels contribute no lesion.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    n, ndim = maps.shape[0], maps.ndim - 1
    voxel_size = _voxel_size(spacing, n, ndim)
    labels, count = label_lesions(masks, connectivity)
    peaks = _peaks(maps, chance_level(maps, masks))
    flat = labels.flatten().cpu()
    voxels = torch.bincount(flat, minlength=count + 1)[1:]
    hit = torch.bincount(labels[peaks].cpu(), minlength=count + 1)[1:] > 0
    # Every voxel of a lesion lies in the same sample: scattering the sample index of each
    # voxel onto its label writes one value per label.
    owner = torch.arange(n).view((-1,) + (1,) * ndim).expand(labels.shape).flatten()
    sample = torch.zeros(count + 1, dtype=torch.int64).scatter_(0, flat, owner)[1:]
    return {
        "sample": sample,
        "voxels": voxels,
        "diameter_mm": equivalent_diameter(voxels, voxel_size[sample], ndim),
        "hit": hit,
    }


def bin_label(low: float, high: float | None) -> str:
    """The name of a size bin: ``"3-6mm"``, ``"10mm+"``; ``"all"`` for every lesion."""
    if low == 0 and high is None:
        return "all"
    if high is None:
        return f"{low:g}mm+"
    return f"{low:g}-{high:g}mm"


def hit_rate_by_size(
    lesions: dict[str, Tensor], bins_mm: Sequence[float] = DEFAULT_BINS_MM
) -> list[dict[str, float | int | str | None]]:
    """Hit rate overall and per equivalent-diameter bin of a :func:`lesion_hits` table.

    Rows ``bin`` (:func:`bin_label`), ``low_mm``, ``high_mm`` (None: open), ``n_lesions``,
    ``n_hit``, ``hit_rate`` (None for an empty bin); the first row is ``all``. A lesion belongs
    to the bin with ``low_mm ≤ diameter < high_mm``.
    """
    edges = [float(b) for b in bins_mm]
    if any(b <= 0 for b in edges) or edges != sorted(set(edges)):
        raise InputError("bins_mm must be increasing positive diameters", value=list(bins_mm))
    diameter, hit = lesions["diameter_mm"].double(), lesions["hit"].bool()
    bounds: list[tuple[float, float | None]] = [(0.0, None)]
    bounds += list(zip([0.0, *edges], [*edges, None], strict=True))
    rows: list[dict[str, float | int | str | None]] = []
    for low, high in bounds:
        inside = diameter >= low
        if high is not None:
            inside &= diameter < high
        n_lesions, n_hit = int(inside.sum()), int((hit & inside).sum())
        rows.append(
            {
                "bin": bin_label(low, high),
                "low_mm": low,
                "high_mm": high,
                "n_lesions": n_lesions,
                "n_hit": n_hit,
                "hit_rate": n_hit / n_lesions if n_lesions else None,
            }
        )
    return rows
