"""The MNI152 template nilearn bundles (no download): maps as arrays, the T1 as a NIfTI image.

Used by the synthetic generators (anatomy of every simulated subject) and by evaluation (the
white-matter label of the atlas, registration to MNI), so it lives below both.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from braincam.errors import InputError
from braincam.imaging.resample import resample_isotropic

#: BIDS template identifier used in file names (docs/architecture.md). nilearn bundles the ICBM
#: 2009 *symmetric* release ("tal_nlin_sym_09a"); braincam keeps the contract's name for the space.
TEMPLATE_SPACE = "MNI152NLin2009cAsym"


_MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def mni152_arrays(
    keys: tuple[str, ...] = ("t1", "gm", "wm"),
) -> tuple[dict[str, NDArray[np.float32]], NDArray[np.float64]]:
    """nilearn's bundled 1 mm MNI152 T1, GM and WM maps (each scaled to [0, 1]) and affine.

    ``keys``: which of ``"t1"``, ``"gm"``, ``"wm"`` to read (all three share one grid).

    Reads the files nilearn ships in ``nilearn/datasets/data`` directly, exactly as
    ``nilearn.datasets.load_mni152_{,gm_,wm_}template(resolution=1)`` do (load, divide by the
    maximum), because importing ``nilearn.datasets`` costs seconds; falls back to those functions
    if the files move. Nothing is downloaded either way.
    """
    import importlib.util

    import nibabel as nib

    spec = importlib.util.find_spec("nilearn")
    roots = list(spec.submodule_search_locations or []) if spec else []
    data_dir = Path(roots[0], "datasets", "data") if roots else None
    unknown = sorted(set(keys) - set(_MNI_FILES))
    if unknown or not keys:
        raise ValueError(f"keys must be among {sorted(_MNI_FILES)}; got {list(keys)}")
    paths = {k: data_dir / _MNI_FILES[k] for k in keys} if data_dir else {}
    if paths and all(p.is_file() for p in paths.values()):
        imgs = {k: nib.load(str(p)) for k, p in paths.items()}
    else:  # pragma: no cover - depends on nilearn's packaging
        from nilearn import datasets

        loaders = {
            "t1": datasets.load_mni152_template,
            "gm": datasets.load_mni152_gm_template,
            "wm": datasets.load_mni152_wm_template,
        }
        imgs = {k: loaders[k](resolution=1) for k in keys}
    arrays = {}
    for key, img in imgs.items():
        data = np.asarray(img.get_fdata(dtype=np.float32))
        arrays[key] = data / np.float32(data.max())
    return arrays, np.asarray(imgs[keys[0]].affine, dtype=np.float64)


def mni_template(resolution_mm: float = 2.0) -> nib.Nifti1Image:
    """nilearn's bundled MNI152 T1 template (ICBM 2009a), resampled to ``resolution_mm``."""
    from nilearn.datasets import load_mni152_template

    if resolution_mm <= 0:
        raise InputError("resolution_mm must be positive", value=resolution_mm)
    base = load_mni152_template(resolution=1 if resolution_mm < 2 else 2)
    if math.isclose(resolution_mm, abs(base.affine[0, 0])):
        return base
    return resample_isotropic(base, resolution_mm)
