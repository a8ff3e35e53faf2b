"""Pieces of a simulated structural subject: MS-like lesions, ventricle enlargement, the coil's
bias field and the head motion between contrasts (used by :mod:`braincam.synth.anat`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.synth.anatomy import Template, rotation_matrix

if TYPE_CHECKING:
    from braincam.synth.anat import GroupEffect, _AnatCohort


@dataclass(frozen=True)
class Lesion:
    """An ellipsoid in MNI mm: centre, semi-axes and rotation (columns = axes)."""

    centre: NDArray[np.float64]
    radii: NDArray[np.float64]
    rotation: NDArray[np.float64]
    periventricular: bool


def draw_lesions(
    rng: np.random.Generator, cohort: _AnatCohort, effect: GroupEffect
) -> list[Lesion]:
    """Poisson(``effect.lesions``) ellipsoids centred on WM template voxels (jittered)."""
    n = int(rng.poisson(effect.lesions)) if effect.lesions > 0 else 0
    out = []
    half = cohort.template.voxel_size / 2.0
    for _ in range(n):
        peri = bool(rng.random() < effect.periventricular) and len(cohort.periventricular) > 0
        pool = cohort.periventricular if peri else cohort.deep_wm
        centre = pool[rng.integers(len(pool))] + rng.uniform(-half, half, 3)
        radii = rng.uniform(*effect.radius_mm, 3)
        rot = rotation_matrix(rng.uniform(-np.pi, np.pi, 3))
        out.append(Lesion(centre, radii, rot, peri))
    return out


def lesion_fraction(points_mni: NDArray, lesions: list[Lesion], voxel_size: float) -> NDArray:
    """Soft lesion occupancy (0–1) at MNI points: 1 inside, a one-voxel ramp at the edge."""
    pts = np.asarray(points_mni, dtype=np.float64)
    frac = np.zeros(pts.shape[:-1], dtype=np.float32)
    for les in lesions:
        reach = float(les.radii.max()) + voxel_size
        near = np.all(np.abs(pts - les.centre) <= reach, axis=-1)
        if not near.any():
            continue
        local = (pts[near] - les.centre) @ les.rotation  # coordinates along the ellipsoid axes
        r = np.sqrt(((local / les.radii) ** 2).sum(-1))
        ramp = np.clip(0.5 + (1.0 - r) * les.radii.min() / voxel_size, 0.0, 1.0)
        frac[near] = np.maximum(frac[near], ramp)
    return frac


def enlarge_ventricles(
    points_mni: NDArray, centre: NDArray, sigma: NDArray, enlargement: float
) -> NDArray[np.float64]:
    """Where to sample the template so the ventricles look ``1 + enlargement`` times wider.

    ``m' = m − k g(m) (m − c)`` with ``k = e / (1 + e)`` and a Gaussian envelope ``g``; a
    diffeomorphism for ``k < 1`` (the radial derivative stays positive).
    """
    if enlargement <= 0:
        return np.asarray(points_mni, dtype=np.float64)
    d = np.asarray(points_mni, dtype=np.float64) - centre
    g = np.exp(-0.5 * ((d / sigma) ** 2).sum(-1))
    k = enlargement / (1.0 + enlargement)
    return points_mni - (k * g)[..., None] * d


def bias_field(
    rng: np.random.Generator, shape: tuple[int, ...], strength: float
) -> NDArray[np.float32]:
    """Smooth multiplicative field ``exp(p(x))``, p a random quadratic in voxel coordinates
    normalized to [−1, 1], scaled so ``max |p| = log(1 + strength)``."""
    if strength <= 0:
        return np.ones(shape, dtype=np.float32)
    axes = [np.linspace(-1.0, 1.0, n) for n in shape[:3]]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    terms = [x, y, z, x * y, x * z, y * z, x**2, y**2, z**2]
    coef = rng.standard_normal(len(terms)) * np.array([1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    p = sum(c * t for c, t in zip(coef, terms, strict=True))
    p = p - p.mean()
    p *= np.log1p(strength) / max(float(np.abs(p).max()), 1e-9)
    return np.exp(p).astype(np.float32)


def random_rigid(
    rng: np.random.Generator, centre: NDArray, max_deg: float, max_mm: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """A rigid transform about ``centre``: (4×4 matrix, angles in degrees, translation mm)."""
    angles = rng.uniform(-max_deg, max_deg, 3)
    shift = rng.uniform(-max_mm, max_mm, 3)
    rot = rotation_matrix(np.deg2rad(angles))
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = centre + shift - rot @ centre
    return m, angles, shift


def lateral_ventricles(template: Template) -> NDArray[np.bool_]:
    """Lateral ventricles on the template grid: CSF ≥ 0.4, ≥ 12 mm deep inside the brain, in
    the MNI box |x| ≤ 28, y ∈ [−45, 30], z ∈ [−2, 32] mm (≈ 22 ml at 2 mm)."""
    p = template.points()
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    depth = ndi.distance_transform_edt(template.tissue >= 0.5) * template.voxel_size
    box = (np.abs(x) <= 28) & (y >= -45) & (y <= 30) & (z >= -2) & (z <= 32)
    return (template.csf >= 0.4) & (depth >= 12.0) & box
