"""Synthetic structural cohort: T1w/T2w/FLAIR with MS-like lesions (``synth --kind structural``).

Anatomy, warps and regions come from :mod:`braincam.synth.anatomy` (the same machinery as the
diffusion cohort); writing, ids and noise from :mod:`braincam.synth.common`. Per subject:

- tissue fractions (GM, WM, CSF) of the warped MNI152 template, contrast-specific intensities
  (:data:`CONTRASTS`), Rician noise and a smooth multiplicative bias field per image, drawn in
  that image's own scanner frame (a coil property, so it does not move with the head);
- T2w and FLAIR on the T1w voxel grid but with the head moved by a small random rigid transform
  (the ground truth a co-registration must recover), recorded as a 4×4 RAS matrix;
- groups (default ``control``, ``rrms``, ``spms``) that differ as :class:`GroupEffect` says:
  white-matter lesions (soft-edged ellipsoids, mostly periventricular; hyperintense on T2w and
  FLAIR, hypointense on T1w), grey-matter atrophy and ventricle enlargement.

Ground truth under ``derivatives/groundtruth/sub-XX/anat/`` (see :func:`anat_groundtruth_paths`),
one mask per planted effect (:func:`planted_change_masks`): lesions, GM atrophy, ventricle
enlargement.
The same seed gives byte-identical files. Details: docs/structural.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.config.synth import AnatSynthConfig, GroupEffect, HeadConfig
from braincam.errors import ConfigError
from braincam.imaging.groundtruth import (
    anat_groundtruth_paths,
    read_true_transform,  # noqa: F401  (re-exported)
)
from braincam.imaging.nifti import save_nifti
from braincam.imaging.templates import TEMPLATE_SPACE
from braincam.io import write_json, write_text_atomic
from braincam.synth.anatomy import (
    SubjectTransform,
    Template,
    grid_coordinates,
    load_template,
    sample_volume,
    transform_points,
    voxel_indices,
)
from braincam.synth.common import (
    add_rician_noise,
    clear_previous,
    native_affine,
    native_shape,
    participant_ids,
    software,
    subject_transform,
    write_cohort_files,
)
from braincam.synth.pathology import (
    Lesion,
    bias_field,
    draw_lesions,
    enlarge_ventricles,
    lateral_ventricles,
    lesion_fraction,
    random_rigid,
)

#: BIDS suffixes of the three contrasts, in slice-store channel order.
SUFFIXES = ("T1w", "T2w", "FLAIR")

#: Relative signal of each tissue per contrast (pure white matter on T1w = 1). Written ×1000 as
#: int16. Lesions: T1 "black holes" darker than WM, bright on T2w and FLAIR; CSF is suppressed on
#: FLAIR, which is why periventricular lesions stand out there.
CONTRASTS: dict[str, dict[str, float]] = {
    "T1w": {"csf": 0.25, "gm": 0.65, "wm": 1.00, "lesion": 0.50, "bone": 0.05, "scalp": 1.10},
    "T2w": {"csf": 1.60, "gm": 0.95, "wm": 0.70, "lesion": 1.35, "bone": 0.05, "scalp": 0.90},
    "FLAIR": {"csf": 0.15, "gm": 0.85, "wm": 0.65, "lesion": 1.40, "bone": 0.05, "scalp": 1.00},
}
#: Bone and scalp (fat, skin) exist only with ``head.enabled``: cortical bone is dark on every
#: contrast, scalp fat bright on T1w and still bright on T2w/FLAIR.
SCALE = 1000.0
DSEG_LABELS = {1: "CSF", 2: "GM", 3: "WM", 4: "lesion"}


@dataclass(frozen=True)
class AnatParticipant:
    """One synthetic subject's table row."""

    participant_id: str
    age: int
    group: str
    index: int
    role: int  # 0, 1, 2: position of the group in ``config.groups``


# --------------------------------------------------------------------------- paths


def anat_paths(bids_dir: str | Path, participant_id: str) -> dict[str, Path]:
    """Raw images of one subject, keyed by BIDS suffix (T1w, T2w, FLAIR)."""
    base = Path(bids_dir) / participant_id / "anat"
    return {s: base / f"{participant_id}_{s}.nii.gz" for s in SUFFIXES}


# --------------------------------------------------------------------------- cohort anatomy


@dataclass(frozen=True)
class _AnatCohort:
    template: Template
    shape: tuple[int, int, int]
    periventricular: NDArray[np.float64]  # (n, 3) MNI mm of candidate lesion centres
    deep_wm: NDArray[np.float64]
    ventricle_centre: NDArray[np.float64]
    ventricle_sigma: NDArray[np.float64]
    ventricles: NDArray[np.float32]  # the lateral ventricles on the template grid (0 / 1)


def _prepare_cohort(config: AnatSynthConfig, template: Template | None = None) -> _AnatCohort:
    if template is None:
        template = load_template(config.voxel_size)
    elif not np.isclose(template.voxel_size, config.voxel_size):
        raise ConfigError(
            f"template voxel size {template.voxel_size:g} mm differs from voxel_size "
            f"{config.voxel_size:g} mm"
        )
    vent = lateral_ventricles(template)
    dist = ndi.distance_transform_edt(~vent) * template.voxel_size
    wm = template.wm >= 0.6
    pts = template.points()
    vpts = pts[vent]
    return _AnatCohort(
        template=template,
        # same field names
        shape=native_shape(template, config, config.head.extent_mm()),  # type: ignore[arg-type]
        periventricular=pts[wm & (dist <= 10.0)],
        deep_wm=pts[wm & (dist > 10.0)],
        ventricle_centre=vpts.mean(0),
        ventricle_sigma=vpts.std(0) * 1.5,
        ventricles=vent.astype(np.float32),
    )


@dataclass
class AnatSubject:
    """In-memory images and ground truth of one simulated subject (all on the T1w grid)."""

    images: dict[str, NDArray[np.int16]]
    affine: NDArray[np.float64]
    lesion_mask: NDArray[np.uint8]
    atrophy_mask: NDArray[np.uint8]
    ventricle_mask: NDArray[np.uint8]
    dseg: NDArray[np.uint8]
    bias: dict[str, NDArray[np.float32]]
    true_xfm: dict[str, NDArray[np.float64]]  # T1w world mm → T2w/FLAIR world mm
    native_to_mni: NDArray[np.float32]
    lesions: list[Lesion]
    params: dict


def _tissue_at(
    cohort: _AnatCohort,
    points_native: NDArray,
    transform: SubjectTransform,
    effect: GroupEffect,
    lesions: list[Lesion],
) -> tuple[dict[str, NDArray[np.float32]], NDArray[np.float64]]:
    """Tissue fractions (csf, gm, wm, lesion) at native points, and their MNI coordinates."""
    tpl = cohort.template
    mni = transform.to_mni(points_native)
    src = enlarge_ventricles(
        mni, cohort.ventricle_centre, cohort.ventricle_sigma, effect.ventricle_enlargement
    )
    ijk = voxel_indices(tpl.affine, src)
    gm, wm, csf = (
        sample_volume(getattr(tpl, n), tpl.affine, src, indices=ijk) for n in ("gm", "wm", "csf")
    )
    if effect.atrophy > 0:
        csf = csf + effect.atrophy * gm
        gm = gm * (1.0 - effect.atrophy)
    # Lesions move with the tissue (evaluated where the template is sampled) and replace WM.
    lesion = lesion_fraction(src, lesions, tpl.voxel_size) * wm
    wm = wm - lesion
    return {"csf": csf, "gm": gm, "wm": wm, "lesion": lesion}, mni


def planted_change_masks(
    cohort: _AnatCohort, mni: NDArray, effect: GroupEffect
) -> dict[str, NDArray[np.uint8]]:
    """Where the group's atrophy and ventricle enlargement changed a subject (T1w grid).

    ``mni``: the MNI coordinates of the grid's voxels (before the enlargement warp, as
    :func:`_tissue_at` returns them). ``atrophy``: voxels that lost at least half the planted GM
    fraction ``effect.atrophy`` — those whose GM fraction before atrophy was ≥ 0.5 (atrophy
    removes ``atrophy × GM`` everywhere, so thresholding the loss picks the GM-dominant voxels,
    the 0.5 rule of the lesion mask and the tissue labels). ``ventricles``: voxels inside the
    lateral ventricles (≥ 0.5 of the template's ventricle mask, sampled linearly) after the
    enlargement warp but not before: the tissue that became ventricle. Both empty for a group
    without that effect.
    """
    tpl = cohort.template
    src = enlarge_ventricles(
        mni, cohort.ventricle_centre, cohort.ventricle_sigma, effect.ventricle_enlargement
    )
    shape = mni.shape[:-1]
    if effect.atrophy > 0:
        gm = sample_volume(tpl.gm, tpl.affine, src, indices=voxel_indices(tpl.affine, src))
        atrophy = gm >= 0.5  # the loss atrophy × GM is ≥ atrophy / 2
    else:
        atrophy = np.zeros(shape, dtype=bool)
    if effect.ventricle_enlargement > 0:
        after = sample_volume(cohort.ventricles, tpl.affine, src) >= 0.5
        before = sample_volume(cohort.ventricles, tpl.affine, mni) >= 0.5
        ventricles = after & ~before
    else:
        ventricles = np.zeros(shape, dtype=bool)
    return {"atrophy": atrophy.astype(np.uint8), "ventricles": ventricles.astype(np.uint8)}


def _band(distance: NDArray, lo: float, hi: float, voxel: float) -> NDArray[np.float32]:
    """Partial-volume fraction of the shell ``lo <= distance < hi`` (mm) on a ``voxel`` grid."""

    def ramp(x: NDArray) -> NDArray:
        return np.clip(x / voxel + 0.5, 0.0, 1.0)

    return (ramp(distance - lo) - ramp(distance - hi)).astype(np.float32)


def add_head(
    fractions: dict[str, NDArray[np.float32]], head: HeadConfig, role: int, voxel: float
) -> None:
    """Add bone and scalp fractions around the brain in place (distances in native mm, so the
    shells move with the head between sequences and keep their thickness in every subject)."""
    brain = sum(fractions[t] for t in ("csf", "gm", "wm", "lesion")) >= 0.5
    distance = ndi.distance_transform_edt(~brain) * voxel
    bone_end = head.gap_mm + head.skull_mm
    fractions["bone"] = _band(distance, head.gap_mm, bone_end, voxel)
    fractions["scalp"] = _band(distance, bone_end, bone_end + head.scalp_of(role), voxel)


def _signal(fractions: dict[str, NDArray], contrast: str) -> NDArray[np.float32]:
    table = CONTRASTS[contrast]
    total = sum(fractions[t] * np.float32(table[t]) for t in table if t in fractions)
    return total.astype(np.float32)


def simulate_subject(
    cohort: _AnatCohort, config: AnatSynthConfig, person: AnatParticipant
) -> AnatSubject:
    """Simulate one subject's three contrasts and ground truth (deterministic in seed, index)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7, person.index]))
    tpl = cohort.template
    effect = config.effects[person.role]
    transform = subject_transform(rng, tpl, config)
    lesions = draw_lesions(rng, cohort, effect)
    centre = transform.to_native(tpl.brain_center_mm()[None, :])[0]
    affine = native_affine(config, centre, cohort.shape)  # type: ignore[arg-type]
    grid = grid_coordinates(cohort.shape, affine)
    sigma = 0.0 if not np.isfinite(config.snr) else 1.0 / config.snr

    images: dict[str, NDArray[np.int16]] = {}
    bias: dict[str, NDArray[np.float32]] = {}
    true_xfm: dict[str, NDArray[np.float64]] = {}
    xfm_params: dict[str, dict] = {}
    fractions, mni = _tissue_at(cohort, grid, transform, effect, lesions)
    for contrast in SUFFIXES:
        if contrast == "T1w":
            frac = fractions
        else:
            # The head moved between sequences: the voxel at world q shows what the T1w shows at
            # T⁻¹(q), so T (T1w mm → moving mm) is exactly what a registration should estimate.
            xfm, angles, shift = random_rigid(
                rng, centre, config.misregistration_deg, config.misregistration_mm
            )
            true_xfm[contrast] = xfm
            xfm_params[contrast] = {"angles_deg": angles, "shift_mm": shift}
            frac, _ = _tissue_at(
                cohort, transform_points(np.linalg.inv(xfm), grid), transform, effect, lesions
            )
        if config.head.enabled:
            add_head(frac, config.head, person.role, config.voxel_size)
        bias[contrast] = bias_field(rng, cohort.shape, config.bias_strength)
        clean = _signal(frac, contrast) * bias[contrast]
        noisy = add_rician_noise(rng, clean, sigma) * np.float32(SCALE)
        images[contrast] = np.clip(np.rint(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)

    lesion_mask = (fractions["lesion"] >= 0.5).astype(np.uint8)
    changes = planted_change_masks(cohort, mni, effect)
    stack = np.stack([fractions["csf"], fractions["gm"], fractions["wm"]])
    tissue = stack.sum(0) + fractions["lesion"]
    dseg = np.where(tissue >= 0.5, stack.argmax(0) + 1, 0).astype(np.uint8)
    dseg[lesion_mask > 0] = 4
    voxel_ml = config.voxel_size**3 / 1000.0
    params = {
        "group": person.group,
        "age": person.age,
        "LesionCount": len(lesions),
        "PeriventricularLesions": int(sum(les.periventricular for les in lesions)),
        "LesionVolumeML": round(float(lesion_mask.sum()) * voxel_ml, 4),
        "Atrophy": effect.atrophy,
        "AtrophyMaskML": round(float(changes["atrophy"].sum()) * voxel_ml, 4),
        "VentricleEnlargement": effect.ventricle_enlargement,
        "VentricleGainML": round(float(changes["ventricles"].sum()) * voxel_ml, 4),
        "ScalpMM": config.head.scalp_of(person.role) if config.head.enabled else None,
        "Lesions": [
            {
                "CentreMNI": np.round(les.centre, 3).tolist(),
                "RadiiMM": np.round(les.radii, 3).tolist(),
                "Periventricular": les.periventricular,
            }
            for les in lesions
        ],
        "Misregistration": {
            k: {
                "RotationDeg": np.round(v["angles_deg"], 6).tolist(),
                "TranslationMM": np.round(v["shift_mm"], 6).tolist(),
            }
            for k, v in xfm_params.items()
        },
        "LinearMNIToNative": np.round(transform.linear, 6).tolist(),
        "TranslationMM": np.round(transform.translation, 6).tolist(),
        "_transform": transform,
    }
    return AnatSubject(
        images=images,
        affine=affine,
        lesion_mask=lesion_mask,
        atrophy_mask=changes["atrophy"],
        ventricle_mask=changes["ventricles"],
        dseg=dseg,
        bias=bias,
        true_xfm=true_xfm,
        native_to_mni=mni.astype(np.float32),
        lesions=lesions,
        params=params,
    )


# --------------------------------------------------------------------------- writing


def draw_anat_participants(config: AnatSynthConfig) -> list[AnatParticipant]:
    """Groups balanced in thirds (order shuffled, so ids do not give the group away)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xA7A7]))
    n = config.subjects
    roles = np.arange(n) % 3
    rng.shuffle(roles)
    out = []
    for i, (pid, role) in enumerate(zip(participant_ids(n), roles, strict=True)):
        lo, hi = config.effects[int(role)].ages
        age = int(rng.integers(lo, hi + 1))
        out.append(AnatParticipant(pid, age, str(config.groups[int(role)]), i, int(role)))
    return out


def _write_dataset_files(out: Path, config: AnatSynthConfig, people: list[AnatParticipant]) -> None:
    levels = {
        name: (
            f"mean {eff.lesions:g} WM lesions ({eff.periventricular:.0%} periventricular, "
            f"semi-axes {eff.radius_mm[0]:g}–{eff.radius_mm[1]:g} mm), GM atrophy "
            f"{eff.atrophy:g}, ventricles ×{1 + eff.ventricle_enlargement:g}"
            + (f", scalp {config.head.scalp_of(role):g} mm" if config.head.enabled else "")
        )
        for role, (name, eff) in enumerate(zip(config.groups, config.effects, strict=True))
    }
    gt = write_cohort_files(
        out,
        name="braincam synthetic structural MRI cohort (T1w, T2w, FLAIR)",
        people=people,
        group_description="Diagnostic group (simulated)",
        levels=levels,
    )
    lut = ["index\tname"] + [f"{k}\t{v}" for k, v in DSEG_LABELS.items()]
    write_text_atomic(gt / "desc-tissue_dseg.tsv", "\n".join(lut) + "\n")
    settings = config.model_dump()
    write_json(
        gt / "synth_config.json",
        {"kind": "structural", "config": settings, "template_space": TEMPLATE_SPACE,
         "contrasts": CONTRASTS},
    )  # fmt: skip


def _xfm_json(matrix: NDArray, info: dict, moving: str) -> dict:
    return {
        "Description": (
            f"True rigid transform: maps a point in T1w world mm (RAS) to the point of the "
            f"{moving} image showing the same anatomy ({moving}(T(p)) = T1w(p)); this is the "
            f"transform a registration with T1w fixed and {moving} moving estimates."
        ),
        "MatrixRAS": np.round(matrix, 10).tolist(),
        "RotationDeg": info["RotationDeg"],
        "TranslationMM": info["TranslationMM"],
        "Convention": "rotation about x, then y, then z, about the T1w field-of-view centre",
    }


def _write_subject(out: Path, cohort: _AnatCohort, subj: AnatSubject, pid: str) -> None:
    raw = anat_paths(out, pid)
    for contrast in SUFFIXES:
        save_nifti(raw[contrast], subj.images[contrast], subj.affine)
        write_json(
            raw[contrast].with_name(f"{pid}_{contrast}.json"),
            {
                "Description": f"Simulated {contrast} image (braincam synth --kind structural)",
                "SoftwareVersions": f"braincam {software()['Version']}",
                "SimulatedBiasField": "exp(random quadratic), own scanner frame",
                "SimulatedNoise": "Rician",
            },
        )
    gt = anat_groundtruth_paths(out, pid)
    save_nifti(gt["lesion_mask"], subj.lesion_mask, subj.affine)
    save_nifti(gt["atrophy_mask"], subj.atrophy_mask, subj.affine)
    save_nifti(gt["ventricle_mask"], subj.ventricle_mask, subj.affine)
    params = {k: v for k, v in subj.params.items() if not k.startswith("_")}
    write_json(gt["lesion_json"], params)
    save_nifti(gt["dseg"], subj.dseg, subj.affine)
    for contrast, matrix in subj.true_xfm.items():
        info = params["Misregistration"][contrast]
        write_json(gt[f"xfm_{contrast}"], _xfm_json(matrix, info, contrast))
    save_nifti(gt["native_to_mni"], subj.native_to_mni, subj.affine, compresslevel=1)
    transform: SubjectTransform = subj.params["_transform"]
    mni_to_native = transform.to_native(cohort.template.points()).astype(np.float32)
    save_nifti(
        gt["mni_to_native"], mni_to_native, cohort.template.affine, space_code=4, compresslevel=1
    )


def synthesize_anat(
    out_dir: str | Path,
    config: AnatSynthConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
    template: Template | None = None,
) -> Path:
    """Write a synthetic structural BIDS cohort with ground truth to ``out_dir``.

    ``template`` (``load_template(config.voxel_size)``) skips loading it again when several
    cohorts are made in one process.
    ``workers`` > 1 simulates subjects in parallel processes (joblib); each subject has its own
    random stream, so the files are the same either way. Raises :class:`ConfigError` for
    parameters out of range and :class:`InputError` for a non-empty ``out_dir``
    (``overwrite`` replaces only an earlier ``braincam synth`` dataset).
    """
    from braincam.progress import track

    config = config or AnatSynthConfig()
    config.validate()
    if workers < 1:
        raise ConfigError(f"workers must be >= 1; got {workers!r}")
    out = Path(out_dir)
    clear_previous(out, overwrite)  # before the slow template work: a refusal comes at once
    cohort = _prepare_cohort(config, template)
    out.mkdir(parents=True, exist_ok=True)
    people = draw_anat_participants(config)
    _write_dataset_files(out, config, people)
    if workers == 1:
        done = (_make_subject(out, cohort, config, person) for person in people)
    else:
        from joblib import Parallel, delayed

        run = Parallel(n_jobs=workers, return_as="generator_unordered")
        done = run(delayed(_make_subject)(out, cohort, config, person) for person in people)
    for _ in track(
        done, "Synthesizing subjects (T1w/T2w/FLAIR)", total=len(people), disable=not progress
    ):
        pass
    return out


def _make_subject(
    out: Path, cohort: _AnatCohort, config: AnatSynthConfig, person: AnatParticipant
) -> str:
    _write_subject(out, cohort, simulate_subject(cohort, config, person), person.participant_id)
    return person.participant_id
