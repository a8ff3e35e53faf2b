"""dMRI preprocessing with DIPY: brain mask → DTI fit → FA/MD maps as BIDS derivatives.

Per subject, under ``WORK/derivatives/braincam/sub-XX/dwi/``:

- ``sub-XX_desc-brain_mask.nii.gz`` (uint8), from ``median_otsu`` on the mean b=0 image;
- ``sub-XX_model-tensor_param-fa_dwimap.nii.gz`` and ``..._param-md_dwimap.nii.gz`` (float32),
  each with a JSON sidecar (method, parameters, input hashes, library versions, cache key).

Every file is written atomically, the FA image last: an FA file that exists is a finished
subject. A re-run skips a subject when all outputs exist and the sidecars carry the cache key of
the current inputs (content hashes) and parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from braincam.config.prepare import DTIParams
from braincam.errors import BraincamError
from braincam.guard import inside
from braincam.imaging.derivatives import derivatives_root
from braincam.imaging.hashing import file_sha256
from braincam.imaging.nifti import write_nifti
from braincam.io import read_json, write_json
from braincam.modalities.base import Preprocessed, Step
from braincam.modalities.dwi.ingest import SubjectRecord
from braincam.modalities.dwi.validate import (
    load_dwi_data,
    read_gradients,
)
from braincam.provenance import library_versions

# Bump when the computation changes in a way the parameters do not capture.
CACHE_VERSION = 1


@dataclass(frozen=True)
class DerivativePaths:
    """The output files of one subject."""

    fa: Path
    md: Path
    mask: Path
    fa_json: Path
    md_json: Path

    def all(self) -> tuple[Path, ...]:
        return (self.fa, self.md, self.mask, self.fa_json, self.md_json)


def derivative_paths(work_dir: str | Path, participant_id: str) -> DerivativePaths:
    """Output paths of ``participant_id`` (names fixed by docs/architecture.md), checked to
    lie inside WORK."""
    d = inside(work_dir, derivatives_root(work_dir) / participant_id / "dwi")
    fa = d / f"{participant_id}_model-tensor_param-fa_dwimap.nii.gz"
    md = d / f"{participant_id}_model-tensor_param-md_dwimap.nii.gz"
    return DerivativePaths(
        fa=fa,
        md=md,
        mask=d / f"{participant_id}_desc-brain_mask.nii.gz",
        fa_json=fa.with_name(fa.name.replace(".nii.gz", ".json")),
        md_json=md.with_name(md.name.replace(".nii.gz", ".json")),
    )


def input_hashes(record: SubjectRecord) -> dict[str, str]:
    """Content hashes of the subject's DWI, bval and bvec files."""
    return {
        "dwi": file_sha256(record.dwi),
        "bval": file_sha256(record.bval),
        "bvec": file_sha256(record.bvec),
    }


def cache_key(hashes: dict[str, str], params: DTIParams) -> str:
    """One hash of the inputs' content, the parameters and the DIPY version."""
    import dipy

    payload = {
        "inputs": hashes,
        "params": params.model_dump(),
        "dipy": dipy.__version__,
        "cache_version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def is_cached(paths: DerivativePaths, key: str) -> bool:
    """True when every output exists and both sidecars record ``key``."""
    if not all(p.is_file() for p in paths.all()):
        return False
    try:
        return all(
            read_json(p).get("BraincamCacheKey") == key for p in (paths.fa_json, paths.md_json)
        )
    except (OSError, ValueError):
        return False


def brain_mask(mean_b0: np.ndarray, params: DTIParams) -> np.ndarray:
    """Boolean brain mask from ``median_otsu`` on the mean b=0 image."""
    from dipy.segment.mask import median_otsu

    _, mask = median_otsu(
        mean_b0, median_radius=params.median_radius, numpass=params.numpass, dilate=params.dilate
    )
    return np.asarray(mask, dtype=bool)


def _wls_normal(
    design_matrix: np.ndarray, data: np.ndarray, *, return_S0_hat: bool = False
) -> tuple[Any, None]:
    """DIPY's two-pass WLS tensor fit (Chung et al. 2006) solved by 7×7 normal equations.

    DIPY's ``wls_fit_tensor`` takes a pseudo-inverse (an SVD) of every voxel's weighted design
    matrix, ~80 % of a subject's preparation time; the same estimator from the normal equations
    ``(XᵀW²X) β = XᵀW² log S`` costs ~1/6 of that. The design's columns are scaled to unit norm
    first so the squared condition number stays small (FA within ~1e-9 of DIPY's: tests and
    benchmarks/bench_prepare.py). Voxels whose weights are not finite and chunks whose systems
    are singular go through DIPY's own function, so the result is DIPY's wherever the normal
    equations cannot be trusted. The OLS start, the eigen-decomposition and the minimum
    diffusivity are DIPY's. Signature and return of ``wls_fit_tensor`` (``TensorModel`` takes
    it as ``fit_method``; wrapped below in DIPY's chunking).
    """
    from dipy.reconst.dti import eig_from_lo_tri, ols_fit_tensor, wls_fit_tensor

    log_s = np.log(data)
    ols, _ = ols_fit_tensor(design_matrix, data, return_lower_triangular=True)
    with np.errstate(over="ignore"):  # overflowing weights are caught just below
        w2 = np.exp(2.0 * (ols @ design_matrix.T))
    scale = np.linalg.norm(design_matrix, axis=0)
    scale[scale == 0] = 1.0
    x = design_matrix / scale
    usable = np.isfinite(w2).all(axis=1) & (w2 > 0).all(axis=1)
    lower = np.full((data.shape[0], design_matrix.shape[1]), np.nan)
    try:
        normal = np.einsum("gi,ng,gj->nij", x, w2[usable], x, optimize=True)
        rhs = np.einsum("gi,ng->ni", x, w2[usable] * log_s[usable], optimize=True)
        lower[usable] = np.linalg.solve(normal, rhs[..., None])[..., 0] / scale
    except np.linalg.LinAlgError:  # a singular system: DIPY's pseudo-inverse for the chunk
        lower[:] = np.nan
    redo = ~np.isfinite(lower).all(axis=1)
    if redo.any():
        lower[redo] = wls_fit_tensor(design_matrix, data[redo], return_lower_triangular=True)[0]
    eig = eig_from_lo_tri(lower, min_diffusivity=1e-6 / -design_matrix.min())
    if return_S0_hat:
        return (eig, np.exp(-lower[:, -1])), None
    return eig, None


def wls_fit_normal(design_matrix: np.ndarray, data: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
    """:func:`_wls_normal` over DIPY's chunks of 10 000 voxels (bounded temporary memory)."""
    from dipy.reconst.dti import iter_fit_tensor

    return iter_fit_tensor()(_wls_normal)(design_matrix, data, **kwargs)


def fit_dti(
    data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray, params: DTIParams
) -> tuple[np.ndarray, np.ndarray]:
    """FA and MD (float64) of a DTI fit restricted to ``mask``; 0 outside it.

    DIPY's own values are kept (no clipping) so that they match a direct DIPY call; voxels
    where the fit is degenerate (NaN) become 0.
    """
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    gtab = gradient_table(
        bvals, bvecs=bvecs, b0_threshold=params.b0_threshold, atol=params.bvec_tolerance
    )
    method = wls_fit_normal if params.fit_method == "WLS" else params.fit_method
    fit = TensorModel(gtab, fit_method=method).fit(data, mask=mask)
    fa = np.nan_to_num(np.asarray(fit.fa, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    md = np.nan_to_num(np.asarray(fit.md, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    fa[~mask] = 0.0
    md[~mask] = 0.0
    return fa, md


def _save_map(path: Path, data: np.ndarray, like: nib.Nifti1Image, dtype: type) -> None:
    """Write a 3D map on the DWI's grid (same affine and qform/sform codes), atomically."""
    write_nifti(
        path,
        data,
        like.affine,
        dtype,
        qform_code=int(like.header["qform_code"]) or 1,
        sform_code=int(like.header["sform_code"]) or 1,
    )


def _sidecar(
    record: SubjectRecord,
    params: DTIParams,
    hashes: dict[str, str],
    key: str,
    *,
    description: str,
    units: str,
    mask_rel: str,
    n_brain: int,
) -> dict:
    return {
        "Description": description,
        "Units": units,
        "Model": "tensor",
        "FitMethod": params.fit_method,
        "Parameters": params.model_dump(),
        "BrainMask": {
            "Method": "dipy.segment.mask.median_otsu on the mean b=0 image",
            "File": mask_rel,
            "Voxels": n_brain,
        },
        "Sources": [str(record.dwi), str(record.bval), str(record.bvec)],
        "Session": record.session,
        "Run": record.run,
        "InputHashes": {k: f"sha256:{v}" for k, v in hashes.items()},
        "BraincamCacheKey": key,
        "Versions": library_versions(),
    }


def compute_maps(
    record: SubjectRecord, work_dir: str | Path, params: DTIParams, key: str, step: Step
) -> Preprocessed:
    """Validate, mask, fit and write one subject (``step.name`` follows the stages, so a
    failure names where it happened); raises on bad input.

    Order of writing matters: the FA image last, so its existence marks a finished subject.
    """
    pid = record.participant_id
    paths = derivative_paths(work_dir, pid)
    hashes = input_hashes(record)
    step.name = "validate"
    img, data = load_dwi_data(record.dwi, subject=pid)
    grads = read_gradients(
        record.bval,
        record.bvec,
        data.shape[3],
        subject=pid,
        b0_threshold=params.b0_threshold,
        bvec_tolerance=params.bvec_tolerance,
    )
    step.name = "mask"
    b0 = grads.b0_mask(params.b0_threshold)
    mask = brain_mask(data[..., b0].mean(axis=-1), params)
    if not mask.any():
        raise BraincamError(f"brain mask is empty (subject={pid}; file={record.dwi})")
    step.name = "dti"
    fa, md = fit_dti(data, grads.bvals, grads.bvecs, mask, params)
    del data
    step.name = "write"
    rel_mask = paths.mask.name
    common = dict(mask_rel=rel_mask, n_brain=int(mask.sum()))
    _save_map(paths.mask, mask, img, np.uint8)
    _save_map(paths.md, md, img, np.float32)
    write_json(
        paths.md_json,
        _sidecar(
            record,
            params,
            hashes,
            key,
            description="Mean diffusivity (DTI)",
            units="mm^2/s",
            **common,
        ),
    )
    write_json(
        paths.fa_json,
        _sidecar(
            record,
            params,
            hashes,
            key,
            description="Fractional anisotropy (DTI)",
            units="arbitrary",
            **common,
        ),
    )
    _save_map(paths.fa, fa, img, np.float32)
    return Preprocessed((str(paths.fa),), str(paths.mask))
