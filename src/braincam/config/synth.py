"""Synthetic cohorts: :class:`SynthConfig` (diffusion), :class:`AnatSynthConfig` (structural) and
the ``synth`` section of an experiment (:data:`SynthSection`: either, chosen by ``kind``).

The generator configs hold exactly what defines the data: their ``model_dump()`` is written to
``derivatives/groundtruth/synth_config.json`` and to the experiment's ``.synth-params.json``
stamp, so field names, order and values are part of the on-disk format. The section adds how to
run (``workers``) and which generator (``kind``), which are not part of the data's identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from braincam.config.base import TAG, Count, FrozenSection, Real, Section
from braincam.names import ALIASES, canonical_name

# Constraints shared by both generators (stated once).
VoxelSize = Annotated[Real, Field(ge=0.5, le=8.0, description="isotropic voxel size, mm")]
Snr = Annotated[Real, Field(gt=0, description="pure-WM signal / noise sigma; inf: noise-free")]
RotationDeg = Annotated[Real, Field(ge=0.0, le=30.0)]
TranslationMm = Annotated[Real, Field(ge=0.0, le=50.0)]
ScaleRange = Annotated[Real, Field(ge=0.0, le=0.3)]
WarpMm = Annotated[Real, Field(ge=0.0, description="largest smooth-warp displacement, mm")]
WarpSmoothness = Annotated[Real, Field(gt=0)]
Orientation = Literal["LAS", "RAS"]
Ages = tuple[int, int]


def _check_warp(model: Any) -> None:
    if model.warp_mm > 0.4 * model.warp_smoothness_mm:
        raise ValueError(f"warp_mm must be in [0, 0.4 × warp_smoothness_mm]; got {model.warp_mm!r}")


def _check_ages(name: str, ages: tuple[int, int]) -> None:
    lo, hi = ages
    if not 0 <= lo <= hi:
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high; got {ages!r}")


class SynthConfig(Section):
    """Parameters of a synthetic diffusion cohort (every field is a ``braincam synth`` option)."""

    subjects: int = Field(20, ge=2, le=9999)
    seed: int = 0
    voxel_size: VoxelSize = 2.5
    snr: Snr = 30.0  # b=0 signal of pure white matter / noise sigma
    directions: int = Field(32, ge=6, le=512)
    b0_volumes: int = Field(5, ge=1, le=64)
    bvalue: Real = Field(1000.0, gt=0, le=10000, description="s/mm²")
    #: fraction of FA removed inside the region in the ``old`` group
    effect_size: Real = Field(0.5, ge=0.0, lt=1.0)
    #: region name, "sphere:X,Y,Z,R", "random[:deep|:cortical]" (placed by ``seed``) or NIfTI
    #: path (MNI)
    effect_region: str | Path = "frontal-wm"
    global_fa_change: Real = Field(0.0, gt=-1.0, lt=1.0)  # `old` group: FA × (1 + change)
    global_md_change: Real = Field(0.0, gt=-1.0, lt=3.0)  # `old` group: MD × (1 + change)
    atrophy: Real = Field(0.0, ge=0.0, lt=1.0)  # `old` group: this fraction of GM/WM → CSF
    young_ages: Ages = (8, 15)
    old_ages: Ages = (25, 75)
    rotation_deg: RotationDeg = 5.0
    translation_mm: TranslationMm = 5.0
    scale_range: ScaleRange = 0.07
    warp_mm: WarpMm = 4.0
    warp_smoothness_mm: WarpSmoothness = 15.0
    #: between-subject spread of white-matter FA (fraction)
    fa_subject_sd: Real = Field(0.03, ge=0.0, le=0.2)
    #: voxel axes of the written images (LAS like most scanners, or RAS)
    orientation: Orientation = "LAS"

    @model_validator(mode="after")
    def _cross(self) -> SynthConfig:
        _check_warp(self)
        _check_ages("young_ages", self.young_ages)
        _check_ages("old_ages", self.old_ages)
        return self


class GroupEffect(FrozenSection):
    """How one group differs from the template anatomy.

    ``lesions``: mean lesion count (Poisson); ``periventricular``: fraction of lesions centred in
    white matter within 10 mm of the lateral ventricles (the rest anywhere else in deep/
    juxtacortical WM); ``radius_mm``: range of the ellipsoids' semi-axes; ``atrophy``: fraction
    of grey matter replaced by CSF; ``ventricle_enlargement``: linear growth of the ventricles
    (0.3 → 30 % wider at their centre, smoothly fading out over the surrounding tissue).
    Checked by :class:`AnatSynthConfig`, whose messages name the group.
    """

    lesions: Real = 0.0
    periventricular: Real = 0.8
    radius_mm: tuple[Real, Real] = (2.0, 5.0)
    atrophy: Real = 0.0
    ventricle_enlargement: Real = 0.0
    ages: Ages = (25, 60)


#: Defaults: controls have none; RRMS a moderate, mostly periventricular lesion load; SPMS about
#: twice the load, larger lesions reaching further into deep WM, GM atrophy and wider ventricles.
DEFAULT_EFFECTS = (
    GroupEffect(ages=(25, 60)),
    GroupEffect(lesions=10, periventricular=0.8, radius_mm=(2.0, 4.5), atrophy=0.02,
                ventricle_enlargement=0.10, ages=(22, 50)),
    GroupEffect(lesions=22, periventricular=0.6, radius_mm=(2.5, 6.0), atrophy=0.08,
                ventricle_enlargement=0.35, ages=(40, 68)),
)  # fmt: skip

_EFFECT_CHECKS = (
    ("lesions", lambda e: 0 <= e.lesions <= 200, "in [0, 200]"),
    ("periventricular", lambda e: 0.0 <= e.periventricular <= 1.0, "in [0, 1]"),
    (
        "radius_mm",
        lambda e: 0.5 <= e.radius_mm[0] <= e.radius_mm[1] <= 20.0,
        "(low, high) with 0.5 <= low <= high <= 20",
    ),
    ("atrophy", lambda e: 0.0 <= e.atrophy < 0.5, "in [0, 0.5)"),
    ("ventricle_enlargement", lambda e: 0.0 <= e.ventricle_enlargement <= 1.0, "in [0, 1]"),
    ("ages", lambda e: 0 <= e.ages[0] <= e.ages[1], "(low, high), 0 <= low <= high"),
)


class HeadConfig(FrozenSection):
    """An optional skull and scalp around the synthetic brain, as real head scans have.

    Shells at a distance from the brain (native mm): ``gap_mm`` of nothing (meninges, CSF), bone
    (dark on every contrast) ``skull_mm`` thick, then scalp (bright fat and skin) ``scalp_mm``
    thick. ``shortcut_mm`` opts in to a group difference outside the brain: group k (0, 1, 2 in
    ``groups`` order) has a scalp ``k × shortcut_mm`` thicker — a shortcut a classifier can
    learn without looking at the brain, the positive control of the shortcut alarm.
    """

    enabled: bool = False
    gap_mm: Real = Field(2.0, ge=0.0, le=10.0)
    skull_mm: Real = Field(5.0, gt=0.0, le=15.0)
    scalp_mm: Real = Field(5.0, gt=0.0, le=20.0)
    shortcut_mm: Real = Field(0.0, ge=0.0, le=10.0)

    def scalp_of(self, role: int) -> float:
        """Scalp thickness (mm) of group ``role``."""
        return float(self.scalp_mm + role * self.shortcut_mm)

    def extent_mm(self) -> float:
        """How far the head reaches beyond the brain (0 when disabled)."""
        if not self.enabled:
            return 0.0
        return float(self.gap_mm + self.skull_mm + self.scalp_of(2))


class AnatSynthConfig(Section):
    """Parameters of a synthetic structural cohort (``braincam synth --kind anat``)."""

    subjects: int = Field(30, ge=3, le=9999)
    seed: int = 0
    voxel_size: VoxelSize = 2.0
    groups: tuple[str, str, str] = ("control", "rrms", "spms")
    effects: tuple[GroupEffect, GroupEffect, GroupEffect] = DEFAULT_EFFECTS
    snr: Snr = 40.0  # pure-WM T1w signal / noise sigma (same sigma for every contrast)
    bias_strength: Real = Field(0.25, ge=0.0, lt=1.0)  # bias field spans ×(1 ± strength)
    misregistration_deg: Real = Field(3.0, ge=0.0, le=20.0)  # T2w/FLAIR vs T1w, ± per axis
    misregistration_mm: Real = Field(3.0, ge=0.0, le=20.0)
    rotation_deg: RotationDeg = 5.0
    translation_mm: TranslationMm = 5.0
    scale_range: ScaleRange = 0.07
    warp_mm: WarpMm = 4.0
    warp_smoothness_mm: WarpSmoothness = 15.0
    orientation: Orientation = "LAS"
    head: HeadConfig = HeadConfig()

    def lesions_only(self) -> AnatSynthConfig:
        """A copy whose groups differ only in their lesions: no atrophy, no ventricle change.

        So a map that finds the ventricles cannot be right for a reason the ground truth does
        not hold (the lesion masks are then everything that differs between groups).
        """
        effects = tuple(
            e.model_copy(update={"atrophy": 0.0, "ventricle_enlargement": 0.0})
            for e in self.effects
        )
        return self.replace(effects=effects)

    @model_validator(mode="after")
    def _cross(self) -> AnatSynthConfig:
        _check_warp(self)
        groups = tuple(self.groups)
        if len(set(groups)) != 3 or not all(str(g).strip() for g in groups):
            raise ValueError(f"groups must be 3 distinct non-empty names; got {groups!r}")
        for name, eff in zip(groups, self.effects, strict=True):
            for key, ok, expected in _EFFECT_CHECKS:
                if not ok(eff):
                    raise ValueError(
                        f"effects[{name}].{key} must be {expected}; got {getattr(eff, key)!r}"
                    )
        return self


# --------------------------------------------------------------------------- the YAML section


class DwiSynthSection(SynthConfig):
    """``synth`` with ``kind: dwi`` (the default): a :class:`SynthConfig` plus ``workers``."""

    kind: Literal["dwi"] = "dwi"
    workers: Count = Field(1, description="subjects simulated in parallel (same bytes)")

    def generator_config(self) -> SynthConfig:
        """The generator's parameters (without ``kind`` and ``workers``)."""
        return SynthConfig(**{k: getattr(self, k) for k in SynthConfig.model_fields})


class AnatSynthSection(AnatSynthConfig):
    """``synth`` with ``kind: anat``: an :class:`AnatSynthConfig` plus ``workers``."""

    kind: Literal["anat"] = "anat"
    workers: Count = Field(1, description="subjects simulated in parallel (same bytes)")
    # The groups differ by their lesions only (AnatSynthConfig.lesions_only; CLI --lesion-only).
    lesion_only: bool = False

    @field_validator("kind", mode="before")
    @classmethod
    def _old_spelling(cls, value: Any) -> Any:
        return canonical_name(value, ("anat",), what="synth.kind") if value in ALIASES else value

    def generator_config(self) -> AnatSynthConfig:
        """The generator's parameters (without ``kind`` and ``workers``; ``lesion_only``
        applied to the effects)."""
        config = AnatSynthConfig(**{k: getattr(self, k) for k in AnatSynthConfig.model_fields})
        return config.lesions_only() if self.lesion_only else config


#: ``kind`` → section model; :data:`SynthSection` is built from it, so a new synthetic kind is
#: one entry here (its section class holds the generator's fields, ``kind`` and ``workers``).
SYNTH_KINDS: dict[str, type[Section]] = {"dwi": DwiSynthSection, "anat": AnatSynthSection}


def _synth_kind(value: Any) -> str | None:
    kind = value.get("kind", "dwi") if isinstance(value, dict) else getattr(value, "kind", None)
    if kind is None:
        return None
    # An old spelling (``structural``) picks its new name's section, whose validator warns.
    return f"{TAG}{ALIASES.get(kind, kind)}"


#: The ``synth`` section: the generator is chosen by ``kind`` (``dwi`` when absent).
SynthSection = Annotated[
    Union[tuple(Annotated[cls, Tag(f"{TAG}{kind}")] for kind, cls in SYNTH_KINDS.items())],  # noqa: UP007
    Discriminator(_synth_kind),
]
