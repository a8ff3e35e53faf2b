"""Heatmap-evaluation benchmark (figures go to "Heatmap evaluation" in BENCHMARKS.md).

For one trained run (e.g. the demo's ``runs/smallcnn-gap``) and one CAM method, time every
metric family of ``evaluate-cams`` on the test split and the share of that time spent outside
model forwards (measured by timing every forward call of the model; target ≤ 20 %). Then print
the localization figures of each method against the uniform and random baselines, read from the
run's ``cam_eval/test/localization.tsv`` (written by ``braincam evaluate-cams`` / the demo).

    .venv/bin/python benchmarks/bench_eval_cams.py demo-out/runs/smallcnn-gap --method gradcam
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from braincam.layout import CamEvalLayout
from braincam.pipeline import evaluate_cams as cams
from braincam.pipeline.cam_context import load_context


class ForwardTimer:
    """Accumulates wall time spent inside ``model.forward`` (hooks on the top module)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seconds = 0.0
        self._start = 0.0
        self._handles = [
            model.register_forward_pre_hook(self._pre),
            model.register_forward_hook(self._post),
        ]

    def _pre(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _post(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--max-images", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)

    cfg = cams.CamEvalConfig(methods=(args.method,), max_images=args.max_images)
    ctx = load_context(args.run, cfg, progress=False)
    out = CamEvalLayout(Path("/tmp/bench-eval-cams"))
    out.root.mkdir(exist_ok=True)
    # sanity randomizes deep copies of the model: their forwards are timed too
    rows = []
    total_fwd = total = 0.0
    for name, family in cams.FAMILIES.items():
        timer = ForwardTimer(ctx.model)
        copies: list[ForwardTimer] = []
        if name == "sanity":
            import copy as copy_module

            real = copy_module.deepcopy

            def timed_deepcopy(obj, memo=None, _real=real, _copies=copies):
                clone = _real(obj, memo)
                if isinstance(clone, torch.nn.Module):
                    _copies.append(ForwardTimer(clone))
                return clone

            copy_module.deepcopy = timed_deepcopy
        start = time.perf_counter()
        try:
            family(ctx, cfg, out)
        finally:
            if name == "sanity":
                copy_module.deepcopy = real
        seconds = time.perf_counter() - start
        fwd = timer.seconds + sum(c.seconds for c in copies)
        timer.remove()
        rows.append(
            {
                "family": name,
                "seconds": round(seconds, 2),
                "in_forwards_s": round(fwd, 2),
                "outside_share": round(1 - fwd / seconds, 3) if seconds else float("nan"),
            }
        )
        total += seconds
        total_fwd += fwd
    rows.append(
        {
            "family": "all",
            "seconds": round(total, 2),
            "in_forwards_s": round(total_fwd, 2),
            "outside_share": round(1 - total_fwd / total, 3),
        }
    )
    print(f"run {args.run}, method {args.method}, {len(ctx.images)} test slices")
    print(markdown(pd.DataFrame(rows)))

    loc = pd.read_csv(args.run / "cam_eval" / "test" / "localization.tsv", sep="\t")
    cols = [
        "method",
        "level",
        "n_scored",
        "pointing_game",
        "pointing_game_tolerant",
        "relevance_mass",
        "relevance_rank_accuracy",
        "auroc",
    ]
    print()
    print(markdown(loc[cols].round(3)))


if __name__ == "__main__":
    main()
