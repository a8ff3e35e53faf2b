"""Helper of ``benchmarks/gpu_study.sh``: derive the configs it runs, summarize what they measured.

    python benchmarks/gpu_study.py config SRC.yaml OUT.yaml [--precision P] [--no-channels-last]
                                          [--tiny]
    python benchmarks/gpu_study.py report OUT_DIR [OUT_DIR ...] [--tsv PATH]

``config`` copies a study config with ``train.precision`` / ``train.channels_last`` set (the
CLI has no per-key overrides); ``--tiny`` also shrinks it to a CPU smoke run (a few synthetic
subjects, 32-pixel slices, ``tinycnn-gap``, one epoch, no CAM evaluation) that exercises the
same code path. ``report`` reads every ``OUT_DIR/runs/<model>/throughput.tsv`` (written by
training's ``Throughput`` callback) and prints one row per study x model: epochs, median
images/s, median seconds per epoch and peak GPU memory (``-`` where there was no GPU).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

# Per study config name: what --tiny changes besides the training options.
_TINY_SYNTH = {"subjects": 12, "voxel_size": 4.0}
_TINY_PREPARE = {"slices_per_axis": 2, "size": 32, "split_ratios": [0.5, 0.25, 0.25]}


def derive_config(
    source: Path, *, precision: str, channels_last: bool, tiny: bool
) -> dict[str, Any]:
    """``source``'s config with the GPU options set (and shrunk to a CPU smoke run if ``tiny``)."""
    data = yaml.safe_load(source.read_text())
    train = data.setdefault("train", {})
    train.update(precision=precision, channels_last=channels_last)
    if tiny:
        data["name"] = f"{data.get('name', source.stem)}-tiny"
        data.setdefault("synth", {}).update(_TINY_SYNTH)
        data.setdefault("prepare", {}).update(_TINY_PREPARE)
        data["models"] = ["tinycnn-gap"]
        train.update(
            epochs=1, batch_size=8, num_workers=0, accelerator="cpu", devices=1, weights=None
        )
        data["cams"] = {"enabled": False}
    return data


def study_table(out_dirs: list[Path]) -> pd.DataFrame:
    """One row per study x model from the runs' ``throughput.tsv`` tables."""
    rows = []
    for out in out_dirs:
        for path in sorted(out.glob("runs/*/throughput.tsv")):
            table = pd.read_csv(path, sep="\t")
            peak = table["peak_gpu_mb"].max()
            rows.append(
                {
                    "study": out.name,
                    "model": path.parent.name,
                    "epochs": len(table),
                    "images_per_s": float(table["images_per_s"].median()),
                    "seconds_per_epoch": float(table["epoch_seconds"].median()),
                    "peak_gpu_mb": None if pd.isna(peak) else float(peak),
                }
            )
    return pd.DataFrame(
        rows,
        columns=["study", "model", "epochs", "images_per_s", "seconds_per_epoch", "peak_gpu_mb"],
    )


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown (BENCHMARKS.md); peak memory ``-`` where no GPU was used."""

    def cell(value: Any, fmt: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return format(value, fmt)

    lines = [
        "| study | model | epochs | images/s | s/epoch | peak GPU MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.study} | {r.model} | {r.epochs} | {cell(r.images_per_s, '.1f')} | "
            f"{cell(r.seconds_per_epoch, '.1f')} | {cell(r.peak_gpu_mb, '.0f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``config`` or ``report``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cfg = sub.add_parser("config", help="derive a study config with the GPU options")
    cfg.add_argument("source", type=Path)
    cfg.add_argument("output", type=Path)
    cfg.add_argument("--precision", default="bf16-mixed")
    cfg.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    cfg.add_argument("--tiny", action="store_true")
    rep = sub.add_parser("report", help="summarize the runs' throughput tables")
    rep.add_argument("out_dirs", type=Path, nargs="+")
    rep.add_argument("--tsv", type=Path)
    args = parser.parse_args(argv)
    if args.command == "config":
        data = derive_config(
            args.source, precision=args.precision, channels_last=args.channels_last, tiny=args.tiny
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(yaml.safe_dump(data, sort_keys=False))
        return 0
    table = study_table(args.out_dirs)
    if table.empty:
        print(f"no throughput.tsv under {[str(d) for d in args.out_dirs]}", file=sys.stderr)
        return 1
    if args.tsv:
        table.to_csv(args.tsv, sep="\t", index=False)
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
