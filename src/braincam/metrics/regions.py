"""Which brain regions do the heatmaps point at? Step 1: into MNI space (warping, registration).

1. Into MNI space.
   - Synthetic data: the transform is known as a coordinate map
     ``from-MNI152NLin2009cAsym_to-native_coords`` (on the MNI grid, native mm per voxel; see
     docs/architecture.md). :func:`warp_to_mni` samples the native heatmap at those coordinates.
   - Real data: :func:`register_to_mni` registers the subject's FA / T1 to nilearn's bundled MNI152
     template (SimpleITK, Mattes mutual information, rigid then affine, at low resolution), and
     :func:`apply_to_mni` resamples any image of that subject (the heatmap) with the transform.
2. Per map, :func:`~braincam.metrics.region_mass.region_mass` sums the (non-negative) heatmap
   inside each atlas region (:mod:`braincam.metrics.atlas`) and ``lobe_mass`` per lobe.
3. ``rank_regions`` ranks regions per class (and model, method); ``region_differences`` lists
   the regions whose share of the mass differs most between classes.

Steps 2 and 3 live in :mod:`braincam.metrics.region_mass`.
"""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from braincam.errors import InputError
from braincam.metrics.atlas import Atlas, grid_coordinates, sample_at_world

# --------------------------------------------------------------------------------------------
# Coordinate maps (synthetic data)
# --------------------------------------------------------------------------------------------


def _coords_array(coords_img: nib.Nifti1Image) -> np.ndarray:
    data = np.asarray(coords_img.dataobj, dtype=np.float64)
    # Vector NIfTI images are often stored 5D (X, Y, Z, 1, 3).
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim != 4 or data.shape[-1] != 3:
        raise InputError(
            "a coordinate map must be 4D (X, Y, Z, 3) in mm", value=tuple(coords_img.shape)
        )
    return data


def warp_maps(maps: Tensor, native_affine: np.ndarray, coords: Tensor) -> Tensor:
    """Pull maps ``(N, X, Y, Z)`` on a native grid onto the grid of a coordinate map.

    ``coords (X', Y', Z', 3)`` holds, per target voxel, the native mm coordinate of the same point;
    trilinear interpolation, 0 outside the native volume. Returns ``(N, X', Y', Z')``.
    """
    if maps.ndim != 4:
        raise InputError("maps must be (N, X, Y, Z) volumes", value=tuple(maps.shape))
    return sample_at_world(maps, native_affine, coords)


def warp_to_mni(
    native_img: nib.Nifti1Image, coords_img: nib.Nifti1Image, *, order: int = 1
) -> nib.Nifti1Image:
    """Put a native-space image (3D, or 4D = several maps) onto the coordinate map's MNI grid.

    ``coords_img`` is ``sub-XX_from-MNI152NLin2009cAsym_to-native_coords.nii.gz``. ``order`` 1 is
    trilinear, 0 nearest neighbour (for masks and labels).
    """
    if order not in (0, 1):
        raise InputError("order must be 0 (nearest) or 1 (linear)", value=order)
    data = np.asarray(native_img.dataobj, dtype=np.float32)
    if data.ndim not in (3, 4):
        raise InputError("native_img must be 3D or 4D", value=tuple(native_img.shape))
    vols = torch.as_tensor(data if data.ndim == 4 else data[..., None]).permute(3, 0, 1, 2)
    coords = torch.as_tensor(_coords_array(coords_img), dtype=torch.float32)
    mode = "bilinear" if order == 1 else "nearest"
    out = sample_at_world(vols, native_img.affine, coords, mode=mode).permute(1, 2, 3, 0).numpy()
    if data.ndim == 3:
        out = out[..., 0]
    return nib.Nifti1Image(out.astype(np.float32), coords_img.affine)


# --------------------------------------------------------------------------------------------
# Registration to the MNI152 template (real data)
# --------------------------------------------------------------------------------------------


def nifti_to_sitk(img: nib.Nifti1Image):  # -> SimpleITK.Image
    """A 3D NIfTI image as a SimpleITK image with the same world geometry (RAS → LPS)."""
    import SimpleITK as sitk

    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise InputError("only 3D images can be registered/resampled", value=tuple(img.shape))
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.T))  # sitk arrays are (z, y, x)
    lps = np.diag([-1.0, -1.0, 1.0]) @ img.affine[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    out.SetSpacing(spacing.tolist())
    out.SetDirection((lps[:, :3] / spacing).ravel().tolist())
    out.SetOrigin(lps[:, 3].tolist())
    return out


def sitk_to_nifti(image) -> nib.Nifti1Image:  # image: SimpleITK.Image
    """A 3D SimpleITK image as NIfTI (LPS → RAS)."""
    import SimpleITK as sitk

    data = sitk.GetArrayFromImage(image).T.astype(np.float32)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    affine[:3] = np.diag([-1.0, -1.0, 1.0]) @ affine[:3]
    return nib.Nifti1Image(data, affine)


def mni_template(resolution_mm: float = 2.0) -> nib.Nifti1Image:
    """nilearn's bundled MNI152 T1 template (ICBM 2009a), resampled to ``resolution_mm``."""
    from nilearn.datasets import load_mni152_template

    if resolution_mm <= 0:
        raise InputError("resolution_mm must be positive", value=resolution_mm)
    base = load_mni152_template(resolution=1 if resolution_mm < 2 else 2)
    if math.isclose(resolution_mm, abs(base.affine[0, 0])):
        return base
    return resample_isotropic(base, resolution_mm)


def resample_isotropic(img: nib.Nifti1Image, resolution_mm: float) -> nib.Nifti1Image:
    """Resample a 3D image to isotropic voxels (same axes and field of view), smoothing first."""
    import SimpleITK as sitk

    src = nifti_to_sitk(img)
    old = np.asarray(src.GetSpacing())
    size = np.maximum(1, np.round(np.asarray(src.GetSize()) * old / resolution_mm)).astype(int)
    # Gaussian anti-aliasing before subsampling (σ ≈ half the new voxel, in mm).
    sigma = max(0.0, 0.5 * resolution_mm - 0.5 * float(old.min()))
    if sigma > 0:
        src = sitk.SmoothingRecursiveGaussian(src, sigma)
    out = sitk.Resample(
        src,
        size.tolist(),
        sitk.Transform(),
        sitk.sitkLinear,
        src.GetOrigin(),
        [resolution_mm] * 3,
        src.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
    return sitk_to_nifti(out)


def register_to_mni(
    moving_img: nib.Nifti1Image,
    *,
    template: nib.Nifti1Image | None = None,
    resolution_mm: float = 4.0,
    kind: str = "affine",
    iterations: int = 200,
    sampling: float = 0.5,
    seed: int = 0,
):  # -> SimpleITK.Transform
    """Register a subject image (FA or T1) to the MNI152 template; returns a SimpleITK transform.

    Mattes mutual information (so FA against a T1 template works), moments initialization, then
    rigid and, for ``kind="affine"``, affine, in two resolution levels. The template is resampled
    to ``resolution_mm`` first (4 mm: seconds, not minutes). The transform maps template (MNI)
    points to subject points, as :func:`apply_to_mni` and ``SimpleITK.Resample`` expect.
    """
    import SimpleITK as sitk

    if kind not in ("rigid", "affine"):
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

    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    rigid = _run_registration(fixed, moving, initial, iterations, sampling, seed, resolution_mm)
    if kind == "rigid":
        return rigid
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    return _run_registration(fixed, moving, affine, iterations, sampling, seed, resolution_mm)


def _run_registration(fixed, moving, initial, iterations, sampling, seed, resolution_mm):
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=resolution_mm,
        minStep=1e-3,
        numberOfIterations=iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([resolution_mm, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    out = reg.Execute(fixed, moving)
    # Execute wraps the result in a composite transform; unwrap the single optimized transform.
    if isinstance(out, sitk.CompositeTransform) and out.GetNumberOfTransforms() == 1:
        out = out.GetNthTransform(0)
    return out.Downcast() if hasattr(out, "Downcast") else out


def apply_to_mni(
    img: nib.Nifti1Image,
    transform,  # SimpleITK.Transform
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


def transform_points(transform, points_ras: np.ndarray) -> np.ndarray:
    """Apply a SimpleITK transform to RAS mm points ``(P, 3)`` (handles the LPS convention)."""
    flip = np.array([-1.0, -1.0, 1.0])
    pts = np.asarray(points_ras, dtype=np.float64) * flip
    return np.array([transform.TransformPoint(p.tolist()) for p in pts]) * flip


def maps_on_atlas(
    native_img: nib.Nifti1Image, coords_img: nib.Nifti1Image, atlas: Atlas
) -> tuple[np.ndarray, Atlas]:
    """Warp a subject's native heatmap(s) to MNI and put the atlas on the same grid.

    Convenience for synthetic data: returns ``(maps (N, X, Y, Z), atlas on the coordinate map's
    grid)`` ready for :func:`braincam.metrics.region_mass.region_mass`.
    """
    from braincam.metrics.atlas import resample_atlas

    warped = warp_to_mni(native_img, coords_img)
    data = np.asarray(warped.dataobj)
    maps = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
    return maps, resample_atlas(atlas, warped.affine, warped.shape[:3])


def identity_coords(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """A coordinate map that maps a grid onto itself (its voxels' own mm coordinates)."""
    coords = grid_coordinates(img.affine, tuple(img.shape[:3])).numpy()
    return nib.Nifti1Image(coords.astype(np.float32), img.affine)
