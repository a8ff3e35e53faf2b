"""Structural preprocessing: N4 → rigid co-registration to T1w → equalization → slice trimming.

Per subject (:func:`preprocess_anat`), with SimpleITK and scikit-image:

1. **N4** bias-field correction of each contrast on its own grid (fitted on a shrunken copy
   inside an Otsu foreground mask; the log field is then evaluated at full resolution).
2. **Rigid registration** of T2w and FLAIR to T1w: Euler 3D transform, Mattes mutual
   information, multi-resolution (shrink 4/2/1, smoothing 2/1/0 voxels), regular-step gradient
   descent, random sampling with a fixed seed. Initialised from the scanner coordinates (same-
   session images are already close); ``init="moments"`` or ``"geometry"`` use SimpleITK's
   centred initializer instead. One resampling (linear) onto the T1w grid.
3. **Brain mask**: Otsu foreground of T1w ∪ registered T2w, largest component, holes filled.
4. **Histogram equalization** within the brain, ``global`` (``equalize_hist`` with the mask)
   or ``adaptive`` (CLAHE, ``equalize_adapthist``); values in [0, 1], exactly 0 outside.
5. **Slice trimming** along ``trim_axis``: keep the contiguous range of slices whose brain area
   is at least ``trim_threshold`` × the largest slice's (:func:`trim_range`); the volumes are
   cropped to it, so the slice store's centre slices stay inside the brain.

Outputs (BIDS derivatives, ``WORK/derivatives/braincam/sub-XX/anat/``, names in
:func:`anat_derivative_paths`) are three co-registered volumes on one grid — the slice store's
three channels — a brain mask, the estimated transforms (ITK text + JSON with the RAS matrix) and,
when the true transforms are known (synthetic data), registration errors. Sidecars record the
parameters, input hashes and versions; a re-run skips subjects whose cache key is unchanged
(the batch over subjects, with ingest and caching, is :mod:`braincam.modalities.anat.cohort`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.config.prepare import AnatParams
from braincam.errors import ConfigError, InputError
from braincam.io import atomic_path, write_json
from braincam.modalities.dwi.dti import derivatives_root
from braincam.provenance import library_versions

if TYPE_CHECKING:  # the slice store imports torch: only for annotations here
    pass

CONTRASTS = ("T1w", "T2w", "FLAIR")
MOVING = ("T2w", "FLAIR")
AXIS_OF = {"sagittal": 0, "coronal": 1, "axial": 2}  # world (RAS) axis normal to the slices
CACHE_VERSION = 1
# LPS (ITK) ↔ RAS (NIfTI/nibabel): negate x and y.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


# --------------------------------------------------------------------------- NIfTI ↔ SimpleITK


def to_sitk(data: NDArray, affine: NDArray) -> Any:
    """A SimpleITK image (float32) with the geometry of a NIfTI array + RAS affine.

    SimpleITK's physical space is LPS and its arrays are indexed (z, y, x).
    """
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data).transpose(2, 1, 0)))
    lps = _FLIP @ np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


def from_sitk(img: Any) -> NDArray:
    """The voxel array of a SimpleITK image in NIfTI (x, y, z) order."""
    import SimpleITK as sitk

    return np.ascontiguousarray(sitk.GetArrayFromImage(img).transpose(2, 1, 0))


def sitk_to_ras_matrix(transform: Any) -> NDArray[np.float64]:
    """4×4 RAS matrix of any affine SimpleITK transform (fixed mm → moving mm).

    Read off by transforming four points, so composite and centred transforms work alike.
    """
    base = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], dtype=np.float64)
    out = np.array([transform.TransformPoint([float(v) for v in p]) for p in base])
    lps = np.eye(4)
    lps[:3, 3] = out[0]
    lps[:3, :3] = (out[1:] - out[0]).T / 100.0
    return _FLIP @ lps @ _FLIP


def ras_to_sitk_transform(matrix: NDArray) -> Any:
    """A SimpleITK AffineTransform equivalent to a 4×4 RAS matrix (fixed mm → moving mm)."""
    import SimpleITK as sitk

    lps = _FLIP @ np.asarray(matrix, dtype=np.float64) @ _FLIP
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    tx.SetTranslation([float(v) for v in lps[:3, 3]])
    return tx


# --------------------------------------------------------------------------- masks


def largest_component(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The largest 6-connected component of a boolean volume (empty stays empty)."""
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def foreground_mask(data: NDArray) -> NDArray[np.bool_]:
    """Head/brain foreground: Otsu threshold of the lightly smoothed image, largest component,
    holes filled. Meant for skull-stripped or synthetic images (background near zero)."""
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(np.asarray(data, dtype=np.float32), 1.0)
    if not np.isfinite(smooth).all() or float(smooth.max()) <= float(smooth.min()):
        return np.zeros(smooth.shape, dtype=bool)
    mask = smooth > threshold_otsu(smooth)
    mask = largest_component(mask)
    return ndi.binary_fill_holes(mask)


def brain_mask_from(*images: NDArray) -> NDArray[np.bool_]:
    """Union of the contrasts' foreground masks (dark CSF on T1w is bright on T2w), closed,
    filled, largest component."""
    mask = np.zeros(np.asarray(images[0]).shape, dtype=bool)
    for img in images:
        mask |= foreground_mask(img)
    mask = ndi.binary_closing(mask, iterations=2)
    return ndi.binary_fill_holes(largest_component(mask))


# --------------------------------------------------------------------------- N4


def n4_correct(
    data: NDArray,
    affine: NDArray,
    params: AnatParams,
    mask: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """N4 bias-field correction. Returns ``(corrected, bias_field)`` on the input grid.

    The field is fitted on a copy shrunk by ``params.n4_shrink`` (the field is smooth, so this
    loses nothing and saves most of the time) inside ``mask`` (default: Otsu foreground), and
    evaluated at full resolution with ``GetLogBiasFieldAsImage``.
    """
    import SimpleITK as sitk

    arr = np.asarray(data, dtype=np.float32)
    if mask is None:
        mask = foreground_mask(arr)
    if not mask.any():
        raise InputError("N4: the foreground mask is empty (blank image?)")
    # N4 works on log intensities: keep the fitted region strictly positive.
    mask = mask & (arr > 0)
    image = to_sitk(arr, affine)
    mask_img = sitk.Cast(to_sitk(mask.astype(np.uint8), affine), sitk.sitkUInt8)
    factor = max(
        [f for f in range(1, params.n4_shrink + 1) if min(arr.shape) // f >= 16], default=1
    )
    small = sitk.Shrink(image, [factor] * 3) if factor > 1 else image
    small_mask = sitk.Shrink(mask_img, [factor] * 3) if factor > 1 else mask_img
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in params.n4_iterations])
    n4.SetConvergenceThreshold(float(params.n4_convergence))
    if params.threads:
        n4.SetNumberOfThreads(int(params.threads))
    n4.Execute(small, small_mask)
    log_bias = from_sitk(n4.GetLogBiasFieldAsImage(image)).astype(np.float32)
    bias = np.exp(log_bias)
    return (arr / bias).astype(np.float32), bias


# --------------------------------------------------------------------------- registration


@dataclass
class Registration:
    """A rigid registration result: ``matrix`` maps fixed (T1w) RAS mm → moving RAS mm."""

    matrix: NDArray[np.float64]
    transform: Any  # the SimpleITK transform (LPS), for writing as ITK text
    metric: float
    iterations: int
    stop: str
    seconds: float


def _levels(shape: Sequence[int], params: AnatParams) -> tuple[list[int], list[float]]:
    """Shrink factors (and sigmas) that leave at least 16 voxels along every axis."""
    keep = [
        (f, s)
        for f, s in zip(params.shrink_factors, params.smoothing_sigmas, strict=True)
        if min(shape) // f >= 16 or f == 1
    ]
    if not keep:
        keep = [(1, 0.0)]
    return [int(f) for f, _ in keep], [float(s) for _, s in keep]


def register_rigid(
    fixed: NDArray,
    fixed_affine: NDArray,
    moving: NDArray,
    moving_affine: NDArray,
    params: AnatParams,
    fixed_mask: NDArray[np.bool_] | None = None,
) -> Registration:
    """Rigid (Euler 3D) registration of ``moving`` to ``fixed`` with Mattes mutual information."""
    import SimpleITK as sitk

    start = time.perf_counter()
    f_img = to_sitk(np.asarray(fixed, dtype=np.float32), fixed_affine)
    m_img = to_sitk(np.asarray(moving, dtype=np.float32), moving_affine)
    if params.init == "header":
        initial = sitk.Euler3DTransform()
        centre = np.asarray(f_img.GetSize(), dtype=float) / 2.0 - 0.5
        initial.SetCenter(f_img.TransformContinuousIndexToPhysicalPoint(centre.tolist()))
    else:
        mode = (
            sitk.CenteredTransformInitializerFilter.MOMENTS
            if params.init == "moments"
            else sitk.CenteredTransformInitializerFilter.GEOMETRY
        )
        initial = sitk.CenteredTransformInitializer(f_img, m_img, sitk.Euler3DTransform(), mode)

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(params.histogram_bins))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(params.sampling), int(params.seed))
    if fixed_mask is not None and fixed_mask.any():
        # A dilated brain mask: the metric sees the brain's edge but not empty background.
        dil = ndi.binary_dilation(fixed_mask, iterations=2).astype(np.uint8)
        reg.SetMetricFixedMask(sitk.Cast(to_sitk(dil, fixed_affine), sitk.sitkUInt8))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=float(params.learning_rate),
        minStep=float(params.min_step),
        numberOfIterations=int(params.iterations),
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    shrink, sigmas = _levels(fixed.shape, params)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    if params.threads:
        reg.SetNumberOfThreads(int(params.threads))
    transform = reg.Execute(f_img, m_img)
    return Registration(
        matrix=sitk_to_ras_matrix(transform),
        transform=transform,
        metric=float(reg.GetMetricValue()),
        iterations=int(reg.GetOptimizerIteration()),
        stop=str(reg.GetOptimizerStopConditionDescription()),
        seconds=time.perf_counter() - start,
    )


def resample_to(
    moving: NDArray,
    moving_affine: NDArray,
    fixed_shape: Sequence[int],
    fixed_affine: NDArray,
    matrix: NDArray | None = None,
    *,
    order: int = 1,
) -> NDArray[np.float32]:
    """``moving`` on the fixed grid through ``matrix`` (fixed RAS mm → moving RAS mm; identity
    if None): one linear (or nearest, ``order=0``) interpolation, 0 outside."""
    m = np.eye(4) if matrix is None else np.asarray(matrix, dtype=np.float64)
    vox = np.linalg.inv(moving_affine) @ m @ np.asarray(fixed_affine, dtype=np.float64)
    return ndi.affine_transform(
        np.asarray(moving, dtype=np.float32),
        vox[:3, :3],
        offset=vox[:3, 3],
        output_shape=tuple(int(n) for n in fixed_shape[:3]),
        order=order,
        mode="constant",
        cval=0.0,
    ).astype(np.float32)


def rotation_angle_deg(rotation: NDArray) -> float:
    """Angle (degrees) of a 3×3 rotation matrix."""
    cos = (float(np.trace(rotation)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def registration_error(
    estimated: NDArray, true: NDArray, centre: NDArray, points: NDArray | None = None
) -> dict[str, float]:
    """Rotation error (degrees, angle of R_est R_trueᵀ), translation error (mm: distance between
    where the two transforms send ``centre``) and, if ``points`` (n, 3) are given, the mean and
    maximum displacement difference over them (mm)."""
    est, tru = np.asarray(estimated, float), np.asarray(true, float)
    c = np.append(np.asarray(centre, float), 1.0)
    out = {
        "rotation_deg": rotation_angle_deg(est[:3, :3] @ tru[:3, :3].T),
        "translation_mm": float(np.linalg.norm((est @ c)[:3] - (tru @ c)[:3])),
    }
    if points is not None and len(points):
        p = np.asarray(points, float)
        diff = p @ (est[:3, :3] - tru[:3, :3]).T + (est[:3, 3] - tru[:3, 3])
        d = np.linalg.norm(diff, axis=1)
        out["mean_displacement_mm"] = float(d.mean())
        out["max_displacement_mm"] = float(d.max())
    return out


# --------------------------------------------------------------------------- equalization, trimming


def equalize(
    data: NDArray,
    mask: NDArray[np.bool_],
    method: str = "adaptive",
    *,
    nbins: int = 256,
    clip_limit: float = 0.01,
    kernel_size: Sequence[int] | int | None = None,
) -> NDArray[np.float32]:
    """Histogram equalization within ``mask``: float32 in [0, 1], exactly 0 outside the mask.

    ``global``: the in-brain intensity CDF (``skimage.exposure.equalize_hist`` with ``mask``);
    ``adaptive``: CLAHE (``equalize_adapthist``) after scaling the in-brain 0.5–99.5 percentile
    range to [0, 1]; ``none``: that scaling only.
    """
    from skimage import exposure

    arr = np.asarray(data, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != arr.shape:
        raise InputError("equalize: mask and image shapes differ", value=(mask.shape, arr.shape))
    out = np.zeros(arr.shape, dtype=np.float32)
    if not mask.any():
        return out
    if method == "global":
        eq = exposure.equalize_hist(arr, nbins=nbins, mask=mask)
    elif method in ("adaptive", "none"):
        lo, hi = np.percentile(arr[mask], [0.5, 99.5])
        scaled = np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
        scaled[~mask] = 0.0
        eq = (
            scaled
            if method == "none"
            else exposure.equalize_adapthist(
                scaled, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins
            )
        )
    else:
        raise ConfigError(f"equalize must be global, adaptive or none; got {method!r}")
    out[mask] = np.clip(np.asarray(eq, dtype=np.float32)[mask], 0.0, 1.0)
    return out


def slice_axis(affine: NDArray, axis: str) -> int:
    """Voxel axis of an image whose slices are ``axis`` (axial ↔ the axis closest to S–I)."""
    if axis not in AXIS_OF:
        raise ConfigError(f"axis must be one of {', '.join(AXIS_OF)}; got {axis!r}")
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=float))
    return int(np.flatnonzero(ornt[:, 0] == AXIS_OF[axis])[0])


def trim_range(mask: NDArray[np.bool_], axis: int, threshold: float = 0.10) -> tuple[int, int]:
    """The slice-trimming rule: ``(first, last)`` (inclusive) of the contiguous range of slices
    along voxel ``axis`` from the first to the last slice whose brain area is at least
    ``threshold`` × the largest slice's brain area. Raises InputError for an empty mask."""
    area = np.asarray(mask, dtype=bool).sum(axis=tuple(a for a in range(3) if a != axis))
    if area.max() == 0:
        raise InputError("slice trimming: the brain mask is empty")
    keep = np.flatnonzero(area >= threshold * area.max())
    return int(keep[0]), int(keep[-1])


def crop_axis(
    data: NDArray, affine: NDArray, axis: int, lo: int, hi: int
) -> tuple[NDArray, NDArray]:
    """Keep slices ``lo..hi`` (inclusive) along voxel ``axis``; the affine keeps world positions."""
    index = [slice(None)] * 3
    index[axis] = slice(lo, hi + 1)
    shift = np.eye(4)
    shift[axis, 3] = lo
    return np.asarray(data)[tuple(index)], np.asarray(affine, dtype=np.float64) @ shift


# --------------------------------------------------------------------------- per subject


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
    d = derivatives_root(work_dir) / participant_id / "anat"
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

    @property
    def images(self) -> list[Path]:
        """The three co-registered volumes in channel order T1w, T2w, FLAIR."""
        return [self.paths.images[c] for c in CONTRASTS]


def load_volume(path: str | Path | None, *, subject: str, contrast: str) -> nib.Nifti1Image:
    """Read a 3D contrast; InputError naming the subject, the file and the contrast otherwise."""
    if path is None:
        raise InputError(f"missing {contrast} image", subject=subject)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {contrast} image (file not found)", subject=subject, path=path)
    try:
        img = nib.load(str(path))
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise InputError(
                f"{contrast} must be a 3D image", subject=subject, path=path, value=tuple(img.shape)
            )
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except InputError:
        raise
    except Exception as exc:  # nibabel/zlib/EOF: several types for truncated or bad files
        raise InputError(
            f"cannot read the {contrast} image: {exc}", subject=subject, path=path
        ) from exc
    if not np.isfinite(data).all():
        raise InputError(
            f"{contrast} contains NaN or Inf values",
            subject=subject,
            path=path,
            value=int((~np.isfinite(data)).sum()),
        )
    if float(data.max()) <= float(data.min()):
        raise InputError(f"{contrast} is constant (blank image)", subject=subject, path=path)
    return nib.Nifti1Image(data, img.affine)


def _save(path: Path, data: NDArray, affine: NDArray, dtype: type) -> None:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


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
    :func:`braincam.synth.anat.read_true_transform`) adds registration errors. Raises
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
    mask = brain_mask_from(data["T1w"], data["T2w"])
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
    for c in CONTRASTS:
        data[c] = equalize(
            data[c],
            mask,
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
        "SliceTrimming": kept,
        "Versions": library_versions(),
        **(extra_sidecar or {}),
    }
    _save(paths.mask, mask, affine, np.uint8)
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
        _save(paths.images[c], data[c], affine, np.float32)
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
    return AnatOutputs(pid, paths, transforms, errors, kept, seconds)


def imgs_path(contrast: str, t1: Any, t2: Any, flair: Any) -> str:
    """The input path of ``contrast`` (for error messages)."""
    return str(dict(zip(CONTRASTS, (t1, t2, flair), strict=True))[contrast])


def params_dict(params: AnatParams) -> dict[str, Any]:
    d = params.model_dump()
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return d
