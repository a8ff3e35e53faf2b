"""Heatmap consistency (the structural MRI study): how alike are the maps, and where do they point.

- :func:`correlation_matrix` — Pearson correlation between every pair of maps, batched: flattened
  maps are centred and scaled to unit norm, so the Gram matrix is the correlation matrix.
- :func:`consistency` — mean pairwise correlation within groups of a table (one row per map):
  across the slices of one subject, the subjects of one class, models or methods.
  :func:`consistency_levels` runs the four standard groupings at once.
- :func:`frequency_maps` — per class, how often each location is in the top X % of a map.

All maps in one call share a grid ``(N, *spatial)`` (2D slices or 3D volumes). A constant map has
no correlation with anything: its pairs are NaN and are left out of the means (``n_pairs`` counts
the defined pairs only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from braincam.errors import InputError

#: Default share of locations that count as a map's "top" region.
TOP_FRACTION = 0.1


def _as_maps(maps: object, name: str = "maps") -> Tensor:
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, Tensor) or maps.ndim < 2:
        shape = getattr(maps, "shape", maps)
        raise InputError(f"{name} must be a tensor (N, *spatial)", value=shape)
    if not torch.isfinite(maps).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return maps


def _unit_rows(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Centred, unit-norm flattened maps (float64) and a mask of the non-constant ones."""
    x = maps.flatten(1).double()
    x = x - x.mean(1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    ok = norm.squeeze(1) > 0
    return x / norm.clamp_min(1e-300), ok


def correlation_matrix(maps: Tensor, others: Tensor | None = None) -> Tensor:
    """Pearson correlation of every map with every other map → ``(N, N)`` (or ``(N, M)``).

    Rows or columns of constant maps are NaN.
    """
    maps = _as_maps(maps)
    a, ok_a = _unit_rows(maps)
    if others is None:
        b, ok_b = a, ok_a
    else:
        others = _as_maps(others, "others")
        if others.shape[1:] != maps.shape[1:]:
            raise InputError(
                "maps and others must share a grid", value=(maps.shape[1:], others.shape[1:])
            )
        b, ok_b = _unit_rows(others)
    r = (a @ b.T).clamp(-1.0, 1.0)
    defined = ok_a[:, None] & ok_b[None, :]
    return torch.where(defined, r, torch.full_like(r, math.nan))


def mean_pairwise_correlation(maps: Tensor) -> float:
    """Mean correlation over all distinct pairs of maps (NaN if no pair is defined)."""
    r = correlation_matrix(maps)
    iu = torch.triu_indices(len(r), len(r), offset=1)
    vals = r[iu[0], iu[1]]
    vals = vals[~torch.isnan(vals)]
    return float(vals.mean()) if len(vals) else math.nan


def _as_table(table: object, n: int) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise InputError("table must be a pandas DataFrame with one row per map", value=type(table))
    if len(table) != n:
        raise InputError("table must have one row per map", value={"rows": len(table), "maps": n})
    return table.reset_index(drop=True)


def _columns(table: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        have = list(table.columns)
        raise InputError(f"{what}: columns missing from the table {have}", value=missing)


def consistency(
    maps: Tensor,
    table: pd.DataFrame,
    by: Sequence[str],
    *,
    exclude_same: str | None = None,
) -> pd.DataFrame:
    """Mean pairwise Pearson correlation of maps within each group of ``table``.

    ``table`` has one row per map (row i ↔ ``maps[i]``); ``by`` names the columns that define a
    group. ``exclude_same`` names a column whose equal values make a pair not count — e.g.
    ``"participant_id"`` when comparing subjects of one class, so two slices of the same subject
    are not taken for agreement between subjects.

    Returns tidy rows: the ``by`` columns, ``n_maps``, ``n_pairs``, ``mean_r``, ``std_r``,
    ``min_r``, ``max_r``. Groups with no countable pair are kept with ``n_pairs = 0`` and NaN.
    """
    maps = _as_maps(maps)
    table = _as_table(table, len(maps))
    by = [by] if isinstance(by, str) else list(by)
    _columns(table, by + ([exclude_same] if exclude_same else []), "consistency")
    # Centre and scale every map once; a group's correlations are then one small matrix product.
    unit, ok = _unit_rows(maps)
    codes = (
        torch.as_tensor(pd.factorize(table[exclude_same])[0]) if exclude_same is not None else None
    )
    rows = []
    for key, idx in table.groupby(by, sort=True, dropna=False).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        vals = _pair_values(unit, ok, codes, torch.as_tensor(idx, dtype=torch.long))
        n = len(vals)
        rows.append(
            dict(zip(by, key, strict=True))
            | {
                "n_maps": len(idx),
                "n_pairs": n,
                "mean_r": float(vals.mean()) if n else math.nan,
                "std_r": float(vals.std(unbiased=False)) if n else math.nan,
                "min_r": float(vals.min()) if n else math.nan,
                "max_r": float(vals.max()) if n else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _pair_values(unit: Tensor, ok: Tensor, codes: Tensor | None, sel: Tensor) -> Tensor:
    """Defined correlations of the distinct pairs among ``unit[sel]`` (pairs of equal ``codes``
    excluded)."""
    if len(sel) < 2:  # most groups of the across-models/methods levels hold a single map
        return unit.new_empty(0)
    a = unit[sel]
    r = (a @ a.T).clamp(-1.0, 1.0)
    pair = torch.triu(torch.ones_like(r, dtype=torch.bool), diagonal=1)
    pair &= ok[sel][:, None] & ok[sel][None, :]
    if codes is not None:
        c = codes[sel]
        pair &= c[:, None] != c[None, :]
    return r[pair]


#: The four groupings of the study: (name, group-by columns, column whose equal values don't pair).
LEVELS: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("slices_of_subject", ("model", "method", "participant_id", "axis"), None),
    ("subjects_of_class", ("model", "method", "label", "axis", "position"), "participant_id"),
    ("across_models", ("method", "participant_id", "axis", "position"), "model"),
    ("across_methods", ("model", "participant_id", "axis", "position"), "method"),
)


def consistency_levels(maps: Tensor, table: pd.DataFrame) -> pd.DataFrame:
    """All four consistency levels of :data:`LEVELS` as one tidy table (column ``level``).

    ``table`` holds ``model``, ``method``, ``participant_id``, ``label``, ``axis``, ``position``
    per map (the slice store's index plus the model and method). For 3D maps give ``axis`` and
    ``position`` one constant value (e.g. ``"volume"``, 0). A level whose columns are missing is
    skipped; "subjects of one class" compares maps at the same slice position, since maps of
    different slices do not share anatomy.
    """
    maps = _as_maps(maps)
    table = _as_table(table, len(maps))
    parts = []
    for name, by, exclude in LEVELS:
        needed = [*by, exclude] if exclude else list(by)
        if any(c not in table.columns for c in needed):
            continue
        part = consistency(maps, table, by, exclude_same=exclude)
        part.insert(0, "level", name)
        parts.append(part)
    if not parts:
        raise InputError(
            "consistency_levels: the table has none of the level column sets",
            value=list(table.columns),
        )
    return pd.concat(parts, ignore_index=True)


def top_mask(maps: Tensor, top_fraction: float = TOP_FRACTION) -> Tensor:
    """Boolean mask of each map's top ``top_fraction`` of locations, ``(N, *spatial)``.

    A location is in the top region if its value is ≥ the map's k-th largest value,
    k = ceil(top_fraction · locations) (ties at the threshold are included), and above the map's
    minimum (so the flat background of a sparse map, and a constant map, are never "top").
    """
    maps = _as_maps(maps)
    if not 0 < top_fraction <= 1:
        raise InputError("top_fraction must be in (0, 1]", value=top_fraction)
    flat = maps.flatten(1)
    k = max(1, math.ceil(top_fraction * flat.shape[1]))
    kth = flat.topk(k, dim=1).values[:, -1:]
    lo = flat.min(1, keepdim=True).values
    return ((flat >= kth) & (flat > lo)).reshape(maps.shape)


def frequency_maps(
    maps: Tensor,
    labels: Sequence[object] | np.ndarray | pd.Series,
    *,
    top_fraction: float = TOP_FRACTION,
) -> tuple[list[object], Tensor, Tensor]:
    """Per class, the fraction of its maps in which each location is in the top region.

    Returns ``(classes, freq, counts)``: ``classes`` sorted, ``freq`` of shape
    ``(len(classes), *spatial)`` with values in [0, 1], ``counts`` the number of maps per class.
    """
    maps = _as_maps(maps)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(maps):
        raise InputError(
            "labels must give one class per map", value={"labels": labels.shape, "maps": len(maps)}
        )
    codes, classes = pd.factorize(labels, sort=True)
    codes_t = torch.as_tensor(codes, dtype=torch.long, device=maps.device)
    top = top_mask(maps, top_fraction).flatten(1).double()
    n_cls = len(classes)
    sums = torch.zeros((n_cls, top.shape[1]), dtype=torch.float64, device=maps.device)
    sums.index_add_(0, codes_t, top)
    counts = torch.bincount(codes_t, minlength=n_cls)
    freq = (sums / counts[:, None].clamp_min(1)).float().reshape((n_cls, *maps.shape[1:]))
    return list(classes), freq, counts
