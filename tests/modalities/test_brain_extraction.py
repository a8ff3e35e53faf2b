"""Brain extraction (MNI152 registration + refinement): a synthetic head at 4 mm (fast) and a
real head from Debian's ``mricron-data`` (slow tier)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from braincam.errors import ConfigError, InputError
from braincam.imaging.masks import dice
from braincam.modalities.anat import brain_extraction as be
from braincam.synth.anatomy import load_template, rotation_matrix

# Debian's mricron-data: the Colin-27 T1 with skull and its brain-extracted version (BET).
MRICRON = Path("/usr/share/mricron/templates")
REAL_T1 = MRICRON / "ch2.nii.gz"
REAL_BRAIN = MRICRON / "ch2bet.nii.gz"

GAP_MM = 6.0  # dark CSF + bone between the brain and the scalp
SCALP_MM = 8.0  # bright scalp (fat) beyond the gap


def _rigid_about(
    deg: tuple[float, float, float], mm: tuple[float, float, float], centre
) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(np.deg2rad(deg))
    m[:3, 3] = np.asarray(centre) + np.asarray(mm) - m[:3, :3] @ np.asarray(centre)
    return m


def synthetic_head(voxel_mm: float = 4.0, seed: int = 0):
    """A T1w-like head: MNI152 tissue (CSF dark, GM grey, WM bright) inside a dark gap and a
    bright scalp shell, Gaussian noise, the header moved by a known rigid motion.

    Returns ``(image, brain, shell)``: the NIfTI and the true brain and shell masks (voxels).
    """
    tpl = load_template(voxel_mm)
    pad = int(np.ceil((GAP_MM + SCALP_MM) / voxel_mm)) + 3
    gm, wm, csf = (np.pad(a, pad) for a in (tpl.gm, tpl.wm, tpl.csf))
    brain = (gm + wm) >= 0.5
    envelope = ndi.binary_fill_holes((gm + wm + csf) >= 0.5)
    dist = ndi.distance_transform_edt(~envelope, sampling=voxel_mm)
    shell = (dist > GAP_MM) & (dist <= GAP_MM + SCALP_MM)
    rng = np.random.default_rng(seed)
    t1 = 0.15 * csf + 0.55 * gm + 0.85 * wm
    t1 = t1 + 0.05 * ((dist > 0) & (dist <= GAP_MM)) + 0.9 * shell
    t1 = np.abs(t1 + 0.02 * rng.standard_normal(t1.shape)).astype(np.float32)
    affine = tpl.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, pad)
    centre = affine[:3, :3] @ (np.asarray(t1.shape) / 2.0) + affine[:3, 3]
    affine = _rigid_about((8.0, -6.0, 5.0), (6.0, -9.0, 7.0), centre) @ affine
    return nib.Nifti1Image(t1, affine), brain, shell


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    img, brain, shell = synthetic_head()
    path = tmp_path_factory.mktemp("head") / "sub-01_T1w.nii.gz"
    nib.save(img, path)
    return nib.load(path), brain, shell


@pytest.fixture(scope="module")
def extracted(head):
    img, _, _ = head
    return be.extract_brain(img, subject="sub-01")


def test_synthetic_head_keeps_the_brain_and_drops_the_shell(head, extracted) -> None:
    _, brain, shell = head
    mask = extracted.mask_array
    assert mask.shape == brain.shape
    assert np.array_equal(extracted.mask.affine, head[0].affine)
    assert mask[brain].mean() >= 0.95  # the brain is kept (a known yes)
    assert mask[shell].mean() <= 0.01  # the scalp is excluded
    assert dice(mask, brain) >= 0.9
    assert extracted.quality > 0.8
    assert [s.name for s in extracted.stages] == ["rigid", "similarity", "affine"]


@pytest.mark.parametrize("grow", [1, -1])
def test_refinement_snaps_a_misplaced_mask_to_the_brain(head, grow) -> None:
    # A mask one voxel too big (into the dark gap) or too small (into the cortex), as a
    # registration error would leave it: the refinement moves it back towards the brain and
    # never reaches the scalp.
    img, brain, shell = head
    data = np.asarray(img.dataobj, dtype=np.float32)
    filled = ndi.binary_fill_holes(brain)  # with the ventricles, as a template mask has them
    if grow > 0:
        wrong = ndi.binary_dilation(filled)
    else:
        wrong = ndi.binary_erosion(filled)
    params = be.BrainExtractionParams(band_mm=4.5)
    refined, threshold = be.refine_mask(data, wrong, img.header.get_zooms(), params)
    assert 0.15 < threshold < 0.55  # between the gap/CSF and grey matter
    assert dice(refined, filled) > dice(wrong, filled) + 0.02
    assert not refined[shell].any()


def test_otsu_head_mask_includes_the_shell(head) -> None:
    img, brain, shell = head
    otsu = be.head_mask(img)
    assert otsu[shell].mean() >= 0.9  # today's mask keeps the scalp (a known no)
    assert otsu[brain].mean() >= 0.95


def test_transform_recovers_the_header_motion(head, extracted) -> None:
    # The subject is the template moved by a known rigid motion: the matrix (subject RAS →
    # MNI RAS) composed with that motion is close to the identity.
    img, _, _ = head
    tpl = load_template(4.0)
    pad = int(np.ceil((GAP_MM + SCALP_MM) / 4.0)) + 3
    unmoved = tpl.affine.copy()
    unmoved[:3, 3] -= unmoved[:3, :3] @ np.full(3, pad)
    motion = img.affine @ np.linalg.inv(unmoved)  # template RAS → subject RAS
    residual = extracted.matrix @ motion
    assert np.abs(residual[:3, :3] - np.eye(3)).max() < 0.05
    assert np.abs(residual[:3, 3]).max() < 3.0  # mm, on a 4 mm grid


def test_deterministic(head, extracted) -> None:
    again = be.extract_brain(head[0], subject="sub-01")
    assert np.array_equal(again.mask_array, extracted.mask_array)
    assert np.allclose(again.matrix, extracted.matrix, atol=1e-4)


def test_record_is_json_ready(extracted) -> None:
    import json

    record = json.loads(json.dumps(extracted.to_dict()))
    assert record["method"] == "mni152-affine+refine"
    assert record["params"]["seed"] == 0
    assert isinstance(record["quality"], float)
    assert len(record["matrix_ras"]) == 4
    assert 800 < record["volume_ml"] < 2500


def test_templates_load_without_network(monkeypatch) -> None:
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    load_mni152_template.cache_clear()
    assert load_mni152_template(resolution=1).shape == (197, 233, 189)
    assert int(np.asarray(load_mni152_brain_mask(resolution=1).dataobj).sum()) > 1_000_000


def test_no_convergence_names_the_file_and_value(head) -> None:
    img = head[0]
    params = be.BrainExtractionParams(min_quality=0.99)
    with pytest.raises(be.BrainExtractionError, match="did not converge") as info:
        be.extract_brain(img, params=params, subject="sub-01")
    message = str(info.value)
    assert "sub-01_T1w.nii.gz" in message and "subject=sub-01" in message and "value=" in message
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((20, 20, 20, 2), np.float32), "3-D"),
        (np.full((20, 20, 20), 3.0, np.float32), "constant"),
        (np.pad(np.full((18, 18, 18), np.nan, np.float32), 1), "non-finite"),
    ],
)
def test_bad_images_raise_input_errors(tmp_path, data, match) -> None:
    path = tmp_path / "bad_T1w.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputError, match=match) as info:
        be.extract_brain(nib.load(path))
    assert "bad_T1w.nii.gz" in str(info.value)


def test_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="band_mm"):
        be.BrainExtractionParams(band_mm=-1.0)
    with pytest.raises(ConfigError, match="sampling"):
        be.BrainExtractionParams(sampling=0.0)


def test_dice() -> None:
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4, 4), bool)
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


# --------------------------------------------------------------------------- real head (slow)


def _require_mricron_data(paths: tuple[Path, ...] = (REAL_T1, REAL_BRAIN)) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"mricron-data missing in CI ({missing}): .ci/run should have installed it")
        pytest.skip(
            f"Debian package mricron-data not installed (apt-get install mricron-data): {missing}"
        )


@pytest.mark.slow
def test_real_head_dice_against_the_reference_brain() -> None:
    _require_mricron_data()
    t1 = nib.load(REAL_T1)
    reference = np.asarray(nib.load(REAL_BRAIN).dataobj) > 0
    result = be.extract_brain(t1, subject="colin27")
    assert dice(result.mask_array, reference) >= 0.95
    assert dice(be.head_mask(t1), reference) < 0.8  # the head mask is not a brain mask
    assert result.quality > 0.7


def test_real_head_guard_skips_locally_and_fails_under_ci(monkeypatch, tmp_path) -> None:
    absent = (tmp_path / "absent.nii.gz",)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="mricron-data"):
        _require_mricron_data(absent)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="mricron-data missing in CI"):
        _require_mricron_data(absent)
