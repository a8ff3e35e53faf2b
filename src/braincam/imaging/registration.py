"""Registration with SimpleITK (Mattes mutual information, regular-step gradient descent) and
the measures of a registration's error.

:func:`mattes_mi_registration` sets up what every registration in braincam shares; the rigid
co-registration of structural contrasts (:mod:`braincam.modalities.anat.registration`) and the
affine registration of a subject to MNI (:func:`register_to_mni`) add their own levels, masks
and initialisation to it.
"""

from __future__ import annotations

import math
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from braincam.errors import InputError
from braincam.imaging.resample import resample_isotropic
from braincam.imaging.sitk import nifti_to_sitk
from braincam.imaging.templates import mni_template


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


def register_to_mni(
    moving_img: nib.Nifti1Image,
    *,
    template: nib.Nifti1Image | None = None,
    resolution_mm: float = 4.0,
    kind: str = "affine",
    iterations: int = 200,
    sampling: float = 0.5,
    seed: int = 0,
) -> Any:  # SimpleITK.Transform
    """Register a subject image (FA or T1) to the MNI152 template; returns a SimpleITK transform.

    Mattes mutual information (so FA against a T1 template works), moments initialization, then
    rigid and, for ``kind="affine"``, affine, in two resolution levels. The template is resampled
    to ``resolution_mm`` first (4 mm: seconds, not minutes). The transform maps template (MNI)
    points to subject points, as :func:`apply_to_mni` and ``SimpleITK.Resample`` expect.
    """
    import SimpleITK as sitk

    if kind not in _STAGES:
        raise InputError("kind must be 'rigid' or 'affine'", value=kind)
    if not 0 < sampling <= 1:
        raise InputError("sampling must be in (0, 1]", value=sampling)
    fixed_img = template if template is not None else mni_template(resolution_mm)
    if not math.isclose(abs(np.linalg.norm(fixed_img.affine[:3, 0])), resolution_mm):
        fixed_img = resample_isotropic(fixed_img, resolution_mm)
    fixed = nifti_to_sitk(fixed_img)
    moving = nifti_to_sitk(moving_img)
    if not np.any(sitk.GetArrayViewFromImage(moving)):
        raise InputError("moving_img is empty (all zeros)")

    transform = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    for stage in _STAGES[kind]:  # each stage starts from the previous stage's result
        initial = _STAGE_START[stage](transform)
        transform = _run_registration(
            fixed, moving, initial, iterations, sampling, seed, resolution_mm
        )
    return transform


def _affine_from(rigid: Any) -> Any:  # SimpleITK Euler3DTransform → AffineTransform
    import SimpleITK as sitk

    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    return affine


#: Transform kinds of :func:`register_to_mni`: the stages run in turn, and how each stage's
#: initial transform is made from the previous result.
_STAGES = {"rigid": ("rigid",), "affine": ("rigid", "affine")}
_STAGE_START = {"rigid": lambda previous: previous, "affine": _affine_from}


def sitk_seed(seed: int) -> int:
    """SimpleITK's sampling seed for our ``seed``: shifted by one, because SimpleITK takes 0 as
    "seed from the wall clock" (every seed, 0 included, must repeat)."""
    return int(seed) + 1


def mattes_mi_registration(
    *,
    bins: int,
    sampling: float,
    seed: int,
    learning_rate: float,
    min_step: float,
    iterations: int,
    relaxation: float,
    gradient_tolerance: float,
    shrink_factors: list[int],
    smoothing_sigmas: list[float],
    sigmas_in_mm: bool,
) -> Any:  # SimpleITK.ImageRegistrationMethod
    """A SimpleITK registration: Mattes mutual information on a random sample of the voxels
    (``sampling`` fraction, ``seed``), linear interpolation, regular-step gradient descent with
    scales from physical shift, one level per shrink factor; the caller adds the initial
    transform (and a mask or threads if any) and executes it."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # SimpleITK reads seed 0 as "seed from the wall clock" (sitkWallClock == 0), which made the
    # default seed 0 give a different sample, and a different estimate, on every run.
    reg.SetMetricSamplingPercentage(sampling, sitk_seed(seed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=learning_rate,
        minStep=min_step,
        numberOfIterations=iterations,
        relaxationFactor=relaxation,
        gradientMagnitudeTolerance=gradient_tolerance,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink_factors)
    reg.SetSmoothingSigmasPerLevel(smoothing_sigmas)
    if sigmas_in_mm:
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    else:
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _run_registration(fixed, moving, initial, iterations, sampling, seed, resolution_mm):
    import SimpleITK as sitk

    reg = mattes_mi_registration(
        bins=32,
        sampling=sampling,
        seed=seed,
        learning_rate=resolution_mm,
        min_step=1e-3,
        iterations=iterations,
        relaxation=0.6,
        gradient_tolerance=1e-6,
        shrink_factors=[2, 1],
        smoothing_sigmas=[resolution_mm, 0.0],
        sigmas_in_mm=True,
    )
    reg.SetInitialTransform(initial, inPlace=False)
    out = reg.Execute(fixed, moving)
    # Execute wraps the result in a composite transform; unwrap the single optimized transform.
    if isinstance(out, sitk.CompositeTransform) and out.GetNumberOfTransforms() == 1:
        out = out.GetNthTransform(0)
    return out.Downcast() if hasattr(out, "Downcast") else out


def apply_to_mni(
    img: nib.Nifti1Image,
    transform: Any,  # SimpleITK.Transform
    *,
    reference: nib.Nifti1Image | None = None,
    order: int = 1,
) -> nib.Nifti1Image:
    """Resample a subject image (3D, or 4D = several maps) into MNI space with ``transform``.

    ``reference`` gives the output grid (default: the 2 mm MNI152 template's grid; pass an atlas
    or template image for another one).
    """
    import SimpleITK as sitk

    if order not in (0, 1):
        raise InputError("order must be 0 (nearest) or 1 (linear)", value=order)
    reference = reference if reference is not None else mni_template(2.0)
    ref = nifti_to_sitk(reference)
    interp = sitk.sitkLinear if order == 1 else sitk.sitkNearestNeighbor
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim not in (3, 4):
        raise InputError("img must be 3D or 4D", value=tuple(img.shape))
    vols = [data] if data.ndim == 3 else [data[..., k] for k in range(data.shape[-1])]
    outs = []
    for v in vols:
        moving = nifti_to_sitk(nib.Nifti1Image(v, img.affine))
        res = sitk.Resample(moving, ref, transform, interp, 0.0, sitk.sitkFloat32)
        outs.append(sitk.GetArrayFromImage(res).T)
    out = outs[0] if data.ndim == 3 else np.stack(outs, -1)
    return nib.Nifti1Image(out.astype(np.float32), reference.affine)
