"""Per-method verdicts of ``evaluate-cams``: stays inside the brain (the shortcut alarm),
localizes, faithful, passes randomization, perturbation — each a figure, its chance baseline
and a boolean verdict (None when the family did not run or has no data). The report's verdict
table shows exactly these values; nothing is recomputed there (:mod:`braincam.report.verdicts`,
audited by :mod:`braincam.report.audit`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["verdicts"]


def _num(value: Any) -> float | None:
    """A figure for a verdict: None when missing or NaN (then the verdict is None too)."""
    return None if value is None or value != value else float(value)


def _row(rows: Any, **match: str) -> dict[str, Any] | None:
    for row in rows or []:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def verdicts(summary: dict[str, Any], methods: tuple[str, ...]) -> dict[str, Any]:
    """Per method: localizes, faithful, passes randomization, perturbation — each a figure, its
    chance baseline and a boolean verdict (None when the family did not run or has no data).

    The report's verdict table shows exactly these values; nothing is recomputed there.
    """
    out = {}
    # A volume store has no slice level: its maps are scored as volumes.
    levels = {r.get("level") for r in summary.get("localization") or []}
    level = "volume" if levels == {"volume"} else "slice"
    for method in methods:
        loc = _row(summary.get("localization"), method=method, level=level)
        uni = _row(summary.get("localization"), method="baseline:uniform", level=level)
        mass = _num((loc or {}).get("relevance_mass"))
        chance = _num((uni or {}).get("relevance_mass"))
        localizes = {
            "metric": f"relevance mass in the ground-truth region ({level}s)",
            "figure": mass,
            "baseline": chance,
            "verdict": None if mass is None or chance is None else bool(mass > chance),
            "rule": "the map's mass inside the region exceeds a uniform map's (the region's "
            "share of the slice)",
        }
        faith = summary.get("faithfulness")
        d, i = (
            _row(faith, method=method, curve="deletion"),
            _row(faith, method=method, curve="insertion"),
        )
        rd = _row(faith, method="baseline:random-order", curve="deletion")
        ri = _row(faith, method="baseline:random-order", curve="insertion")
        values = [None if r is None else _num(r.get("auc")) for r in (d, i, rd, ri)]
        faithful = {
            "metric": "deletion AUC (lower is better)",
            "figure": values[0],
            "baseline": values[2],
            "verdict": None
            if any(v is None for v in values)
            else bool(values[0] < values[2] and values[1] > values[3]),
            "rule": "deletion AUC below and insertion AUC above the random order's",
        }
        san = (summary.get("sanity") or {}).get(method)
        figure = None
        if san is not None:
            finals = [
                v for v in (san["final_spearman"], san["final_spearman_abs"]) if v is not None
            ]
            figure = max(finals) if finals else None
        randomization = {
            "metric": "Spearman, original vs fully randomized maps",
            "figure": figure,
            "baseline": None if san is None else san.get("random_pairs_spearman"),
            "verdict": None if san is None else not san["flagged"],
            "rule": "passes unless the mean (absolute) Spearman after full randomization exceeds "
            f"{san['threshold'] if san else 0.5}; baseline: two unrelated maps",
        }
        pert = ((summary.get("perturbation") or {}).get("methods") or {}).get(method)
        comp = None if pert is None else pert["comparison"]
        perturbation = {
            "metric": "drop of target probability, CAM region (imputed)",
            "figure": None if comp is None else comp["region_drop"],
            "baseline": None if comp is None else comp["random_drop"],
            "verdict": None if comp is None else comp["hurts_more"],
            "rule": "CAM region hurts more than 20 random regions of its shape per image "
            "(95 % CI of the paired difference above 0) and hurts at all (95 % CI of its own "
            "drop above 0)",
            "ci_low": None if comp is None else comp["ci_low"],
            "ci_high": None if comp is None else comp["ci_high"],
        }
        short = ((summary.get("shortcut") or {}).get("methods") or {}).get(method)
        worst = None
        if short is not None:
            # The figure is the region (outside the brain, or the rim) with the larger excess.
            parts = [short[k] for k in ("outside_brain", "rim") if short[k]["excess"] is not None]
            worst = max(parts, key=lambda p: p["excess"]) if parts else None
        inside_brain = {
            "metric": "share of heatmap mass outside the brain (or in the head's rim)",
            "figure": None if worst is None else _num(worst["mass"]),
            "baseline": None if worst is None else _num(worst["area"]),
            "verdict": None if short is None or short["alarm"] is None else not short["alarm"],
            "rule": "stays inside unless the shortcut alarm "
            + (short["rule"] if short else "fires"),
            "ci_low": None if worst is None else _num(worst["ci_low"]),
            "ci_high": None if worst is None else _num(worst["ci_high"]),
        }
        out[method] = {
            "inside_brain": inside_brain,
            "localizes": localizes,
            "faithful": faithful,
            "randomization": randomization,
            "perturbation": perturbation,
        }
    return out
