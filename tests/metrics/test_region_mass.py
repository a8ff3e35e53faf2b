"""Brain regions: heatmap mass per atlas region and lobe, rankings, class differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from braincam.errors import InputError
from braincam.metrics.atlas import (
    OUTSIDE,
    WHITE_MATTER_ID,
    Atlas,
    load_atlas,
    lobe_of,
    resample_atlas,
)
from braincam.metrics.region_mass import (
    lobe_mass,
    rank_regions,
    region_differences,
    region_mass,
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
