"""Lesion localization by each CAM method with the best model of a structural experiment.

    .venv/bin/python -m braincam run configs/ms-subtypes-cpu.yaml --out /tmp/ms-cpu
    .venv/bin/python benchmarks/bench_lesion_localization.py /tmp/ms-cpu

Reads what ``braincam run`` wrote: ``OUT/comparison.tsv`` (accuracy per model) and, for the
best model, ``OUT/runs/<model>/cam_eval/test/localization.tsv`` (written by ``evaluate-cams``
with the lesion masks as ground truth). The best model is chosen on the *validation* split
(``--by``, default slice accuracy, ties broken by validation AUC), never on the test split the
localization is measured on. Prints Markdown tables for BENCHMARKS.md ("Structural MRI"):
the models, then every method against the uniform and random baselines, on test slices that cut
a lesion and on the back-projected volumes; ``mass ÷ chance`` is the relevance mass over the
mask fraction (what a uniform map scores). When ``evaluate-cams`` scored lesion hit rates
(``lesion_hits.tsv``), also the lesion-level hit rate per method and level, overall and per
equivalent-diameter bin, each cell ``rate (hit/lesions)``, next to the baselines' rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from bench_eval_cams import markdown  # the same table writer (scripts run from benchmarks/)

COLUMNS = {
    "method": "method",
    "level": "level",
    "n_scored": "n",
    "pointing_game": "pointing game",
    "pointing_game_tolerant": "pointing game (tolerant)",
    "relevance_mass": "mass in mask",
    "mask_fraction": "mask fraction",
    "relevance_rank_accuracy": "rank accuracy",
    "auroc": "AUROC",
}


def best_run(out: Path, by: str) -> str:
    """Name of the run with the highest validation ``by`` (then validation AUC)."""
    table = pd.read_csv(out / "comparison.tsv", sep="\t")
    if by not in table.columns:
        sys.exit(f"{out / 'comparison.tsv'} has no column {by!r}: {list(table.columns)}")
    ranked = table.sort_values([by, "val_auc"], ascending=False, na_position="last")
    print(markdown(table.round(4)))
    print(f"\nbest by {by}: {ranked.iloc[0]['run']}\n")
    return str(ranked.iloc[0]["run"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the --out directory of `braincam run`")
    parser.add_argument("--by", default="val_slice_acc", help="comparison.tsv column (validation)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()

    run = best_run(args.out, args.by)
    path = args.out / "runs" / run / "cam_eval" / args.split / "localization.tsv"
    if not path.is_file():
        sys.exit(f"{path} is missing: run evaluate-cams (the config's `cams` section) first")
    loc = pd.read_csv(path, sep="\t")
    table = loc[list(COLUMNS)].rename(columns=COLUMNS)
    table["mass ÷ chance"] = table["mass in mask"] / table["mask fraction"]
    print(markdown(table.round(4)))
    hits = path.with_name("lesion_hits.tsv")
    if hits.is_file():
        print()
        print(markdown(hit_rate_table(pd.read_csv(hits, sep="\t"))))


def hit_rate_table(hits: pd.DataFrame) -> pd.DataFrame:
    """One row per method and level, one column per size bin: ``rate (hit/lesions)``."""

    def cell(row: pd.Series) -> str:
        rate = "–" if row["n_lesions"] == 0 else f"{row['hit_rate']:.3f}"
        return f"{rate} ({row['n_hit']}/{row['n_lesions']})"

    hits = hits.assign(cell=hits.apply(cell, axis=1))
    bins = list(dict.fromkeys(hits["bin"]))
    wide = hits.pivot_table(
        index=["method", "level"], columns="bin", values="cell", aggfunc="first"
    )
    wide = wide[bins].reset_index()
    order = {m: i for i, m in enumerate(dict.fromkeys(hits["method"]))}
    wide = wide.sort_values(
        ["level", "method"], key=lambda c: c.map(order) if c.name == "method" else c
    )
    return wide.rename(columns={b: b.replace("mm", " mm") for b in bins})


if __name__ == "__main__":
    main()
