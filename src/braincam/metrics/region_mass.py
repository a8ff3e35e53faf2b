"""Heatmap mass per atlas region and lobe, ranked per class, and the differences between classes.

Maps must already lie on the atlas grid in MNI space (:mod:`braincam.metrics.regions` puts them
there; :func:`braincam.metrics.atlas.resample_atlas` puts an atlas on their grid).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from braincam.errors import InputError
from braincam.metrics.atlas import OUTSIDE, Atlas


def _maps_tensor(maps: object, shape: tuple[int, ...]) -> Tensor:
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(np.asarray(maps, dtype=np.float32))
    if not isinstance(maps, Tensor):
        raise InputError("maps must be a tensor or array (N, X, Y, Z)", value=type(maps))
    if maps.ndim == 3:
        maps = maps[None]
    if tuple(maps.shape[1:]) != tuple(shape):
        raise InputError(
            "maps must lie on the atlas grid (use resample_atlas or warp the maps first)",
            value={"maps": tuple(maps.shape[1:]), "atlas": tuple(shape)},
        )
    if not torch.isfinite(maps).all():
        raise InputError("maps contain NaN or infinite values")
    return maps


def region_mass(
    maps: Tensor | np.ndarray, atlas: Atlas, *, meta: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Heatmap mass per atlas region, one row per (map, region), batched.

    Negative values are clipped to 0 (mass is positive relevance). Columns: ``map``, the ``meta``
    columns (one ``meta`` row per map), ``region_id``, ``region``, ``lobe``, ``voxels``, ``mass``,
    ``fraction`` (of the map's total mass; region 0 "outside" included, so fractions sum to 1;
    NaN for an all-zero map) and ``enrichment`` = fraction / share of the grid's voxels in the
    region (1 = what a uniform map gives).
    """
    maps = _maps_tensor(maps, atlas.shape)
    n = len(maps)
    if meta is not None and (not isinstance(meta, pd.DataFrame) or len(meta) != n):
        raise InputError("meta must be a DataFrame with one row per map", value=type(meta))
    ids, inverse, voxels = atlas.index
    inv = torch.as_tensor(inverse, dtype=torch.long, device=maps.device)
    flat = maps.flatten(1).double().clamp_min(0)
    mass = torch.zeros((n, len(ids)), dtype=torch.float64, device=maps.device)
    mass.index_add_(1, inv, flat)
    total = mass.sum(1, keepdim=True)
    fraction = torch.where(total > 0, mass / total.clamp_min(1e-300), torch.nan)
    share = voxels / voxels.sum()
    unknown = [int(i) for i in ids if int(i) not in atlas.names]
    if unknown:
        raise InputError("atlas labels without a name", value=unknown)
    frame = pd.DataFrame(
        {
            "map": np.repeat(np.arange(n), len(ids)),
            "region_id": np.tile(ids, n),
            "region": np.tile([atlas.names[int(i)] for i in ids], n),
            "lobe": np.tile([atlas.lobes[int(i)] for i in ids], n),
            "voxels": np.tile(voxels, n),
            "mass": mass.cpu().numpy().ravel(),
            "fraction": fraction.cpu().numpy().ravel(),
        }
    )
    frame["enrichment"] = frame["fraction"] / np.tile(share, n)
    if meta is not None:
        extra = meta.reset_index(drop=True)
        extra = extra.drop(columns=[c for c in extra.columns if c in frame.columns])
        frame = pd.concat(
            [
                frame[["map"]],
                extra.iloc[frame["map"]].reset_index(drop=True),
                frame.drop(columns="map"),
            ],
            axis=1,
        )
    return frame


_VALUE_COLUMNS = ["voxels", "mass", "fraction", "enrichment"]


def lobe_mass(regions: pd.DataFrame) -> pd.DataFrame:
    """Sum a :func:`region_mass` table per lobe (same columns, ``lobe`` instead of regions)."""
    keys = [c for c in regions.columns if c not in [*_VALUE_COLUMNS, "region_id", "region"]]
    out = regions.groupby(keys, sort=False, dropna=False)[["voxels", "mass", "fraction"]].sum(
        min_count=1
    )
    out = out.reset_index()
    share = out["voxels"] / out.groupby("map")["voxels"].transform("sum")
    out["enrichment"] = out["fraction"] / share
    return out


def _group_columns(table: pd.DataFrame, by: Sequence[str] | None, default: Sequence[str]) -> list:
    if by is None:
        return [c for c in default if c in table.columns]
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in table.columns]
    if missing:
        raise InputError(f"columns missing from the table {list(table.columns)}", value=missing)
    return by


def rank_regions(
    table: pd.DataFrame,
    *,
    by: Sequence[str] | None = None,
    value: str = "fraction",
) -> pd.DataFrame:
    """Mean ``value`` per region (or lobe, for a :func:`lobe_mass` table) within groups, ranked.

    ``by`` defaults to whichever of ``model``, ``method``, ``label`` the table has (so: a ranked
    table per class and model). The unlabelled "outside" is left out of the ranking. Columns: the
    groups, the unit (``region``/``lobe``), ``mean``, ``std``, ``n_maps``, ``rank`` (1 = most).
    """
    if value not in _VALUE_COLUMNS:
        raise InputError(f"value must be one of {_VALUE_COLUMNS}", value=value)
    by = _group_columns(table, by, ("model", "method", "label"))
    unit = ["region_id", "region", "lobe"] if "region" in table.columns else ["lobe"]
    keep = table[table["lobe"] != OUTSIDE]
    g = keep.groupby([*by, *unit], sort=False, dropna=False)[value]
    out = g.agg(mean="mean", std="std", n_maps="count").reset_index()
    out["rank"] = (
        out.groupby(by, sort=False)["mean"].rank(ascending=False, method="min")
        if by
        else out["mean"].rank(ascending=False, method="min")
    )
    return out.sort_values([*by, "rank"], kind="stable").reset_index(drop=True)


def region_differences(
    table: pd.DataFrame,
    *,
    class_col: str = "label",
    by: Sequence[str] | None = None,
    value: str = "fraction",
) -> pd.DataFrame:
    """Regions (or lobes) whose ``value`` differs most between each pair of classes.

    One row per (group, class pair, region): ``mean_a``, ``mean_b``, ``diff`` = a − b, Cohen's
    ``d`` (pooled SD), Welch's ``t`` and ``p`` (NaN with fewer than two maps per class), ordered by
    ``|diff|`` with a ``rank``. Each map is one observation: average slices per subject first if
    subjects, not slices, are the unit of interest.
    """
    if value not in _VALUE_COLUMNS:
        raise InputError(f"value must be one of {_VALUE_COLUMNS}", value=value)
    if class_col not in table.columns:
        raise InputError("class column missing from the table", value=class_col)
    by = _group_columns(table, by, ("model", "method"))
    unit = ["region_id", "region", "lobe"] if "region" in table.columns else ["lobe"]
    keep = table[table["lobe"] != OUTSIDE].dropna(subset=[value])
    parts = []
    groups = keep.groupby(by, sort=True, dropna=False) if by else [((), keep)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        # count, mean and sample variance per (region, class) in one pass; each class pair is
        # then a vectorized join over regions (no Python loop over regions)
        per_class = part.groupby([*unit, class_col], sort=False)[value].agg(
            ["count", "mean", "var"]
        )
        classes = sorted(part[class_col].dropna().unique().tolist())
        for a, b in itertools.combinations(classes, 2):
            pair = pd.merge(
                per_class.xs(a, level=class_col),
                per_class.xs(b, level=class_col),
                left_index=True,
                right_index=True,
                suffixes=("_a", "_b"),
            )
            if pair.empty:
                continue
            parts.append(
                _class_pair_stats(pair).assign(
                    **dict(zip(by, key, strict=True)), class_a=a, class_b=b
                )
            )
    out = pd.concat(parts) if parts else pd.DataFrame()
    if not out.empty:
        out = out.reset_index()[
            [
                *by,
                *unit,
                "class_a",
                "class_b",
                "n_a",
                "n_b",
                "mean_a",
                "mean_b",
                "diff",
                "cohen_d",
                "t",
                "p",
            ]
        ]
    if out.empty:
        return out
    out["abs_diff"] = out["diff"].abs()
    pair = [*by, "class_a", "class_b"]
    out["rank"] = out.groupby(pair, sort=False)["abs_diff"].rank(ascending=False, method="min")
    out = out.sort_values([*pair, "rank"], kind="stable").drop(columns="abs_diff")
    return out.reset_index(drop=True)


def _class_pair_stats(pair: pd.DataFrame) -> pd.DataFrame:
    """Mean difference, Cohen's d (pooled SD) and Welch's t-test per region of a class pair.

    ``pair`` has ``count_a, mean_a, var_a, count_b, mean_b, var_b`` (sample variances). With
    fewer than two maps in a class, or no variance at all, d, t and p are NaN.
    """
    from scipy import stats

    na, nb = pair["count_a"].to_numpy(float), pair["count_b"].to_numpy(float)
    va, vb = pair["var_a"].to_numpy(float), pair["var_b"].to_numpy(float)
    diff = pair["mean_a"].to_numpy(float) - pair["mean_b"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
        ok = (na > 1) & (nb > 1) & (pooled > 0)
        se2a, se2b = va / na, vb / nb
        t = diff / np.sqrt(se2a + se2b)
        df = (se2a + se2b) ** 2 / (se2a**2 / (na - 1) + se2b**2 / (nb - 1))
        p = 2 * stats.t.sf(np.abs(t), df)
        d = diff / pooled
    nan = np.full_like(diff, np.nan)
    return pd.DataFrame(
        {
            "n_a": na.astype(int),
            "n_b": nb.astype(int),
            "mean_a": pair["mean_a"].to_numpy(float),
            "mean_b": pair["mean_b"].to_numpy(float),
            "diff": diff,
            "cohen_d": np.where(ok, d, nan),
            "t": np.where(ok, t, nan),
            "p": np.where(ok, p, nan),
        },
        index=pair.index,
    )
