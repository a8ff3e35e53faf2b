"""Template anatomy for synthetic subjects: MNI152 maps, named regions, random smooth warps.

Everything here works in world millimetres so that any generator (diffusion here, structural
T1/T2/FLAIR later) can pull template values onto a subject's own voxel grid:

- :func:`load_template` — nilearn's bundled MNI152 2009 T1, grey- and white-matter maps (no
  download), a derived CSF map, resampled to a chosen voxel size.
- :func:`region_mask` — named regions defined in MNI space (``frontal-wm``, ``corpus-callosum``,
  ``sphere:X,Y,Z,R``...) or a NIfTI mask in MNI space at any resolution.
- :class:`SubjectTransform` / :func:`random_subject_transform` — a subject's anatomy as the
  template scaled, rotated, shifted and smoothly warped; maps points both ways (the inverse warp
  by fixed-point iteration).
- :func:`white_matter_orientation` — a smooth, roughly anatomical fibre-orientation field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.errors import ConfigError, InputError
from braincam.imaging.resample import grid_points
from braincam.imaging.templates import TEMPLATE_SPACE, mni152_arrays

__all__ = ["TEMPLATE_SPACE", "mni152_arrays"]  # re-exported: part of the generators' API


#: Named regions, all defined in MNI mm on the template (see :func:`region_mask`).
REGIONS: dict[str, str] = {
    "frontal-wm": (
        "frontal white matter incl. the genu of the corpus callosum: WM probability >= 0.5, "
        "MNI y in [-10, 40] mm, z in [0, 36] mm, |x| <= 36 mm (default; seen by the default "
        "centre slices of all three axes)"
    ),
    "corpus-callosum": (
        "midline corpus callosum: WM probability >= 0.5, |x| <= 12 mm, y in [-42, 35] mm, "
        "z in [0, 32] mm"
    ),
    "internal-capsule": (
        "internal capsule / lower corona radiata, both sides: WM probability >= 0.5, "
        "12 <= |x| <= 28 mm, y in [-30, 20] mm, z in [-8, 22] mm"
    ),
    "occipital-wm": (
        "occipital white matter: WM probability >= 0.5, y <= -65 mm (mostly outside the "
        "default coronal centre slices: a deliberately hard case)"
    ),
    "sphere:X,Y,Z,R": "a ball of radius R mm centred at MNI (X, Y, Z) mm, inside the brain",
    "random[:deep|:cortical]": (
        "a white-matter ball of radius 10–16 mm placed by the cohort's seed: centre in white "
        "matter outside every named region, within 12 mm of the brain centre's axial plane (the "
        "default centre slices see it); deep: centre >= 6 mm inside WM, cortical: within 3 mm "
        "of grey matter; the mask is the ball's WM (probability >= 0.5)"
    ),
}

#: Random spheres: radius range (mm), how far from the centre axial plane the centre may lie,
#: and the depth rules of the two placements (mm of WM between the centre and non-WM).
RANDOM_RADIUS_MM = (10.0, 16.0)
RANDOM_BAND_MM = 12.0
RANDOM_DEEP_MM = 6.0
RANDOM_CORTICAL_MM = 3.0
RANDOM_PLACEMENTS = ("any", "deep", "cortical")
#: Largest share of a random sphere's voxels that may fall in a named region.
RANDOM_MAX_NAMED_SHARE = 0.25

_FloatArray = NDArray[np.floating]


@dataclass(frozen=True)
class Template:
    """MNI152 maps on one voxel grid (float32 arrays in [0, 1], affine voxel → MNI mm)."""

    affine: NDArray[np.float64]
    t1: NDArray[np.float32]
    gm: NDArray[np.float32]
    wm: NDArray[np.float32]
    csf: NDArray[np.float32]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape."""
        return tuple(int(n) for n in self.gm.shape)  # type: ignore[return-value]

    @property
    def voxel_size(self) -> float:
        """Isotropic voxel size in mm."""
        return float(abs(self.affine[0, 0]))

    @property
    def tissue(self) -> NDArray[np.float32]:
        """Total tissue fraction GM + WM + CSF (≈ 1 inside the brain, 0 outside)."""
        return np.clip(self.gm + self.wm + self.csf, 0.0, 1.0)

    def points(self) -> NDArray[np.float64]:
        """World (MNI mm) coordinates of every voxel centre, shape ``(*shape, 3)``."""
        return grid_coordinates(self.shape, self.affine)

    def sample(self, name: str, points_mm: _FloatArray, *, order: int = 1) -> NDArray[np.float32]:
        """Values of map ``name`` (t1, gm, wm, csf, tissue) at MNI points (linear by default)."""
        data = self.tissue if name == "tissue" else getattr(self, name)
        return sample_volume(data, self.affine, points_mm, order=order)

    def brain_bbox_mm(self, threshold: float = 0.2) -> tuple[NDArray[np.float64], NDArray]:
        """Lowest and highest MNI corner (mm) of the voxels with GM + WM above ``threshold``."""
        idx = np.argwhere((self.gm + self.wm) > threshold)
        lo = self.affine[:3, :3] @ idx.min(0) + self.affine[:3, 3]
        hi = self.affine[:3, :3] @ idx.max(0) + self.affine[:3, 3]
        return lo, hi

    def brain_center_mm(self) -> NDArray[np.float64]:
        """Centre of the brain's bounding box in MNI mm (the centre synthetic volumes use)."""
        lo, hi = self.brain_bbox_mm()
        return (lo + hi) / 2.0


def grid_coordinates(shape: tuple[int, ...], affine: NDArray) -> NDArray[np.float64]:
    """World coordinates of every voxel centre of a grid, shape ``(*shape, 3)``
    (:func:`braincam.imaging.resample.grid_points` with synth's argument order)."""
    return grid_points(affine, shape)


def transform_points(matrix: NDArray, points: _FloatArray) -> NDArray[np.float64]:
    """Apply a 4×4 affine (or a 3×3 linear map) to points ``(..., 3)``.

    Written as three fused multiply-adds per output axis: for millions of points this is
    several times faster than ``points @ matrix.T`` (a matmul with an inner size of 3).
    """
    m = np.asarray(matrix, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    out = np.empty(pts.shape, dtype=np.float64)
    x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
    for r in range(3):
        out[..., r] = m[r, 0] * x + m[r, 1] * y + m[r, 2] * z
        if m.shape[1] == 4:
            out[..., r] += m[r, 3]
    return out


def voxel_indices(affine: NDArray, points_mm: _FloatArray) -> NDArray[np.float64]:
    """Fractional voxel indices ``(3, N)`` of world points (flattened) on a grid's affine."""
    flat = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    return np.ascontiguousarray(transform_points(np.linalg.inv(affine), flat).T)


def sample_volume(
    data: NDArray,
    affine: NDArray,
    points_mm: _FloatArray,
    *,
    order: int = 1,
    cval: float = 0.0,
    mode: str = "constant",
    indices: NDArray[np.float64] | None = None,
) -> NDArray[np.float32]:
    """Pull-sample a 3D volume at world points (any leading shape, last axis = xyz mm).

    Pass ``indices`` from :func:`voxel_indices` to sample several volumes of one grid at the
    same points without recomputing them.
    """
    points = np.asarray(points_mm)
    ijk = voxel_indices(affine, points) if indices is None else indices
    values = ndi.map_coordinates(
        np.asarray(data, dtype=np.float32), ijk, order=order, mode=mode, cval=cval
    )
    return values.reshape(points.shape[:-1]).astype(np.float32, copy=False)


def load_template(voxel_size: float = 1.0, *, margin_mm: float = 12.0) -> Template:
    """MNI152 T1/GM/WM (+ derived CSF) cropped to the brain and resampled to ``voxel_size`` mm.

    CSF is what the filled, slightly dilated GM+WM envelope holds besides GM and WM (ventricles,
    sulci, a thin outer rim). Downsampling is anti-aliased with a Gaussian matched to the voxel
    size, so partial-volume fractions stay fractions.
    """
    if not np.isfinite(voxel_size) or not 0.5 <= voxel_size <= 8.0:
        raise ConfigError(f"voxel_size must be between 0.5 and 8 mm; got {voxel_size!r}")
    maps, affine = mni152_arrays()
    gm, wm, t1 = maps["gm"], maps["wm"], maps["t1"]

    # Work on the brain's bounding box (plus room for the margin): the morphology below is the
    # slow part and the full 1 mm field of view is mostly air.
    pad = int(np.ceil(margin_mm)) + 4
    idx = np.argwhere((gm + wm) > 0.2)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, gm.shape)
    hi = hi - (hi - lo) % 2  # even sizes, for the 2 mm morphology below
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    gm, wm, t1 = gm[box], wm[box], t1[box]
    affine = affine.copy()
    affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]

    # Brain envelope (closed, ventricles filled, one voxel wider) at 2 mm: 8× fewer voxels for
    # the morphology, and CSF only needs it to within a millimetre after the smoothing below.
    nx, ny, nz = gm.shape
    coarse = (gm + wm).reshape(nx // 2, 2, ny // 2, 2, nz // 2, 2).mean(axis=(1, 3, 5))
    envelope = ndi.binary_closing(coarse > 0.2, iterations=2)
    envelope = ndi.binary_dilation(ndi.binary_fill_holes(envelope), iterations=1)
    fine = envelope.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    soft = ndi.gaussian_filter(fine.astype(np.float32), 1.0, truncate=3.0)
    csf = np.clip(soft - gm - wm, 0.0, 1.0).astype(np.float32)
    envelope = soft > 0.5

    # Output grid: the brain envelope plus margin, at the requested voxel size.
    idx = np.argwhere(envelope)
    lo_mm = affine[:3, :3] @ idx.min(0) + affine[:3, 3] - margin_mm
    hi_mm = affine[:3, :3] @ idx.max(0) + affine[:3, 3] + margin_mm
    shape = tuple(int(n) for n in np.ceil((hi_mm - lo_mm) / voxel_size).astype(int) + 1)
    out_affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    out_affine[:3, 3] = lo_mm
    points = grid_coordinates(shape, out_affine)

    sigma_vox = np.sqrt(max(voxel_size**2 - 1.0, 0.0)) / 2.355  # source voxels are 1 mm

    def resample(vol: NDArray[np.float32]) -> NDArray[np.float32]:
        if sigma_vox > 0.05:
            vol = ndi.gaussian_filter(vol, sigma_vox, truncate=3.0)
        return np.clip(sample_volume(vol, affine, points), 0.0, 1.0)

    return Template(
        affine=out_affine,
        t1=resample(t1),
        gm=resample(gm),
        wm=resample(wm),
        csf=resample(csf),
    )


def _window(x: _FloatArray, lo: float, hi: float, soft: float = 4.0) -> _FloatArray:
    """Smooth box: ≈1 for lo < x < hi, falling to 0 over ``soft`` mm at each edge."""
    return 1.0 / (1.0 + np.exp(-(x - lo) / soft)) / (1.0 + np.exp(-(hi - x) / soft))


def tract_weights(points_mm: _FloatArray) -> tuple[_FloatArray, _FloatArray]:
    """Smooth weights (0–1) of the commissural (corpus callosum) and projection (capsule) zones."""
    x, y, z = points_mm[..., 0], points_mm[..., 1], points_mm[..., 2]
    callosal = np.exp(-((x / 16.0) ** 2)) * _window(y, -42, 35) * _window(z, 0, 32)
    projection = _window(np.abs(x), 12, 34) * _window(y, -34, 18) * _window(z, -20, 48)
    return callosal, projection


def white_matter_orientation(points_mm: _FloatArray) -> NDArray[np.float64]:
    """Unit principal fibre direction (MNI frame) at MNI points: a smooth, rough anatomy.

    Left–right near the midline corpus callosum, superior–inferior in the internal capsule and
    corona radiata, anterior–posterior elsewhere (long association tracts); the three are blended
    with smooth weights, so directions turn gradually between zones.
    """
    callosal, projection = tract_weights(points_mm)
    association = 0.35 * np.ones_like(callosal)
    vec = np.stack([callosal, association, projection], axis=-1)
    return vec / np.linalg.norm(vec, axis=-1, keepdims=True)


def _parse_sphere(spec: str) -> tuple[NDArray[np.float64], float]:
    try:
        values = [float(v) for v in spec.split(":", 1)[1].split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or values[3] <= 0 or not np.all(np.isfinite(values)):
        raise InputError("a sphere region is 'sphere:X,Y,Z,R' (MNI mm, R > 0)", value=spec)
    return np.asarray(values[:3]), values[3]


def _named_region(name: str, template: Template) -> NDArray[np.bool_]:
    p = template.points()
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    wm = template.wm >= 0.5
    if name == "frontal-wm":
        return wm & (y >= -10) & (y <= 40) & (z >= 0) & (z <= 36) & (np.abs(x) <= 36)
    if name == "corpus-callosum":
        return wm & (np.abs(x) <= 12) & (y >= -42) & (y <= 35) & (z >= 0) & (z <= 32)
    if name == "internal-capsule":
        ax = np.abs(x)
        return wm & (ax >= 12) & (ax <= 28) & (y >= -30) & (y <= 20) & (z >= -8) & (z <= 22)
    if name == "occipital-wm":
        return wm & (y <= -65)
    raise InputError(
        f"unknown effect region; choose one of {', '.join(REGIONS)} or a NIfTI mask path",
        value=name,
    )


@dataclass(frozen=True)
class RandomSphere:
    """A seeded random white-matter sphere: MNI centre (mm), radius (mm) and placement."""

    centre: NDArray[np.float64]
    radius: float
    placement: str

    def to_dict(self) -> dict[str, object]:
        """JSON-able record (written to the ground truth's ``synth_config.json``)."""
        return {
            "centre_mm": [round(float(c), 3) for c in self.centre],
            "radius_mm": round(self.radius, 3),
            "placement": self.placement,
        }


def _random_placement(spec: str) -> str | None:
    """``random`` → ``any``, ``random:deep`` → ``deep``...; ``None`` if not a random spec."""
    if spec != "random" and not spec.startswith("random:"):
        return None
    placement = spec.split(":", 1)[1] if ":" in spec else "any"
    if placement not in RANDOM_PLACEMENTS:
        raise InputError(
            "a random region is 'random', 'random:deep' or 'random:cortical'", value=spec
        )
    return placement


def _named_union(template: Template) -> NDArray[np.bool_]:
    out = np.zeros(template.shape, dtype=bool)
    for name in REGIONS:
        if name.startswith(("sphere", "random")):
            continue
        out |= _named_region(name, template)
    return out


def draw_random_sphere(template: Template, seed: int, placement: str = "any") -> RandomSphere:
    """Draw a white-matter sphere from ``seed`` (see ``REGIONS['random[:deep|:cortical]']``).

    The draw has its own random stream (seed, a fixed tag), so choosing a random region does
    not change any subject's draws. Centres are tried in random order until the sphere's
    white matter lies mostly (≥ 75 %) outside the named regions.
    """
    if placement not in RANDOM_PLACEMENTS:
        raise InputError(f"placement must be one of {RANDOM_PLACEMENTS}", value=placement)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED5])
    wm = template.wm >= 0.5
    vox = template.voxel_size
    depth = ndi.distance_transform_edt(wm) * vox  # mm from the centre to the nearest non-WM
    points = template.points()
    band = np.abs(points[..., 2] - template.brain_center_mm()[2]) <= RANDOM_BAND_MM
    named = _named_union(template)
    ok = wm & band & ~named
    if placement == "deep":
        ok &= depth >= RANDOM_DEEP_MM
    elif placement == "cortical":
        # At least one voxel: on a coarse grid the WM edge is a voxel deep.
        reach = max(RANDOM_CORTICAL_MM, vox)
        near_gm = ndi.distance_transform_edt(template.gm < 0.5) * vox <= reach
        ok &= near_gm & (depth <= reach)
    candidates = np.argwhere(ok)
    if len(candidates) == 0:
        raise InputError("no white-matter voxel fits a random sphere", value=placement)
    radius = float(rng.uniform(*RANDOM_RADIUS_MM))
    for i in rng.permutation(len(candidates))[:2000]:
        centre = points[tuple(candidates[i])]
        ball = _ball(template, centre, radius, points) & wm
        if ball.any() and (ball & named).sum() <= RANDOM_MAX_NAMED_SHARE * ball.sum():
            return RandomSphere(centre.astype(np.float64), radius, placement)
    raise InputError("no random sphere stays out of the named regions", value=placement)


def _ball(
    template: Template, centre: NDArray, radius: float, points: NDArray | None = None
) -> NDArray[np.bool_]:
    """Voxels of the template grid within ``radius`` mm of ``centre`` (only its box is
    measured; pass ``points = template.points()`` when calling many times)."""
    inv = np.linalg.inv(template.affine)
    corners = transform_points(inv, np.stack([centre - radius, centre + radius]))
    lo = np.clip(np.floor(corners.min(0)).astype(int), 0, template.shape)
    hi = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, template.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sub = (template.points() if points is None else points)[box]
    out = np.zeros(template.shape, dtype=bool)
    out[box] = np.linalg.norm(sub - centre, axis=-1) <= radius
    return out


def random_sphere_for(spec: str | Path, template: Template, seed: int) -> RandomSphere | None:
    """The sphere a ``random[:…]`` region spec draws for ``seed``; ``None`` for other specs."""
    placement = _random_placement(str(spec)) if not isinstance(spec, Path) else None
    return None if placement is None else draw_random_sphere(template, seed, placement)


def sphere_mask(sphere: RandomSphere, template: Template) -> NDArray[np.bool_]:
    """A random sphere's region: the white matter (probability >= 0.5) inside the ball."""
    return _ball(template, sphere.centre, sphere.radius) & (template.wm >= 0.5)


def resample_mask_to_template(path: str | Path, template: Template) -> NDArray[np.bool_]:
    """A NIfTI mask in MNI space (any resolution) on the template grid, nearest neighbour."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(f"cannot read the region mask: {exc}", path=path) from exc
    data = np.squeeze(data)
    if data.ndim != 3:
        raise InputError("a region mask must be a 3D image", path=path, value=data.shape)
    if not np.all(np.isfinite(data)):
        raise InputError("the region mask contains NaN or Inf", path=path)
    inv = np.linalg.inv(np.asarray(img.affine, dtype=np.float64))
    ijk = np.rint(transform_points(inv, template.points())).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(data.shape)), axis=-1)
    mask = np.zeros(template.shape, dtype=bool)
    hit = ijk[inside]
    mask[inside] = data[hit[:, 0], hit[:, 1], hit[:, 2]] != 0
    return mask


def region_mask(spec: str | Path, template: Template, *, seed: int = 0) -> NDArray[np.bool_]:
    """Boolean mask on the template grid for a region name, ``sphere:X,Y,Z,R``,
    ``random[:deep|:cortical]`` (drawn from ``seed``) or a NIfTI path.

    A string is read as a file path when it names an existing file or ends in ``.nii``/``.nii.gz``.
    Raises :class:`InputError` for an unknown name (listing the valid ones), an unreadable file
    or a region that is empty on the template grid.
    """
    text = str(spec)
    if isinstance(spec, Path) or text.endswith((".nii", ".nii.gz")) or Path(text).is_file():
        if not Path(text).is_file():
            raise InputError("region mask file not found", path=text)
        mask = resample_mask_to_template(text, template)
    elif text.startswith("sphere:"):
        centre, radius = _parse_sphere(text)
        dist = np.linalg.norm(template.points() - centre, axis=-1)
        mask = (dist <= radius) & (template.tissue >= 0.5)
    elif (sphere := random_sphere_for(text, template, seed)) is not None:
        mask = sphere_mask(sphere, template)
    else:
        mask = _named_region(text, template)
    if not mask.any():
        raise InputError(
            "the effect region is empty on the template grid (outside the brain?)", value=text
        )
    return mask


@dataclass(frozen=True)
class SubjectTransform:
    """A subject's anatomy relative to the template.

    native → MNI: ``m = w(L⁻¹ (p − t))`` with ``w(q) = q + u(q)`` a smooth displacement field
    (``u`` sampled linearly from ``warp_field`` on the grid ``warp_affine``), ``L`` = scale ×
    rotation. MNI → native inverts ``w`` by fixed-point iteration ``q ← m − u(q)``, which
    converges because ``u`` is smooth (its gradient is well below 1).
    """

    linear: NDArray[np.float64]  # L: MNI-like → native (3×3)
    translation: NDArray[np.float64]  # t (mm)
    warp_field: NDArray[np.float32]  # (3, X, Y, Z) displacement in mm, one array per axis
    warp_affine: NDArray[np.float64]

    def warp(self, points_mm: _FloatArray) -> NDArray[np.float64]:
        """Displacement ``u(q)`` at points (mm), linear interpolation, edge values outside."""
        points = np.asarray(points_mm, dtype=np.float64)
        ijk = voxel_indices(self.warp_affine, points)
        out = np.empty((ijk.shape[1], 3), dtype=np.float64)
        for k in range(3):
            out[:, k] = ndi.map_coordinates(
                self.warp_field[k], ijk, order=1, mode="nearest", prefilter=False
            )
        return out.reshape(points.shape)

    def to_mni(self, points_native: _FloatArray) -> NDArray[np.float64]:
        """MNI mm of native points (exact by construction)."""
        shifted = np.asarray(points_native, dtype=np.float64) - self.translation
        q = transform_points(np.linalg.inv(self.linear), shifted)
        return q + self.warp(q)

    def to_native(
        self, points_mni: _FloatArray, *, iterations: int = 20, tolerance_mm: float = 0.01
    ) -> NDArray[np.float64]:
        """Native mm of MNI points (inverse warp by fixed-point iteration)."""
        m = np.asarray(points_mni, dtype=np.float64)
        q = m - self.warp(m)
        for _ in range(iterations):
            q_next = m - self.warp(q)
            step = float(np.max(np.abs(q_next - q))) if q.size else 0.0
            q = q_next
            if step < tolerance_mm:  # contraction: the remaining error is below one step
                break
        return transform_points(self.linear, q) + self.translation

    def inverse_residual_mm(self, points_mni: _FloatArray) -> float:
        """Largest ``|to_mni(to_native(m)) − m|`` over the points (convergence check)."""
        back = self.to_mni(self.to_native(points_mni))
        return float(np.max(np.linalg.norm(back - points_mni, axis=-1)))


def rotation_matrix(angles_rad: _FloatArray) -> NDArray[np.float64]:
    """Rotation about x, then y, then z (right-handed, radians)."""
    ax, ay, az = (float(a) for a in angles_rad)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_displacement_field(
    rng: np.random.Generator,
    lo_mm: _FloatArray,
    hi_mm: _FloatArray,
    *,
    amplitude_mm: float,
    smoothness_mm: float,
    spacing_mm: float = 4.0,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Gaussian-smoothed white noise on a coarse grid, scaled so its largest vector is
    ``amplitude_mm`` long. Returns ``(field (X, Y, Z, 3), affine)``."""
    lo = np.asarray(lo_mm, dtype=np.float64)
    shape = tuple(int(n) for n in np.ceil((np.asarray(hi_mm) - lo) / spacing_mm).astype(int) + 1)
    noise = rng.standard_normal((*shape, 3)).astype(np.float32)
    sigma = smoothness_mm / spacing_mm
    field = np.stack([ndi.gaussian_filter(noise[..., k], sigma) for k in range(3)], axis=-1)
    peak = float(np.max(np.linalg.norm(field, axis=-1)))
    field *= amplitude_mm / peak if peak > 0 else 0.0
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = lo
    return field.astype(np.float32), affine


def random_subject_transform(
    rng: np.random.Generator,
    template: Template,
    *,
    rotation_deg: float = 5.0,
    translation_mm: float = 5.0,
    scale_range: float = 0.07,
    anisotropy: float = 0.02,
    warp_mm: float = 4.0,
    warp_smoothness_mm: float = 15.0,
    shrink: float = 1.0,
) -> SubjectTransform:
    """Draw a subject: uniform rotations (±``rotation_deg`` per axis), shifts, a global size
    factor in ``1 ± scale_range`` (times ``shrink``) with ±``anisotropy`` per axis, and a smooth
    random warp of at most ``warp_mm`` mm (Gaussian smoothing σ = ``warp_smoothness_mm``)."""
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, 3))
    scale = rng.uniform(1 - scale_range, 1 + scale_range) * shrink
    axes = scale * rng.uniform(1 - anisotropy, 1 + anisotropy, 3)
    linear = rotation_matrix(angles) @ np.diag(axes)
    translation = rng.uniform(-translation_mm, translation_mm, 3)
    lo, hi = template.brain_bbox_mm()
    margin = 2 * warp_smoothness_mm + 10.0
    if warp_mm > 0:
        field, waff = smooth_displacement_field(
            rng, lo - margin, hi + margin, amplitude_mm=warp_mm, smoothness_mm=warp_smoothness_mm
        )
    else:
        field, waff = np.zeros((2, 2, 2, 3), np.float32), np.eye(4)
    components = np.ascontiguousarray(np.moveaxis(field, -1, 0))
    return SubjectTransform(linear, translation, components, waff)
