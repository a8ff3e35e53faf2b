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
mask fraction (what a uniform map scores).
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


if __name__ == "__main__":
    main()
