"""Localization of fused multi-layer maps against the CAM layer alone, on a trained run (issue 14).

    .venv/bin/python benchmarks/bench_fusion.py RUN_DIR OUT \\
        --variant "head.conv (8x8)=" --variant "features.1=backbone.features.1" \\
        --variant "fused=backbone.features.1,head.conv"

Each variant copies the run (model, record; not its maps) to OUT/<n>, explains the test split
with those layers (``cams.layer``; several are fused by ``--fusion``) and scores localization
per slice and per volume as ``braincam evaluate-cams`` does, with the uniform/random baselines.
Writes OUT/results.tsv and prints the table.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd
from bench_eval_cams import markdown  # the same table writer (scripts run from benchmarks/)

from braincam.config import CamEvalConfig
from braincam.pipeline.cam_context import load_context
from braincam.pipeline.cam_localization import localization, localization_3d

COLUMNS = ["variant", "level", "method", "pointing_game", "pointing_game_tolerant",
           "relevance_mass", "mask_fraction", "auroc"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--variant", action="append", required=True, help="NAME=LAYER[,LAYER]")
    parser.add_argument("--methods", default="gradcam,gradcampp,layercam")
    parser.add_argument("--fusion", default="layercam")
    args = parser.parse_args()
    frames = []
    for i, item in enumerate(args.variant):
        name, _, spec = item.partition("=")
        names = tuple(n.strip() for n in spec.split(",") if n.strip())
        layer = None if not names else names[0] if len(names) == 1 else names
        run = args.out / str(i)
        if not run.exists():
            shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("heatmaps", "cam_eval"))
        cfg = CamEvalConfig(
            methods=tuple(args.methods.split(",")), regions=False, layer=layer, fusion=args.fusion
        )
        ctx = load_context(run, cfg, progress=False)
        frame = pd.concat([localization(ctx, cfg), localization_3d(ctx, cfg)], ignore_index=True)
        frame.insert(0, "variant", name)
        frames.append(frame)
        print(f"{name}: done", flush=True)
    results = pd.concat(frames, ignore_index=True)
    results.to_csv(args.out / "results.tsv", sep="\t", index=False)
    print(markdown(results[COLUMNS].round(3)))


if __name__ == "__main__":
    main()
