"""Synthetic diffusion-MRI cohort with known ground truth (``braincam synth``).

Each subject is the MNI152 template scaled, rotated, shifted and smoothly warped
(:mod:`braincam.synth.anatomy`), given tissue-dependent diffusion tensors, and imaged with a
realistic single-shell scheme (``S = S0·exp(−b gᵀDg)`` plus Rician noise). The ``old`` group has
FA reduced inside a region defined in MNI space. Output is a BIDS dataset plus
``derivatives/groundtruth`` (effect mask, noise-free FA, coordinate maps to and from MNI); see
docs/architecture.md and docs/synth.md. The same seed gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from braincam.config.synth import SynthConfig
from braincam.errors import ConfigError
from braincam.imaging.groundtruth import dwi_groundtruth_paths as groundtruth_paths
from braincam.imaging.groundtruth import mni_region_path
from braincam.imaging.nifti import save_nifti
from braincam.imaging.templates import TEMPLATE_SPACE
from braincam.io import write_json, write_text_atomic
from braincam.synth.anatomy import (
    RandomSphere,
    SubjectTransform,
    Template,
    grid_coordinates,
    load_template,
    random_sphere_for,
    region_mask,
    sample_volume,
    sphere_mask,
    tract_weights,
    voxel_indices,
    white_matter_orientation,
)
from braincam.synth.common import (
    _check_output,
    _remove_previous,
    add_rician_noise,
    native_affine,
    native_shape,
    participant_ids,
    software,
    subject_transform,
    write_cohort_files,
)

GROUPS = ("young", "old")

# Tissue properties (mm²/s for diffusivities; S0 in scanner units, T2-weighted b=0 contrast).
FA_GM, FA_CSF = 0.15, 0.05
MD_WM, MD_GM, MD_CSF = 0.7e-3, 0.8e-3, 3.0e-3
S0_WM, S0_GM, S0_CSF = 1000.0, 1300.0, 2500.0


@dataclass(frozen=True)
class Participant:
    """One synthetic subject's table row."""

    participant_id: str
    age: int
    group: str
    index: int


# --------------------------------------------------------------------------- acquisition


def gradient_directions(n: int) -> NDArray[np.float64]:
    """``n`` unit vectors spread over a hemisphere: Fibonacci start, then DIPY's electrostatic
    repulsion (antipodally symmetric). Deterministic: no random start."""
    from dipy.core.sphere import HemiSphere, disperse_charges

    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1.0 + np.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z**2)
    start = np.column_stack([r * np.cos(phi), r * np.sin(phi), z])
    hemi, _ = disperse_charges(HemiSphere(xyz=start), 300)
    vecs = np.asarray(hemi.vertices, dtype=np.float64)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def gradient_scheme(
    directions: int, b0_volumes: int, bvalue: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """b-values ``(N,)`` and unit gradient vectors ``(N, 3)`` (zeros for b=0), with the b=0
    volumes spread evenly through the series starting at volume 0."""
    total = directions + b0_volumes
    b0_at = np.linspace(0, total, b0_volumes, endpoint=False).astype(int)
    is_b0 = np.zeros(total, dtype=bool)
    is_b0[b0_at] = True
    bvals = np.where(is_b0, 0.0, bvalue)
    bvecs = np.zeros((total, 3))
    bvecs[~is_b0] = gradient_directions(directions)
    return bvals, bvecs


def tensor_eigenvalues(
    fa: NDArray[np.floating], md: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axial and radial diffusivity of an axially symmetric tensor with exactly this FA and MD.

    With λ∥ = MD(1 + 2k), λ⊥ = MD(1 − k): FA = 3k / √(3 + 6k²), so k = FA / √(3 − 2 FA²).
    """
    fa = np.clip(np.asarray(fa, dtype=np.float64), 0.0, 0.99)
    md = np.asarray(md, dtype=np.float64)
    k = fa / np.sqrt(3.0 - 2.0 * fa**2)
    return md * (1.0 + 2.0 * k), md * (1.0 - k)


def dwi_signal(
    s0: NDArray[np.floating],
    fa: NDArray[np.floating],
    md: NDArray[np.floating],
    directions: NDArray[np.floating],
    bvals: NDArray[np.floating],
    bvecs: NDArray[np.floating],
) -> NDArray[np.float32]:
    """Noise-free ``S0·exp(−b gᵀDg)`` for ``M`` voxels and ``N`` volumes → ``(M, N)``.

    ``directions`` are the voxels' unit principal eigenvectors in the same frame as ``bvecs``;
    for an axially symmetric tensor gᵀDg = λ⊥ + (λ∥ − λ⊥)(g·e)².
    """
    l_par, l_perp = tensor_eigenvalues(fa, md)
    cos2 = (np.asarray(directions, dtype=np.float64) @ np.asarray(bvecs, dtype=np.float64).T) ** 2
    adc = l_perp[:, None] + (l_par - l_perp)[:, None] * cos2
    return (np.asarray(s0)[:, None] * np.exp(-np.asarray(bvals)[None, :] * adc)).astype(np.float32)


# --------------------------------------------------------------------------- NIfTI / BIDS writing


def draw_participants(config: SynthConfig) -> list[Participant]:
    """Balanced groups in shuffled order (ids do not give the group away), integer ages."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC0407]))
    n = config.subjects
    groups = np.array([GROUPS[0]] * ((n + 1) // 2) + [GROUPS[1]] * (n // 2))
    rng.shuffle(groups)
    out = []
    for i, (pid, group) in enumerate(zip(participant_ids(n), groups, strict=True)):
        lo, hi = config.young_ages if group == GROUPS[0] else config.old_ages
        out.append(Participant(pid, int(rng.integers(lo, hi + 1)), str(group), i))
    return out


def _write_dataset_files(
    out: Path, config: SynthConfig, people: list[Participant], sphere: RandomSphere | None
) -> None:
    levels = {
        "young": f"{config.young_ages[0]}–{config.young_ages[1]} years",
        "old": f"{config.old_ages[0]}–{config.old_ages[1]} years; FA reduced by "
        f"{config.effect_size:g} in region {config.effect_region!s}",
    }
    gt = write_cohort_files(
        out,
        name="braincam synthetic diffusion MRI cohort",
        people=people,
        group_description="Age group",
        levels=levels,
    )
    settings = config.model_dump()
    settings["effect_region"] = str(config.effect_region)
    if not np.isfinite(config.snr):
        settings["snr"] = "inf"  # strict JSON has no Infinity
    record: dict = {"config": settings, "template_space": TEMPLATE_SPACE}
    if sphere is not None:  # where the seed put a ``random`` region
        record["effect_sphere"] = sphere.to_dict()
    write_json(gt / "synth_config.json", record)


def _format_bvals(bvals: NDArray) -> str:
    return " ".join(f"{round(float(b))}" for b in bvals) + "\n"


def _format_bvecs(bvecs: NDArray) -> str:
    return "\n".join(" ".join(f"{v:.6f}" for v in row) for row in bvecs.T) + "\n"


# --------------------------------------------------------------------------- cohort geometry


@dataclass(frozen=True)
class _Cohort:
    """What every subject shares: template, region, acquisition and native grid shape."""

    template: Template
    wm_core: NDArray[np.float32]
    region: NDArray[np.bool_]
    shape: tuple[int, int, int]
    bvals: NDArray[np.float64]
    bvecs: NDArray[np.float64]  # unit vectors in the world (RAS) frame
    mni_points: NDArray[np.float64]  # voxel centres of the template grid (MNI mm)
    sphere: RandomSphere | None = None  # the drawn sphere of a ``random`` effect region


def _prepare_cohort(config: SynthConfig, template: Template | None) -> _Cohort:
    if template is None:
        template = load_template(config.voxel_size)
    elif not np.isclose(template.voxel_size, config.voxel_size):
        raise ConfigError(
            f"the template has {template.voxel_size} mm voxels but voxel_size is "
            f"{config.voxel_size} mm"
        )
    sphere = random_sphere_for(config.effect_region, template, config.seed)
    region = (
        sphere_mask(sphere, template)
        if sphere is not None
        else region_mask(config.effect_region, template)
    )
    # Deep white matter (far from cortex) gets the higher FA; σ = 3 mm.
    wm_core = ndi.gaussian_filter(template.wm, 3.0 / template.voxel_size)
    bvals, bvecs = gradient_scheme(config.directions, config.b0_volumes, config.bvalue)
    shape = native_shape(template, config)
    return _Cohort(template, wm_core, region, shape, bvals, bvecs, template.points(), sphere)


# --------------------------------------------------------------------------- one subject


def _subject(
    cohort: _Cohort, config: SynthConfig, person: Participant
) -> tuple[dict[str, NDArray], dict]:
    """Simulate one subject: images (keyed by output name) and per-subject parameters."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1, person.index]))
    tpl = cohort.template
    transform: SubjectTransform = subject_transform(rng, tpl, config)
    fa_factor = float(np.clip(1.0 + config.fa_subject_sd * rng.standard_normal(), 0.8, 1.2))
    old = person.group == GROUPS[1]

    # Centre the field of view on this subject's brain (prepare slices around the middle).
    centre = transform.to_native(tpl.brain_center_mm()[None, :])[0]
    affine = native_affine(config, centre, cohort.shape)
    mni = transform.to_mni(grid_coordinates(cohort.shape, affine))

    ijk = voxel_indices(tpl.affine, mni)  # shared by every template map sampled below
    gm, wm, csf = (
        sample_volume(getattr(tpl, name), tpl.affine, mni, indices=ijk)
        for name in ("gm", "wm", "csf")
    )
    if old and config.atrophy > 0:
        csf = csf + config.atrophy * (gm + wm)
        gm, wm = gm * (1 - config.atrophy), wm * (1 - config.atrophy)
    tissue = np.clip(gm + wm + csf, 0.0, 1.0)
    total = np.maximum(gm + wm + csf, 1e-6)

    callosal, projection = tract_weights(mni)
    wm_core = sample_volume(cohort.wm_core, tpl.affine, mni, indices=ijk)
    core = np.clip((wm_core - 0.4) / 0.5, 0.0, 1.0)
    fa_wm = np.clip(0.45 + 0.15 * core + 0.15 * np.maximum(callosal, projection), 0.45, 0.75)
    fa = (wm * fa_wm * fa_factor + gm * FA_GM + csf * FA_CSF) / total
    md = (wm * MD_WM + gm * MD_GM + csf * MD_CSF) / total
    region_frac = sample_volume(cohort.region.astype(np.float32), tpl.affine, mni, indices=ijk)
    region = (region_frac >= 0.5) & (tissue >= 0.5)
    effect = region & old
    if old:
        fa = fa * (1.0 + config.global_fa_change)
        md = md * (1.0 + config.global_md_change)
        fa = np.where(effect, fa * (1.0 - config.effect_size), fa)
    fa = np.clip(fa, 0.0, 0.95)
    fa_true = np.where(tissue >= 0.01, fa, 0.0).astype(np.float32)

    # Fibre directions: MNI frame → native (through the linear part) → voxel axes.
    inside = tissue > 1e-3
    e_mni = white_matter_orientation(mni[inside])
    e_native = e_mni @ transform.linear.T
    axes = affine[:3, :3] / config.voxel_size
    e_vox = (e_native @ axes) / np.linalg.norm(e_native, axis=1, keepdims=True)
    g_vox = cohort.bvecs @ axes  # world-frame gradients expressed on the voxel axes

    s0 = wm * S0_WM + gm * S0_GM + csf * S0_CSF
    signal = np.zeros((*cohort.shape, len(cohort.bvals)), dtype=np.float32)
    signal[inside] = dwi_signal(s0[inside], fa[inside], md[inside], e_vox, cohort.bvals, g_vox)
    sigma = 0.0 if not np.isfinite(config.snr) else S0_WM / config.snr
    noisy = add_rician_noise(rng, signal, sigma)
    dwi = np.clip(np.rint(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)

    mni_to_native = transform.to_native(cohort.mni_points)
    images = {
        "dwi": dwi,
        "affine": affine,
        "g_vox": g_vox,
        "effect_mask": effect.astype(np.uint8),
        "region_mask": region.astype(np.uint8),
        "true_fa": fa_true,
        "native_to_mni": mni.astype(np.float32),
        "mni_to_native": mni_to_native.astype(np.float32),
    }
    params = {
        "group": person.group,
        "age": person.age,
        "EffectApplied": bool(old and config.effect_size > 0),
        "EffectVoxels": int(effect.sum()),
        "RegionVoxels": int(region.sum()),
        "WhiteMatterFAFactor": round(fa_factor, 6),
        "LinearMNIToNative": np.round(transform.linear, 6).tolist(),
        "TranslationMM": np.round(transform.translation, 6).tolist(),
        "WarpMaxMM": config.warp_mm,
    }
    return images, params


def _bvecs_fsl(g_vox: NDArray, affine: NDArray) -> NDArray:
    """FSL convention: vectors on the voxel axes, x negated when the affine's determinant is
    positive (FSL treats such images as if stored radiologically)."""
    out = g_vox.copy()
    if np.linalg.det(affine[:3, :3]) > 0:
        out[:, 0] = -out[:, 0]
    return out + 0.0  # turn -0.0 into 0.0 so b=0 rows print as zeros


def _write_subject(
    out: Path, cohort: _Cohort, config: SynthConfig, person: Participant, images: dict, params
) -> None:
    pid = person.participant_id
    dwi_dir = out / pid / "dwi"
    affine = images["affine"]
    save_nifti(dwi_dir / f"{pid}_dwi.nii.gz", images["dwi"], affine, compresslevel=1)
    write_text_atomic(dwi_dir / f"{pid}_dwi.bval", _format_bvals(cohort.bvals))
    bvecs = _bvecs_fsl(images["g_vox"], affine)
    write_text_atomic(dwi_dir / f"{pid}_dwi.bvec", _format_bvecs(bvecs))
    write_json(
        dwi_dir / f"{pid}_dwi.json",
        {
            "Description": "Simulated single-shell diffusion MRI (braincam synth)",
            "SoftwareVersions": f"braincam {software()['Version']}",
            "SimulatedSNR": config.snr if np.isfinite(config.snr) else "inf",
            "SimulatedNoise": "Rician",
            "bValue": config.bvalue,
        },
    )
    gt = groundtruth_paths(out, pid)
    save_nifti(gt["effect_mask"], images["effect_mask"], affine)
    save_nifti(gt["region_mask"], images["region_mask"], affine)
    save_nifti(gt["true_fa"], images["true_fa"], affine)
    write_json(gt["true_fa"].with_name(gt["true_fa"].name.replace(".nii.gz", ".json")), params)
    # Coordinates as scaled int16: ≈ 0.003 mm steps over a 200 mm range, a third of the size
    # of float32 once compressed.
    save_nifti(gt["native_to_mni"], images["native_to_mni"], affine, on_disk=np.int16)
    save_nifti(
        gt["mni_to_native"],
        images["mni_to_native"],
        cohort.template.affine,
        space_code=4,
        on_disk=np.int16,
    )


def synthesize(
    out_dir: str | Path,
    config: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    template: Template | None = None,
    workers: int = 1,
) -> Path:
    """Write a synthetic BIDS cohort with ground truth to ``out_dir``; returns ``out_dir``.

    ``template`` (from :func:`braincam.synth.anatomy.load_template` at ``config.voxel_size``)
    skips loading it again when several cohorts are made in one process. ``workers`` > 1
    simulates subjects in parallel processes (joblib); the files are the same either way.
    Raises :class:`ConfigError` for parameters out of range and :class:`InputError` for a bad
    effect region (unknown name → the valid names are listed) or a non-empty ``out_dir``.
    """
    from braincam.progress import track

    config = config or SynthConfig()
    config.validate()
    if workers < 1:
        raise ConfigError(f"workers must be >= 1; got {workers!r}")
    out = Path(out_dir)
    stale = _check_output(out, overwrite)
    cohort = _prepare_cohort(config, template)  # checks the region before anything is written
    if stale:
        _remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    people = draw_participants(config)
    _write_dataset_files(out, config, people, cohort.sphere)
    save_nifti(
        mni_region_path(out), cohort.region.astype(np.uint8), cohort.template.affine, space_code=4
    )
    if workers == 1:
        done = (_make_subject(out, cohort, config, person) for person in people)
    else:
        from joblib import Parallel, delayed

        # Each subject has its own random stream, so the files do not depend on ``workers``.
        run = Parallel(n_jobs=workers, return_as="generator_unordered")
        done = run(delayed(_make_subject)(out, cohort, config, person) for person in people)
    for _ in track(done, "Synthesizing subjects", total=len(people), disable=not progress):
        pass
    return out


def _make_subject(out: Path, cohort: _Cohort, config: SynthConfig, person: Participant) -> str:
    images, params = _subject(cohort, config, person)
    _write_subject(out, cohort, config, person, images, params)
    return person.participant_id
