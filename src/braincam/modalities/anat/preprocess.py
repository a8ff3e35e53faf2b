"""Structural preprocessing: N4 → rigid co-registration to T1w → equalization → slice trimming.

Per subject (:func:`preprocess_anat`), with SimpleITK and scikit-image:

1. **N4** bias-field correction of each contrast on its own grid (fitted on a shrunken copy
   inside an Otsu foreground mask; the log field is then evaluated at full resolution).
2. **Rigid registration** of T2w and FLAIR to T1w: Euler 3D transform, Mattes mutual
   information, multi-resolution (shrink 4/2/1, smoothing 2/1/0 voxels), regular-step gradient
   descent, random sampling with a fixed seed. Initialised from the scanner coordinates (same-
   session images are already close); ``init="moments"`` or ``"geometry"`` use SimpleITK's
   centred initializer instead. One resampling (linear) onto the T1w grid.
3. **Brain mask**: ``brain_mask="extract"`` (default) registers the N4-corrected T1w to the
   MNI152 template nilearn ships and carries its brain mask back, refined on the subject
   (:mod:`.brain_extraction`: skull, scalp, eyes and neck excluded; Dice 0.974 on a real head);
   ``"foreground"`` takes the Otsu foreground of T1w ∪ registered T2w (largest component,
   holes filled) — a head mask, right only for images that are already skull-stripped.
4. **Histogram equalization** within the brain (``outside_brain="zero"``: the network sees
   only the brain) or within the head (``"keep"``), ``global`` (``equalize_hist`` with the
   mask) or ``adaptive`` (CLAHE, ``equalize_adapthist``); values in [0, 1], exactly 0 outside.
5. **Slice trimming** along ``trim_axis``: keep the contiguous range of slices whose brain area
   is at least ``trim_threshold`` × the largest slice's (:func:`trim_range`); the volumes are
   cropped to it, so the slice store's centre slices stay inside the brain.

Outputs (BIDS derivatives, ``WORK/derivatives/braincam/sub-XX/anat/``, names in
:func:`anat_derivative_paths`) are three co-registered volumes on one grid — the slice store's
three channels — a brain mask, the estimated transforms (ITK text + JSON with the RAS matrix) and,
when the true transforms are known (synthetic data), registration errors. Sidecars record the
parameters, input hashes and versions; a re-run skips subjects whose cache key is unchanged
(ingest is :mod:`.ingest`, the cache key and the seam to ``prepare`` :mod:`.modality`; N4,
registration and equalization live in :mod:`.n4`, :mod:`.registration` and :mod:`.equalize`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from braincam.config.prepare import AnatParams
from braincam.errors import InputError
from braincam.guard import inside
from braincam.imaging.derivatives import derivatives_root
from braincam.imaging.nifti import load_volume, write_nifti
from braincam.imaging.orientation import crop_axis, slice_axis
from braincam.imaging.registration import registration_error
from braincam.imaging.resample import resample_to
from braincam.imaging.sitk import ras_to_sitk_transform
from braincam.io import atomic_path, write_json
from braincam.modalities.anat.equalize import equalize, trim_range
from braincam.modalities.anat.n4 import (
    brain_mask_from,
    foreground_mask,
    head_extent,
    n4_correct,
)
from braincam.modalities.anat.registration import Registration, register_rigid
from braincam.provenance import library_versions

CONTRASTS = ("T1w", "T2w", "FLAIR")
MOVING = ("T2w", "FLAIR")
CACHE_VERSION = 2  # 2: brain extraction (the mask was the head's before)


@dataclass(frozen=True)
class AnatPaths:
    """Output files of one subject (``WORK/derivatives/braincam/sub-XX/anat/``)."""

    images: dict[str, Path]  # contrast → preprocessed NIfTI (all on the trimmed T1w grid)
    sidecars: dict[str, Path]
    mask: Path
    xfm: dict[str, Path]  # moving contrast → ITK text transform
    xfm_json: dict[str, Path]

    def all(self) -> list[Path]:
        return [
            *self.images.values(),
            *self.sidecars.values(),
            self.mask,
            *self.xfm.values(),
            *self.xfm_json.values(),
        ]


def anat_derivative_paths(work_dir: str | Path, participant_id: str) -> AnatPaths:
    """Output paths of one subject (T1w first: channel order of the slice store)."""
    d = inside(work_dir, derivatives_root(work_dir) / participant_id / "anat")
    p = participant_id
    images = {
        "T1w": d / f"{p}_desc-preproc_T1w.nii.gz",
        "T2w": d / f"{p}_space-T1w_desc-preproc_T2w.nii.gz",
        "FLAIR": d / f"{p}_space-T1w_desc-preproc_FLAIR.nii.gz",
    }
    return AnatPaths(
        images=images,
        sidecars={k: v.with_name(v.name.replace(".nii.gz", ".json")) for k, v in images.items()},
        mask=d / f"{p}_space-T1w_desc-brain_mask.nii.gz",
        xfm={m: d / f"{p}_from-{m}_to-T1w_mode-image_xfm.txt" for m in MOVING},
        xfm_json={m: d / f"{p}_from-{m}_to-T1w_mode-image_xfm.json" for m in MOVING},
    )


@dataclass
class AnatOutputs:
    """What :func:`preprocess_anat` wrote and measured."""

    participant_id: str
    paths: AnatPaths
    transforms: dict[str, NDArray[np.float64]]  # moving → 4×4 RAS (T1w mm → moving mm)
    errors: dict[str, dict[str, float]]  # moving → registration error (only with ground truth)
    kept_slices: dict[str, Any]
    seconds: dict[str, float]
    brain: dict[str, Any]  # how the brain mask was made (method, volume; extraction quality)

    @property
    def images(self) -> list[Path]:
        """The three co-registered volumes in channel order T1w, T2w, FLAIR."""
        return [self.paths.images[c] for c in CONTRASTS]


def _write_itk_transform(path: Path, transform: Any) -> None:
    import SimpleITK as sitk

    with atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))


def _participant_from(path: str | Path | None) -> str:
    name = Path(path).name if path is not None else ""
    return name.split("_")[0] if name.startswith("sub-") else "sub-unknown"


def preprocess_anat(
    t1: str | Path,
    t2: str | Path,
    flair: str | Path,
    out_dir: str | Path,
    params: AnatParams | None = None,
    *,
    participant_id: str | None = None,
    true_transforms: dict[str, NDArray] | None = None,
    extra_sidecar: dict[str, Any] | None = None,
) -> AnatOutputs:
    """Preprocess one subject's T1w, T2w and FLAIR into ``out_dir`` (a work directory: files go
    to ``out_dir/derivatives/braincam/sub-XX/anat/``).

    ``true_transforms`` (moving contrast → 4×4 RAS, T1w mm → moving mm, e.g. from
    :func:`braincam.imaging.groundtruth.read_true_transform`) adds registration errors. Raises
    InputError naming the subject and file for a missing, unreadable, non-3D or blank input.
    """
    params = params or AnatParams()
    pid = participant_id or _participant_from(t1)
    seconds: dict[str, float] = {}
    imgs = {
        c: load_volume(p, subject=pid, contrast=c)
        for c, p in zip(CONTRASTS, (t1, t2, flair), strict=True)
    }
    data = {c: np.asarray(img.dataobj, dtype=np.float32) for c, img in imgs.items()}
    affines = {c: np.asarray(img.affine, dtype=np.float64) for c, img in imgs.items()}

    t0 = time.perf_counter()
    if params.n4:
        for c in CONTRASTS:
            try:
                data[c], _ = n4_correct(data[c], affines[c], params)
            except InputError as exc:
                raise InputError(str(exc), subject=pid, path=imgs_path(c, t1, t2, flair)) from exc
    seconds["n4"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fixed_mask = foreground_mask(data["T1w"])
    transforms: dict[str, NDArray[np.float64]] = {}
    regs: dict[str, Registration] = {}
    shape = data["T1w"].shape
    for c in MOVING:
        if params.register:
            regs[c] = register_rigid(
                data["T1w"], affines["T1w"], data[c], affines[c], params, fixed_mask
            )
            transforms[c] = regs[c].matrix
        else:
            transforms[c] = np.eye(4)
        data[c] = resample_to(data[c], affines[c], shape, affines["T1w"], transforms[c])
    seconds["registration"] = time.perf_counter() - t0

    affine = affines["T1w"]
    t0 = time.perf_counter()
    head = brain_mask_from(data["T1w"], data["T2w"])
    mask, brain = _brain_mask(data["T1w"], affine, head, params, pid, str(t1))
    seconds["brain_mask"] = time.perf_counter() - t0
    centre = affine[:3, :3] @ np.argwhere(mask).mean(0) + affine[:3, 3]
    errors: dict[str, dict[str, float]] = {}
    if true_transforms:
        idx = np.argwhere(mask)[:: max(1, int(mask.sum()) // 20000)]
        pts = idx @ affine[:3, :3].T + affine[:3, 3]
        for c in MOVING:
            if c in true_transforms:
                errors[c] = registration_error(transforms[c], true_transforms[c], centre, pts)

    t0 = time.perf_counter()
    kernel = None
    if params.kernel_mm is not None:
        zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        kernel = [max(2, round(float(params.kernel_mm / z))) for z in zooms]
    within = mask
    if params.outside_brain == "keep":
        within = mask | head_extent(data["T1w"], data["T2w"])
    for c in CONTRASTS:
        data[c] = equalize(
            data[c],
            within,
            params.equalize,
            nbins=params.equalize_bins,
            clip_limit=params.clip_limit,
            kernel_size=kernel,
        )
    seconds["equalize"] = time.perf_counter() - t0

    kept: dict[str, Any] = {"axis": params.trim_axis, "threshold": params.trim_threshold}
    if params.trim_axis is not None:
        ax = slice_axis(affine, params.trim_axis)
        lo, hi = trim_range(mask, ax, params.trim_threshold)
        kept.update(voxel_axis=ax, first=lo, last=hi, kept=hi - lo + 1, total=int(shape[ax]))
        for c in CONTRASTS:
            data[c], _ = crop_axis(data[c], affine, ax, lo, hi)
        mask, affine = crop_axis(mask, affine, ax, lo, hi)

    paths = anat_derivative_paths(out_dir, pid)
    sources = dict(zip(CONTRASTS, (str(t1), str(t2), str(flair)), strict=True))
    common = {
        "Parameters": params_dict(params),
        "BrainMask": paths.mask.name,
        "BrainMaskMethod": brain,
        "SliceTrimming": kept,
        "Versions": library_versions(),
        **(extra_sidecar or {}),
    }
    write_nifti(paths.mask, mask, affine, np.uint8)
    for c in MOVING:
        if c in regs:
            _write_itk_transform(paths.xfm[c], regs[c].transform)
        else:
            _write_itk_transform(paths.xfm[c], ras_to_sitk_transform(transforms[c]))
        info = {
            "Description": f"Rigid transform {c} → T1w (Mattes MI): MatrixRAS maps T1w world mm "
            f"(RAS) to {c} world mm; resampling {c} through it puts it on the T1w grid. The ITK "
            "file holds the same transform in LPS.",
            "MatrixRAS": np.round(transforms[c], 10).tolist(),
            "Registered": c in regs,
            "RegistrationError": errors.get(c),
        }
        if c in regs:
            info.update(
                Metric=regs[c].metric,
                Iterations=regs[c].iterations,
                StopCondition=regs[c].stop,
                Seconds=round(regs[c].seconds, 3),
            )
        write_json(paths.xfm_json[c], info)
    # T1w last: its sidecar (with the cache key) marks a finished subject.
    for c in (*MOVING, "T1w"):
        write_nifti(paths.images[c], data[c], affine, np.float32)
        write_json(
            paths.sidecars[c],
            {
                "Description": f"{c}: N4-corrected, "
                + ("" if c == "T1w" else "rigidly registered to T1w, ")
                + f"histogram-equalized ({params.equalize}) within the brain, slice-trimmed",
                "Sources": [sources[c]] + ([] if c == "T1w" else [sources["T1w"]]),
                "SpatialReference": "T1w (trimmed grid)",
                "Transform": None if c == "T1w" else paths.xfm_json[c].name,
                **common,
            },
        )
    return AnatOutputs(pid, paths, transforms, errors, kept, seconds, brain)


def _brain_mask(
    t1: NDArray[np.float32],
    affine: NDArray[np.float64],
    head: NDArray[np.bool_],
    params: AnatParams,
    pid: str,
    path: str,
) -> tuple[NDArray[np.bool_], dict[str, Any]]:
    """The brain mask on the T1w grid and a record of how it was made (for sidecar/summary)."""
    import nibabel as nib

    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    if params.brain_mask == "foreground":
        return head, {"method": "otsu-foreground", "volume_ml": round(head.sum() * voxel_ml, 2)}
    from braincam.modalities.anat.brain_extraction import BrainExtractionParams, extract_brain

    be_params = BrainExtractionParams(seed=params.seed, threads=params.threads)
    try:
        result = extract_brain(nib.Nifti1Image(t1, affine), params=be_params, subject=pid)
    except InputError as exc:
        raise InputError(
            f"brain extraction failed: {exc.message}",
            subject=pid,
            path=path,
            value=getattr(exc, "value", None),
        ) from exc
    record = result.to_dict()
    brain = {
        "method": record["method"],
        "volume_ml": round(result.volume_ml, 2),
        "quality": round(float(result.quality), 4),
        "head_volume_ml": round(float(head.sum()) * voxel_ml, 2),
        "matrix_to_mni_ras": record["matrix_ras"],
    }
    return result.mask_array, brain


def imgs_path(contrast: str, t1: Any, t2: Any, flair: Any) -> str:
    """The input path of ``contrast`` (for error messages)."""
    return str(dict(zip(CONTRASTS, (t1, t2, flair), strict=True))[contrast])


def params_dict(params: AnatParams) -> dict[str, Any]:
    d = params.model_dump()
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return d
