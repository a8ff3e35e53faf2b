"""Rigid co-registration of T2w and FLAIR to T1w (Euler 3D, Mattes mutual information)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.imaging.registration import mattes_mi_registration
from braincam.imaging.sitk import sitk_to_ras_matrix, to_sitk

if TYPE_CHECKING:
    from braincam.modalities.anat.preprocess import AnatParams


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

    shrink, sigmas = _levels(fixed.shape, params)
    reg = mattes_mi_registration(
        bins=int(params.histogram_bins),
        sampling=float(params.sampling),
        seed=int(params.seed),
        learning_rate=float(params.learning_rate),
        min_step=float(params.min_step),
        iterations=int(params.iterations),
        relaxation=0.5,
        gradient_tolerance=1e-8,
        shrink_factors=shrink,
        smoothing_sigmas=sigmas,
        sigmas_in_mm=False,
    )
    if fixed_mask is not None and fixed_mask.any():
        # A dilated brain mask: the metric sees the brain's edge but not empty background.
        dil = ndi.binary_dilation(fixed_mask, iterations=2).astype(np.uint8)
        reg.SetMetricFixedMask(sitk.Cast(to_sitk(dil, fixed_affine), sitk.sitkUInt8))
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
