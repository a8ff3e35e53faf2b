"""Ground-truth file names of a synthetic cohort (``BIDS/derivatives/groundtruth/``), defined
once: the generators (:mod:`braincam.synth`) write them, preprocessing (true transforms) and
evaluation (coordinate maps to MNI) read them, and neither imports the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from braincam.imaging.templates import TEMPLATE_SPACE
from braincam.io import read_json

GROUNDTRUTH = "groundtruth"  # the derivatives pipeline folder
#: Suffixes of the coordinate maps between the template and a subject's native grid, next to the
#: subject's ground-truth mask (docs/architecture.md).
MNI_TO_NATIVE_SUFFIX = f"_from-{TEMPLATE_SPACE}_to-native_coords.nii.gz"
NATIVE_TO_MNI_SUFFIX = f"_from-native_to-{TEMPLATE_SPACE}_coords.nii.gz"
#: The ``desc-`` of a structural subject's lesion mask (``*_desc-lesion_mask.nii.gz``): the
#: structural ingest looks it up by default, and evaluate-cams scores lesion hit rates on it.
LESION_MASK_DESC = "lesion"
#: The ``desc-`` of the masks of the other structural effects synth plants: voxels whose GM
#: fraction the group's atrophy reduced, and voxels that became ventricle through enlargement.
ATROPHY_MASK_DESC = "atrophy"
VENTRICLE_MASK_DESC = "ventricles"


#: The structural effects with a ground-truth mask besides the lesions, by ``desc-``.
EFFECT_MASK_DESCS = (ATROPHY_MASK_DESC, VENTRICLE_MASK_DESC)


def sibling_mask(path: str | Path, desc: str) -> Path | None:
    """The ``*_desc-<desc>_mask`` file next to a ground-truth mask (same subject and folder,
    same extension), or None when ``path`` is not named ``*_desc-<label>_mask.nii[.gz]``. The
    file may not exist."""
    p = Path(path)
    match = re.fullmatch(r"(.+_desc-)[A-Za-z0-9]+(_mask\.nii(?:\.gz)?)", p.name)
    return None if match is None else p.with_name(f"{match.group(1)}{desc}{match.group(2)}")


def mni_to_native_beside(mask: str | Path | None, participant_id: str) -> Path | None:
    """The subject's known ``from-MNI…_to-native`` coordinate map, which synthetic cohorts keep
    next to the subject's ground-truth mask; None without a mask or without that file."""
    if mask is None:
        return None
    path = Path(mask).parent / f"{participant_id}{MNI_TO_NATIVE_SUFFIX}"
    return path if path.is_file() else None


def is_lesion_mask(path: str | Path) -> bool:
    """Whether a ground-truth mask file is a lesion mask by its BIDS name
    (``*_desc-lesion_mask.nii[.gz]``), whatever directory it comes from."""
    name = Path(path).name
    return any(name.endswith(f"_desc-{LESION_MASK_DESC}_mask{ext}") for ext in (".nii", ".nii.gz"))


def groundtruth_root(bids_dir: str | Path) -> Path:
    """``BIDS/derivatives/groundtruth``."""
    return Path(bids_dir) / "derivatives" / GROUNDTRUTH


def dwi_groundtruth_paths(bids_dir: str | Path, participant_id: str) -> dict[str, Path]:
    """Paths of one diffusion subject's ground-truth files (keys: effect_mask, region_mask,
    true_fa, native_to_mni, mni_to_native). They exist only for datasets made by ``braincam
    synth``."""
    base = groundtruth_root(bids_dir) / participant_id / "dwi"
    p = participant_id
    return {
        "effect_mask": base / f"{p}_desc-effect_mask.nii.gz",
        "region_mask": base / f"{p}_desc-region_mask.nii.gz",
        "true_fa": base / f"{p}_model-tensor_param-fa_desc-true_dwimap.nii.gz",
        "native_to_mni": base / f"{p}{NATIVE_TO_MNI_SUFFIX}",
        "mni_to_native": base / f"{p}{MNI_TO_NATIVE_SUFFIX}",
    }


def anat_groundtruth_paths(bids_dir: str | Path, participant_id: str) -> dict[str, Path]:
    """Ground-truth files of one structural subject (only for datasets made by the generator).

    Keys: ``lesion_mask`` (uint8, T1w grid), ``lesion_json`` (lesion list), ``atrophy_mask``
    and ``ventricle_mask`` (uint8, T1w grid; empty for a group without that effect), ``dseg``
    (tissue labels), ``xfm_T2w`` / ``xfm_FLAIR`` (true rigid transforms, JSON),
    ``native_to_mni`` / ``mni_to_native`` (coordinate maps as in docs/architecture.md).
    """
    base = groundtruth_root(bids_dir) / participant_id / "anat"
    p = participant_id
    return {
        "lesion_mask": base / f"{p}_desc-{LESION_MASK_DESC}_mask.nii.gz",
        "lesion_json": base / f"{p}_desc-{LESION_MASK_DESC}_mask.json",
        "atrophy_mask": base / f"{p}_desc-{ATROPHY_MASK_DESC}_mask.nii.gz",
        "ventricle_mask": base / f"{p}_desc-{VENTRICLE_MASK_DESC}_mask.nii.gz",
        "dseg": base / f"{p}_desc-tissue_dseg.nii.gz",
        "xfm_T2w": base / f"{p}_from-T2w_to-T1w_desc-true_xfm.json",
        "xfm_FLAIR": base / f"{p}_from-FLAIR_to-T1w_desc-true_xfm.json",
        "native_to_mni": base / f"{p}{NATIVE_TO_MNI_SUFFIX}",
        "mni_to_native": base / f"{p}{MNI_TO_NATIVE_SUFFIX}",
    }


def mni_region_path(bids_dir: str | Path) -> Path:
    """The effect region on the MNI grid (uint8), shared by all subjects."""
    return groundtruth_root(bids_dir) / f"space-{TEMPLATE_SPACE}_desc-effect_mask.nii.gz"


def read_true_transform(path: str | Path) -> NDArray[np.float64]:
    """The 4×4 RAS matrix of a ground-truth ``*_desc-true_xfm.json`` (T1w mm → moving mm)."""
    return np.asarray(read_json(path)["MatrixRAS"], dtype=np.float64)
