"""Brain extraction for a structural T1w that works offline: MNI152 registration + refinement.

The structural pipeline's Otsu foreground is a *head* mask (skull, scalp, eyes and neck
included). :func:`extract_brain` returns a *brain* mask on the subject's own grid, using only
data that installed packages ship — nilearn's MNI152 (ICBM 2009a, symmetric) skull-stripped T1
template and its brain mask, read from nilearn's package data (``load_mni152_template`` /
``load_mni152_brain_mask`` never fetch) — and SimpleITK, scipy and scikit-image:

1. **Working grid.** The T1w is smoothed and resampled to an isotropic grid of ``work_mm``
   (default 3 mm; never finer than the subject's coarsest voxel); the template and its brain
   mask (dilated by ``metric_margin_mm``, the region the metric looks at) likewise.
2. **Initial pose from the head.** The subject's Otsu head mask gives the vertex (top of the
   head along the header's superior axis) and the centroid of the upper 100 mm of the head;
   these are matched to the template brain's top (minus ``scalp_mm``) and upper centroid. The
   usual moments initialiser is pulled down by the neck and face; this one is not.
3. **Registration** of the subject (fixed) to the template (moving) with Mattes mutual
   information, random sampling with a fixed seed, the metric restricted to the template's
   dilated brain mask: rigid → similarity → affine (12 parameters), each on two levels
   (2×, 1× the working grid), regular-step gradient descent. Optionally (``deformable``) a
   cubic B-spline stage on top (L-BFGS-B, ``bspline_mesh_mm`` control-point spacing).
4. **Carry back.** The template's brain mask is resampled (linear) through the transform onto
   the subject's native grid and thresholded at 0.5.
5. **Refine on the subject** (``refine``): the tissue threshold is the lower of the three-class
   Otsu thresholds of the subject's intensities in the carried mask and within ``band_mm`` + one
   voxel of it (dark CSF, bone, dura | tissue on a T1w; sampling beyond the mask keeps the dark
   class present when the mask falls short of the brain); the brain is the part of "above
   threshold within ``band_mm`` of the mask, or deeper than ``core_mm`` inside it" connected to
   that core, opened by ``open_mm`` (cuts thin bridges to dura and vessels), largest component,
   holes filled. The band is narrower than the CSF + skull gap, so bright scalp fat cannot be
   reached.

Why this method (measured on a real head, Debian ``mricron-data``'s Colin-27 T1 ``ch2.nii.gz``
against its brain-extracted ``ch2bet.nii.gz``; figures and command in BENCHMARKS.md, "Brain
extraction"): the Otsu head mask scores Dice 0.69; the affine-carried template mask alone 0.957;
with the refinement 0.974 (7.5 → 9.1 CPU s at 1 mm; 0.973–0.977 on 2–4 mm grids and with the
head moved 15° / 30 mm in its header). A B-spline stage gave 0.973 after refinement at 7× the
CPU time, so it is an option, off by default. The refinement's threshold is estimated from the
subject, not tuned: estimating it inside the carried mask only scored 0.977 at 1 mm but 0.947 at
4 mm, and made a mask one voxel short of the brain worse (no CSF left in the sample).

The registration's random sampling is seeded (``seed``; note SimpleITK reads a seed of 0 as
"from the wall clock", so ``seed + 1`` is passed): two runs give the same transform to ~1e-6 mm
(multi-threaded sums) and the same mask.

A registration that does not converge (SimpleITK raises, or the warped template correlates with
the subject below ``min_quality``) raises :class:`BrainExtractionError` naming the file and the
value.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.errors import ConfigError, InputError
from braincam.imaging.masks import largest_component
from braincam.imaging.registration import sitk_seed
from braincam.imaging.sitk import from_sitk, sitk_to_ras_matrix, to_sitk
from braincam.modalities.anat.n4 import foreground_mask

STAGES = ("rigid", "similarity", "affine")
#: LPS ↔ RAS (SimpleITK works in LPS).
_FLIP3 = np.array([-1.0, -1.0, 1.0])


class BrainExtractionError(InputError):
    """Brain extraction failed on an input (registration did not converge, empty mask, ...)."""


@dataclass(frozen=True)
class BrainExtractionParams:
    """Every parameter of :func:`extract_brain` (record them with the mask).

    Defaults measured on a real 1 mm head (BENCHMARKS.md, "Brain extraction").
    """

    work_mm: float = 3.0
    histogram_bins: int = 32
    sampling: float = 0.25
    seed: int = 0
    iterations: int = 200
    metric_margin_mm: float = 6.0
    scalp_mm: float = 8.0
    deformable: bool = False
    bspline_mesh_mm: float = 50.0
    bspline_iterations: int = 30
    refine: bool = True
    band_mm: float = 3.0
    core_mm: float = 6.0
    open_mm: float = 1.0
    min_quality: float = 0.5
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("work_mm", 0.5 <= self.work_mm <= 8.0, "in [0.5, 8] mm"),
            ("histogram_bins", 8 <= self.histogram_bins <= 256, "in [8, 256]"),
            ("sampling", 0.0 < self.sampling <= 1.0, "in (0, 1]"),
            ("iterations", self.iterations >= 1, ">= 1"),
            ("metric_margin_mm", 0.0 <= self.metric_margin_mm <= 30.0, "in [0, 30] mm"),
            ("scalp_mm", 0.0 <= self.scalp_mm <= 40.0, "in [0, 40] mm"),
            ("bspline_mesh_mm", self.bspline_mesh_mm >= 10.0, ">= 10 mm"),
            ("bspline_iterations", self.bspline_iterations >= 1, ">= 1"),
            ("band_mm", 0.0 <= self.band_mm <= 20.0, "in [0, 20] mm"),
            ("core_mm", 0.0 < self.core_mm <= 30.0, "in (0, 30] mm"),
            ("open_mm", 0.0 <= self.open_mm <= 10.0, "in [0, 10] mm"),
            ("min_quality", -1.0 <= self.min_quality < 1.0, "in [-1, 1)"),
            ("threads", self.threads is None or self.threads >= 1, ">= 1 or None"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name} must be {expected}; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class StageResult:
    """One registration stage: final metric (Mattes MI, lower is better), iterations, stop."""

    name: str
    metric: float
    iterations: int
    stop: str


@dataclass(frozen=True)
class BrainExtraction:
    """A brain mask on the subject's grid with how it was obtained.

    ``matrix`` maps subject RAS mm → MNI152 RAS mm (the affine part; with ``deformable`` the
    B-spline displacement is in ``transform`` only). ``transform`` is the SimpleITK transform
    (LPS, subject → template) for resampling anything else from template space.
    ``quality`` is the Pearson correlation of the warped template with the subject inside the
    carried brain mask on the working grid (≈ 0.8–0.9 when aligned, near 0 when lost).
    ``threshold`` is the refinement's tissue threshold (subject intensity units; ``nan`` when
    ``refine`` is off).
    """

    mask: nib.Nifti1Image
    matrix: NDArray[np.float64]
    transform: Any
    quality: float
    threshold: float
    volume_ml: float
    seconds: float
    stages: tuple[StageResult, ...]
    params: BrainExtractionParams = field(default_factory=BrainExtractionParams)

    @property
    def mask_array(self) -> NDArray[np.bool_]:
        return np.asarray(self.mask.dataobj) > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (for a sidecar): everything but the mask and the ITK object."""
        return {
            "method": "mni152-affine"
            + ("-bspline" if self.params.deformable else "")
            + ("+refine" if self.params.refine else ""),
            "matrix_ras": [[float(v) for v in row] for row in self.matrix],
            "quality": float(self.quality),
            "threshold": float(self.threshold),
            "volume_ml": float(self.volume_ml),
            "seconds": float(self.seconds),
            "stages": [asdict(s) for s in self.stages],
            "params": asdict(self.params),
        }


# --------------------------------------------------------------------------- helpers


def head_mask(t1: nib.Nifti1Image) -> NDArray[np.bool_]:
    """Today's structural "brain mask" for a T1w alone: the Otsu head foreground (baseline)."""
    return foreground_mask(np.asarray(t1.dataobj, dtype=np.float32))


def _ellipsoid(radii: NDArray) -> NDArray[np.bool_]:
    r = np.maximum(np.floor(radii).astype(int), 0)
    axes = [np.arange(-k, k + 1) / max(float(radii[i]), 1e-6) for i, k in enumerate(r)]
    grid = np.meshgrid(*axes, indexing="ij")
    return sum(g**2 for g in grid) <= 1.0 + 1e-9


def _resample_iso(img: Any, spacing: float, *, mask: bool = False) -> Any:
    """``img`` on an isotropic grid of ``spacing`` mm over the same field of view (smoothed
    first when coarsening, so the samples average rather than alias)."""
    import SimpleITK as sitk

    old = np.asarray(img.GetSpacing(), dtype=float)
    size = [max(round(float(n * s) / spacing), 1) for n, s in zip(img.GetSize(), old, strict=True)]
    sigma = np.sqrt(np.maximum(spacing**2 - old**2, 0.0)) / 2.355
    if sigma.max() > 0:  # a per-axis Gaussian; an axis already this coarse is left alone
        img = sitk.DiscreteGaussian(
            sitk.Cast(img, sitk.sitkFloat32), (sigma**2).tolist(), 32, 0.01, True
        )
    out = sitk.Resample(
        img,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        img.GetOrigin(),
        [float(spacing)] * 3,
        img.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.Cast(out > 0.5, sitk.sitkUInt8) if mask else out


@functools.lru_cache(maxsize=4)
def _template(work_mm: float, margin_mm: float) -> tuple[Any, Any, Any, NDArray, NDArray]:
    """MNI152 template on the working grid, its dilated metric mask there, the 1 mm brain mask
    (SimpleITK, float) and the template brain's points (RAS mm, subsampled) for the initial pose.
    """
    import SimpleITK as sitk
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    tpl = load_mni152_template(resolution=1)
    brain = np.asarray(load_mni152_brain_mask(resolution=1).dataobj) > 0
    tpl_img = to_sitk(np.asarray(tpl.dataobj, dtype=np.float32), tpl.affine)
    moving = _resample_iso(tpl_img, work_mm)
    brain_img = to_sitk(brain.astype(np.float32), tpl.affine)
    on_grid = from_sitk(_resample_iso(brain_img, work_mm)) >= 0.5
    grown = ndi.distance_transform_edt(~on_grid, sampling=work_mm) <= margin_mm
    metric_mask = sitk.Cast(
        to_sitk(grown.astype(np.float32), _sitk_ras_affine(moving)), sitk.sitkUInt8
    )
    ijk = np.argwhere(brain)[::7]
    pts = ijk @ tpl.affine[:3, :3].T + tpl.affine[:3, 3]
    return moving, metric_mask, brain_img, pts, brain


def _world_points(mask: NDArray[np.bool_], affine: NDArray, step: int = 1) -> NDArray:
    ijk = np.argwhere(mask)[::step]
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def _initial_pose(
    head_pts: NDArray, brain_pts: NDArray, scalp_mm: float
) -> tuple[NDArray, NDArray]:
    """Centre and translation (both LPS mm) of a rigid start: subject → template."""
    top = float(np.percentile(head_pts[:, 2], 99.5))
    upper = head_pts[head_pts[:, 2] > top - 100.0]
    btop = float(np.percentile(brain_pts[:, 2], 99.5))
    bupper = brain_pts[brain_pts[:, 2] > btop - (100.0 - scalp_mm)]
    centre_ras = np.array([upper[:, 0].mean(), upper[:, 1].mean(), top - 60.0])
    target_ras = np.array([bupper[:, 0].mean(), bupper[:, 1].mean(), btop + scalp_mm - 60.0])
    return centre_ras * _FLIP3, (target_ras - centre_ras) * _FLIP3


def _levels(size: tuple[int, ...]) -> tuple[list[int], list[float]]:
    return ([2, 1], [1.0, 0.0]) if min(size) // 2 >= 16 else ([1], [0.0])


def _registration(params: BrainExtractionParams, metric_mask: Any, size: tuple[int, ...]) -> Any:
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(params.histogram_bins))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(params.sampling), sitk_seed(params.seed))
    reg.SetMetricMovingMask(metric_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    shrink, sigmas = _levels(size)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    if params.threads:
        reg.SetNumberOfThreads(int(params.threads))
    return reg


def _register(
    fixed: Any, moving: Any, metric_mask: Any, initial: Any, params: BrainExtractionParams
) -> tuple[Any, list[StageResult]]:
    """Rigid → similarity → affine (→ B-spline); returns the final transform and the stages."""
    import SimpleITK as sitk

    stages: list[StageResult] = []
    transform: Any = initial
    for name, rate in zip(STAGES, (2.0, 1.0, 0.5), strict=True):
        if name == "similarity":
            nxt = sitk.Similarity3DTransform()
        elif name == "affine":
            nxt = sitk.AffineTransform(3)
        else:
            nxt = None
        if nxt is not None:
            nxt.SetCenter(transform.GetCenter())
            nxt.SetMatrix(transform.GetMatrix())
            nxt.SetTranslation(transform.GetTranslation())
            transform = nxt
        reg = _registration(params, metric_mask, fixed.GetSize())
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=rate,
            minStep=1e-4,
            numberOfIterations=int(params.iterations),
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-6,
        )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(transform, inPlace=True)
        reg.Execute(fixed, moving)
        stages.append(
            StageResult(
                name,
                float(reg.GetMetricValue()),
                int(reg.GetOptimizerIteration()),
                str(reg.GetOptimizerStopConditionDescription()),
            )
        )
    if not params.deformable:
        return transform, stages
    extent = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
    mesh = [max(round(float(e) / params.bspline_mesh_mm), 1) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    reg = _registration(params, metric_mask, fixed.GetSize())
    reg.SetShrinkFactorsPerLevel([1])
    reg.SetSmoothingSigmasPerLevel([0.0])
    reg.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=int(params.bspline_iterations),
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=4 * int(params.bspline_iterations),
        costFunctionConvergenceFactor=1e7,
    )
    reg.SetMovingInitialTransform(transform)
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(fixed, moving)
    stages.append(
        StageResult(
            "bspline",
            float(reg.GetMetricValue()),
            int(reg.GetOptimizerIteration()),
            str(reg.GetOptimizerStopConditionDescription()),
        )
    )
    return sitk.CompositeTransform([transform, bspline]), stages


def _quality(fixed: Any, moving: Any, metric_mask: Any, transform: Any) -> float:
    """Correlation of the warped template with the subject inside the carried (dilated) mask."""
    import SimpleITK as sitk

    warped = from_sitk(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0))
    inside = from_sitk(sitk.Resample(metric_mask, fixed, transform, sitk.sitkNearestNeighbor, 0))
    f = from_sitk(fixed)[inside > 0]
    w = warped[inside > 0]
    if f.size < 10 or f.std() == 0 or w.std() == 0:
        return 0.0
    return float(np.corrcoef(f, w)[0, 1])


def _tissue_threshold(values: NDArray) -> float:
    """Dark (CSF, dura, bone) | tissue threshold of a T1w's intensities around a brain mask:
    the lower of the three-class Otsu thresholds (``nan`` with fewer than three grey levels)."""
    from skimage.filters import threshold_multiotsu

    try:
        return float(threshold_multiotsu(np.asarray(values), classes=3)[0])
    except ValueError:
        return float("nan")


def refine_mask(
    data: NDArray,
    mask: NDArray[np.bool_],
    zooms: tuple[float, ...],
    params: BrainExtractionParams,
    *,
    sample_margin_mm: float | None = None,
) -> tuple[NDArray[np.bool_], float]:
    """Refine a carried template mask on the subject's intensities (step 5 of the module doc).

    Returns the refined mask and the tissue threshold used.
    """
    zooms = tuple(float(z) for z in zooms[:3])
    pad = int(np.ceil((params.band_mm + 2.0 * max(zooms)) / min(zooms))) + 2
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    m = mask[box]
    smooth = ndi.gaussian_filter(np.asarray(data[box], dtype=np.float32), 0.5)
    outside = ndi.distance_transform_edt(~m, sampling=zooms)
    reach = outside <= params.band_mm
    # Sample the intensities over all the refinement can reach plus a voxel, so the dark class
    # (CSF, bone) is there even when the carried mask falls short of the brain's edge.
    margin = params.band_mm + max(zooms) if sample_margin_mm is None else sample_margin_mm
    threshold = _tissue_threshold(smooth[outside <= margin])
    if not np.isfinite(threshold):
        return mask.copy(), threshold
    depth = ndi.distance_transform_edt(m, sampling=zooms)
    core = depth > params.core_mm
    if not core.any():
        core = depth >= np.percentile(depth[m], 75)
    candidate = (reach & (smooth > threshold)) | core
    labels, _ = ndi.label(candidate)
    keep = np.unique(labels[core])
    brain = np.isin(labels, keep[keep > 0])
    radii = np.array([params.open_mm / z for z in zooms])
    if (np.floor(radii) >= 1).any():
        opened = ndi.binary_opening(brain, _ellipsoid(radii))
        brain = opened if opened.any() else brain
    brain = ndi.binary_fill_holes(largest_component(brain))
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = brain
    return out, threshold


def _validate(t1: nib.Nifti1Image, path: str | None, subject: str | None) -> NDArray[np.float32]:
    if not isinstance(t1, nib.spatialimages.SpatialImage):
        raise InputError(
            "extract_brain expects a NIfTI image (nibabel)",
            subject=subject,
            value=type(t1).__name__,
        )
    shape = t1.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError("a T1w must be a 3-D volume", subject=subject, path=path, value=t1.shape)
    if min(shape) < 8:
        raise InputError(
            "the T1w is too small to register", subject=subject, path=path, value=shape
        )
    data = np.asarray(t1.dataobj, dtype=np.float32).reshape(shape)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InputError("the T1w has non-finite voxels", subject=subject, path=path, value=bad)
    if float(data.max()) <= float(data.min()):
        raise InputError("the T1w is constant", subject=subject, path=path, value=float(data.max()))
    if not np.isfinite(np.linalg.cond(np.asarray(t1.affine)[:3, :3])):
        raise InputError("the T1w's affine is singular", subject=subject, path=path)
    return data


def extract_brain(
    t1: nib.Nifti1Image,
    *,
    params: BrainExtractionParams | None = None,
    subject: str | None = None,
) -> BrainExtraction:
    """Brain mask of a T1w (skull, scalp, eyes and neck excluded) on the T1w's own grid.

    MNI152 template registration (rigid → similarity → affine, optionally B-spline), the
    template's brain mask carried back, refined on the subject's intensities; see the module
    docstring. Deterministic for fixed ``params`` (seeded sampling).

    Raises :class:`~braincam.errors.InputError` for a bad image (not 3-D, non-finite, constant)
    and :class:`BrainExtractionError` when the registration fails or does not converge (the
    warped template's correlation with the subject is below ``params.min_quality``), naming the
    file (``t1.get_filename()``), the subject and the value.
    """
    import SimpleITK as sitk

    start = time.perf_counter()
    params = params or BrainExtractionParams()
    fname = t1.get_filename() if isinstance(t1, nib.spatialimages.SpatialImage) else None
    path = str(Path(fname)) if fname else None
    data = _validate(t1, path, subject)
    affine = np.asarray(t1.affine, dtype=np.float64)
    zooms = tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    work = max(float(params.work_mm), max(zooms))

    positive = data[data > 0]
    scale = float(np.percentile(positive, 99)) if positive.size else 1.0
    subj = to_sitk(data / (scale or 1.0), affine)
    fixed = _resample_iso(subj, work)
    moving, metric_mask, brain_img, brain_pts, _ = _template(work, float(params.metric_margin_mm))

    f_arr = from_sitk(fixed)
    head = foreground_mask(f_arr)
    if head.sum() < 64:
        raise BrainExtractionError(
            "no head found in the T1w (Otsu foreground too small)",
            subject=subject,
            path=path,
            value=int(head.sum()),
        )
    f_affine = _sitk_ras_affine(fixed)
    centre, shift = _initial_pose(
        _world_points(head, f_affine, max(1, int(head.sum()) // 50000)),
        brain_pts,
        params.scalp_mm,
    )
    initial = sitk.Euler3DTransform()
    initial.SetCenter(centre.tolist())
    initial.SetTranslation(shift.tolist())
    try:
        transform, stages = _register(fixed, moving, metric_mask, initial, params)
    except RuntimeError as exc:  # SimpleITK: e.g. all samples mapped outside the template
        raise BrainExtractionError(
            f"registration of the T1w to MNI152 failed ({str(exc).strip().splitlines()[-1]})",
            subject=subject,
            path=path,
        ) from exc
    quality = _quality(fixed, moving, metric_mask, transform)
    if not np.isfinite(quality) or quality < params.min_quality:
        raise BrainExtractionError(
            "registration of the T1w to MNI152 did not converge: the warped template "
            f"correlates with the subject at {quality:.3f} < min_quality {params.min_quality} "
            "(check the header orientation, or that this is a T1w head/brain scan)",
            subject=subject,
            path=path,
            value=round(float(quality), 4),
        )

    # Carry the 1 mm template mask onto the subject's grid (smoothed for coarse subjects).
    reference = to_sitk(np.zeros(data.shape, dtype=np.float32), affine)
    src = brain_img
    sigma = np.sqrt(max(max(zooms) ** 2 - 1.0, 0.0)) / 2.355
    if sigma > 0:
        src = sitk.SmoothingRecursiveGaussian(brain_img, [float(sigma)] * 3)
    prob = from_sitk(sitk.Resample(src, reference, transform, sitk.sitkLinear, 0.0))
    mask = prob >= 0.5
    if not mask.any():
        raise BrainExtractionError(
            "the carried template brain mask is empty on the T1w's grid",
            subject=subject,
            path=path,
            value=shift.tolist(),
        )
    threshold = float("nan")
    if params.refine:
        mask, threshold = refine_mask(data, mask, zooms, params)
    else:
        mask = ndi.binary_fill_holes(largest_component(mask))
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    matrix = _affine_part_ras(transform)
    return BrainExtraction(
        mask=nib.Nifti1Image(mask.astype(np.uint8), affine),
        matrix=matrix,
        transform=transform,
        quality=quality,
        threshold=threshold,
        volume_ml=float(mask.sum()) * voxel_ml,
        seconds=time.perf_counter() - start,
        stages=tuple(stages),
        params=params,
    )


def _sitk_ras_affine(img: Any) -> NDArray[np.float64]:
    """4×4 RAS voxel → mm affine of a SimpleITK image (indices in NIfTI x, y, z order)."""
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(img.GetSpacing(), dtype=float)
    lps[:3, 3] = img.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _affine_part_ras(transform: Any) -> NDArray[np.float64]:
    """RAS matrix of the affine part of a (possibly composite) transform."""
    import SimpleITK as sitk

    if isinstance(transform, sitk.CompositeTransform):
        transform = transform.GetNthTransform(0)
    return sitk_to_ras_matrix(transform)
