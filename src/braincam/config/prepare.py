"""``prepare``: :class:`PrepareConfig` (every option of the step) and the parameters it derives —
:class:`DTIParams` (diffusion), :class:`AnatParams` (structural) and :class:`SliceSpec` (the
slice store).

``DTIParams``, ``AnatParams`` and ``SliceSpec`` are cache-key and fingerprint inputs: their
``model_dump()`` is hashed and written to sidecars, so field names, order and values are part of
the on-disk format (numbers keep their type: see :data:`~braincam.config.base.Real`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from braincam.config.base import Count, FrozenSection, Real, Section
from braincam.errors import ConfigError
from braincam.imaging.orientation import AXES

# DIPY's names for the tensor fit methods (TensorModel(fit_method=...)), canonical spelling.
FIT_METHODS = ("WLS", "OLS", "NLLS", "RESTORE")
_FIT_ALIASES = {
    "WLLS": "WLS",
    "LS": "OLS",
    "LLS": "OLS",
    "OLLS": "OLS",
    "NLS": "NLLS",
    "RT": "RESTORE",
}


def _fit_method(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    method = _FIT_ALIASES.get(value.upper(), value.upper())
    if method not in FIT_METHODS:
        raise ValueError(f"must be one of {', '.join(FIT_METHODS)}, got {value!r}")
    return method


def _axes(value: Any) -> Any:
    axes = (value,) if isinstance(value, str) else value
    try:
        axes = tuple(axes)
    except TypeError:
        return value
    bad = [a for a in axes if a not in AXES]
    if not axes or bad or len(set(axes)) != len(axes):
        raise ValueError(f"must be distinct values of {AXES}, got {list(axes)!r}")
    return axes


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be finite, got {value!r}")
    return value


# Constraints shared by PrepareConfig and what it derives (stated once).
FitMethod = Annotated[str, BeforeValidator(_fit_method)]
MedianRadius = Annotated[int, Field(ge=1, description="median_otsu filter radius, voxels")]
NumPass = Annotated[int, Field(ge=1, description="median_otsu filter passes")]
Axes = Annotated[tuple[str, ...], BeforeValidator(_axes)]
#: Slice side in pixels (prepare and the slice store agree: at least 8).
SliceSize = Annotated[int, Field(ge=8, description="slice side, pixels")]
VoxelSize = Annotated[Real, BeforeValidator(_finite), Field(gt=0, description="mm")] | None
Equalize = Literal["global", "adaptive", "none"]
TrimThreshold = Annotated[Real, Field(ge=0.0, lt=1.0)]
Positive = Annotated[Real, Field(gt=0)]


# Volumes with b at or below this are treated as b=0 (scanners record b=5 or b=10 for "b0").
DEFAULT_B0_THRESHOLD = 50.0
# Tolerated deviation of |g| from 1 for diffusion-weighted volumes (DIPY's own default atol).
DEFAULT_BVEC_TOLERANCE = 0.01


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Return ``ratios`` as a float triple; raise ConfigError unless 3 positive values sum to 1."""
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"split ratios must be three numbers, got {ratios!r}") from exc
    if len(values) != 3:
        raise ConfigError(f"split ratios must be three numbers (train, val, test), got {ratios!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"split ratios must all be positive, got {ratios!r}")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split ratios must sum to 1, got {ratios!r} (sum {sum(values):.6g})")
    return values  # type: ignore[return-value]


class DTIParams(FrozenSection):
    """Parameters of the mask and tensor fit (all recorded in the sidecars and the cache key).

    The median_otsu defaults (radius 2, 1 pass) are 16× faster than DIPY's (4, 4) on the 2.5 mm
    synthetic cohort, with Dice 0.95 against (4, 4) and closer to the true brain (BENCHMARKS.md).
    ``fit_method`` accepts DIPY's aliases (``nls`` → ``NLLS``) and holds the canonical name.
    """

    fit_method: FitMethod = "WLS"
    median_radius: MedianRadius = 2
    numpass: NumPass = 1
    dilate: Annotated[int, Field(ge=0)] | None = None
    b0_threshold: Real = DEFAULT_B0_THRESHOLD
    bvec_tolerance: Real = DEFAULT_BVEC_TOLERANCE


# The field ``register`` shadows ``ABCMeta.register`` (a class-level method): harmless.
warnings.filterwarnings("ignore", message='Field name "register" in "AnatParams"')


class AnatParams(FrozenSection):
    """Every parameter of the structural preprocessing (recorded in sidecars and the cache key).

    Defaults are fast: N4 on a copy shrunk ×4 (as ANTs' usual ``-s 4``; less when the copy would
    be under 16 voxels along an axis) with 3 fitting levels (40/30/20 iterations, convergence
    1e-3 — a 4th level starts fitting anatomy on 2–4 mm data and raises the WM CoV);
    registration with 32 histogram bins, 20 % random samples, ≤ 100 iterations per level.
    """

    n4: bool = True
    n4_shrink: int = Field(4, ge=1, le=8)
    #: one or more positive integers (one per fitting level)
    n4_iterations: tuple[Count, ...] = Field((40, 30, 20), min_length=1)
    n4_convergence: Positive = 1e-3
    register: bool = True
    init: Literal["header", "moments", "geometry"] = "header"
    histogram_bins: int = Field(32, ge=8, le=256)
    sampling: Real = Field(0.2, gt=0.0, le=1.0)
    shrink_factors: tuple[Count, ...] = Field((4, 2, 1), min_length=1)
    #: non-negative, one per shrink factor
    smoothing_sigmas: tuple[Annotated[Real, Field(ge=0)], ...] = (2.0, 1.0, 0.0)
    iterations: Count = 100
    learning_rate: Positive = 1.0
    min_step: Positive = 1e-3  # and < learning_rate
    seed: int = 0
    equalize: Equalize = "adaptive"
    equalize_bins: int = Field(256, ge=2, le=65536)
    clip_limit: Real = Field(0.01, gt=0, le=1)
    #: CLAHE tile size; None → skimage's default (1/8 of each axis)
    kernel_mm: Positive | None = None
    trim_axis: Literal["axial", "coronal", "sagittal"] | None = "axial"
    trim_threshold: TrimThreshold = 0.10
    threads: Count | None = None  # SimpleITK threads; None → SimpleITK's default
    #: the brain mask: "extract" (MNI152 registration, skull and scalp excluded) or
    #: "foreground" (Otsu head foreground: only for images that are already skull-stripped)
    brain_mask: Literal["extract", "foreground"] = "extract"
    #: outside the brain mask: "zero" (the network sees only the brain) or "keep" (the head,
    #: equalized with it; the mask still drives trimming and the shortcut alarm)
    outside_brain: Literal["zero", "keep"] = "zero"

    @model_validator(mode="after")
    def _cross(self) -> AnatParams:
        if len(self.smoothing_sigmas) != len(self.shrink_factors):
            raise ValueError(
                "smoothing_sigmas must be non-negative, one per shrink factor; "
                f"got {self.smoothing_sigmas!r}"
            )
        if not self.min_step < self.learning_rate:
            raise ValueError(f"min_step must be in (0, learning_rate); got {self.min_step!r}")
        return self


class SliceSpec(FrozenSection):
    """How slices are taken from a volume (recorded in the store's meta.json)."""

    axes: Axes = AXES
    per_axis: Count = 16
    size: SliceSize = 224
    voxel_size: VoxelSize = None  # isotropic mm; None → the image's smallest voxel size
    step: Count = 1  # distance between consecutive slices, in isotropic voxels
    order: Literal[0, 1] = 1  # image interpolation: 1 linear (default), 0 nearest

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = self.model_dump()
        d["axes"] = list(self.axes)
        return d


#: How ``prepare`` represents a subject for the networks: 2.5D slices or one whole volume.
Representation = Literal["slices", "volume"]
#: One side of the volume grid, in voxels (at least 8: a few poolings must fit).
VolumeSide = Annotated[int, Field(ge=8, description="volume grid side, voxels")]
#: The prepare keys that only a volume store reads (left out of a slices config's to_dict()).
VOLUME_KEYS = ("representation", "volume_shape", "volume_spacing")
#: Where the volume store's grid lies: each subject's own space around its brain, or MNI.
VolumeSpace = Literal["native", "mni"]
#: How a subject reaches MNI (``volume_space: mni``): its known coordinate map (synthetic
#: cohorts), an affine registration to the MNI152 template, or the first of them available.
VolumeTransform = Literal["auto", "known", "registration"]
#: Keys of a volume store in MNI only (left out of a native store's config and spec, so that
#: the stamps and fingerprints of native stores keep the bytes they had before).
MNI_KEYS = {"space": "volume_space", "transform": "volume_transform"}


class VolumeSpec(FrozenSection):
    """The fixed grid of the volume store (recorded in its meta.json and its fingerprint):
    ``shape`` voxels of ``spacing`` mm, centred on each subject's brain (``space: native``) or
    on the MNI152 brain (``space: mni``, each subject brought there by ``transform``); see
    :mod:`braincam.data.volumes`."""

    shape: tuple[VolumeSide, VolumeSide, VolumeSide] = (64, 80, 64)
    spacing: Positive = 2.5  # isotropic mm
    order: Literal[0, 1] = 1  # image interpolation: 1 linear (default), 0 nearest
    space: VolumeSpace = "native"
    transform: VolumeTransform = "auto"  # read in MNI space only

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a native grid without the MNI-only keys)."""
        d = self.model_dump()
        d["shape"] = list(self.shape)
        if self.space == "native":
            for key in MNI_KEYS:
                d.pop(key)
        return d


class PrepareConfig(Section):
    """Every option of ``braincam prepare`` (defaults = the CLI's defaults)."""

    label: str = "group"
    manifest: Path | None = None
    participant_labels: tuple[str, ...] | None = None
    session: str | None = None
    run: str | None = None
    fit_method: FitMethod = "WLS"
    median_radius: MedianRadius = 2
    numpass: NumPass = 1
    b0_threshold: Real = DEFAULT_B0_THRESHOLD
    bvec_tolerance: Real = DEFAULT_BVEC_TOLERANCE
    workers: Count = 1
    dask_scheduler: str | None = None
    split_ratios: tuple[float, float, float] = (0.75, 0.10, 0.15)
    seed: int = 0
    axes: Axes = AXES
    slices_per_axis: Count = 16
    size: SliceSize = 224
    voxel_size: VoxelSize = None
    mask_desc: str | None = "effect"
    masks_dir: Path | None = None
    force: bool = False
    progress: bool = True
    # Structural MRI (docs/structural.md): T1w/T2w/FLAIR → N4 → co-registration → equalization.
    modality: str = "dwi"  # dwi | anat
    equalize: Equalize = "adaptive"  # anat
    trim_threshold: TrimThreshold = 0.10  # anat: keep slices with brain area ≥ this × the largest
    missing_contrast: Literal["error", "skip"] = "error"  # anat: the subject is listed as failed
    # A BIDS folder without dataset_description.json is refused unless this is set (then a
    # warning); CLI --allow-missing-description. Ignored for a manifest.
    allow_missing_description: bool = False
    brain_mask: Literal["extract", "foreground"] = "extract"  # anat: see AnatParams
    outside_brain: Literal["zero", "keep"] = "zero"  # anat: see AnatParams
    # Whole-brain 3-D (issue 15): "volume" writes WORK/volumes/ instead of WORK/slices/.
    representation: Representation = "slices"
    volume_shape: tuple[VolumeSide, VolumeSide, VolumeSide] = VolumeSpec().shape  # voxels
    volume_spacing: Positive = VolumeSpec().spacing  # isotropic mm
    volume_space: VolumeSpace = "native"  # "mni": one common grid (data/volumes.py)
    volume_transform: VolumeTransform = "auto"  # how a subject reaches MNI

    @field_validator("split_ratios", mode="before")
    @classmethod
    def _ratios(cls, value: Any) -> tuple[float, float, float]:
        return validate_ratios(value)

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str) -> str:
        # The modality registry is the one place that knows the names (and old spellings).
        from braincam.errors import ConfigError
        from braincam.modalities import get_modality, modality_names

        try:
            return get_modality(value).name
        except ConfigError:
            raise ValueError(
                f"must be one of {', '.join(modality_names())}, got {value!r}"
            ) from None

    @model_validator(mode="after")
    def _cross(self) -> PrepareConfig:
        self.get_modality().check_config(self)
        return self

    def get_modality(self) -> Any:  # -> braincam.modalities.base.Modality
        """The :class:`~braincam.modalities.base.Modality` this config prepares."""
        from braincam.modalities import get_modality

        return get_modality(self.modality)

    def anat_params(self) -> AnatParams:
        """The structural preprocessing parameters (and cache key) for ``modality="anat"``."""
        return AnatParams(
            equalize=self.equalize,
            trim_threshold=self.trim_threshold,
            brain_mask=self.brain_mask,
            outside_brain=self.outside_brain,
        )

    def dti_params(self) -> DTIParams:
        """The subset of options that define the FA/MD computation (and its cache key)."""
        return DTIParams(
            fit_method=self.fit_method,
            median_radius=self.median_radius,
            numpass=self.numpass,
            b0_threshold=self.b0_threshold,
            bvec_tolerance=self.bvec_tolerance,
        )

    def slice_spec(self) -> SliceSpec:
        """How ``prepare`` takes slices (the store's spec)."""
        return SliceSpec(
            axes=self.axes,
            per_axis=self.slices_per_axis,
            size=self.size,
            voxel_size=self.voxel_size,
        )

    def volume_spec(self) -> VolumeSpec:
        """The volume store's grid (``representation: volume``)."""
        return VolumeSpec(
            shape=self.volume_shape,
            spacing=self.volume_spacing,
            space=self.volume_space,
            transform=self.volume_transform,
        )

    def to_dict(self) -> dict:
        """JSON-ready parameters (paths as strings).

        A slices config leaves out the volume keys: they do not change a slice store, and the
        run's prepare stamp and summary keep the bytes they had before volumes existed.
        """
        out = self.model_dump()
        for k in ("manifest", "masks_dir"):
            out[k] = None if out[k] is None else str(out[k])
        if self.representation == "slices" or self.volume_space == "native":
            for k in MNI_KEYS.values():
                out.pop(k)
        if self.representation == "slices":
            for k in VOLUME_KEYS:
                out.pop(k)
        else:
            out["volume_shape"] = list(self.volume_shape)
        return out


class PrepareSection(PrepareConfig):
    """The ``prepare`` section of an experiment: ``progress`` unset (None) follows ``braincam
    run``'s own ``--progress/--no-progress``."""

    progress: bool | None = None  # type: ignore[assignment]

    def step_config(self, progress: bool) -> PrepareConfig:
        """The step's :class:`PrepareConfig` (``progress`` from the run unless set here)."""
        values = {k: getattr(self, k) for k in PrepareConfig.model_fields}
        if values["progress"] is None:
            values["progress"] = progress
        return PrepareConfig(**values)
