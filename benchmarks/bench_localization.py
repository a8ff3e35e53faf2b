"""Localization precision on random-sphere cohorts (issue 14): cohort × input size × CAM grid ×
training variant × CAM method.

    .venv/bin/python benchmarks/bench_localization.py run OUT --seeds 1 2 --placements deep \\
        cortical --sizes 64 96 --models smallcnn-gap smallcnn-p2-gap
    .venv/bin/python benchmarks/bench_localization.py table OUT      # Markdown for BENCHMARKS.md
    .venv/bin/python benchmarks/bench_localization.py rescore OUT --models M --methods intgrad
    .venv/bin/python benchmarks/bench_localization.py ceiling WORK...  # fixed-point ceilings

Each cohort is ``configs/fast-cpu.yaml``'s synthetic cohort with ``effect_region:
random:<placement>`` and ``seed`` (a 10–16 mm white-matter sphere that is never a named region,
placed by the seed). Per input size it is prepared once; per model (the CAM grid is the model's
pooling: ``smallcnn-gap`` keeps 1/8 of the input, ``smallcnn-p2-gap`` 1/4) and training variant
(``--variant NAME=JSON``, a ``train`` override; ``base`` is the config's own) a run is trained,
its test subjects are classified, every CAM method explains the test slices, and localization
is scored on slices with mask pixels and on the back-projected volumes, next to the uniform and
random baselines (``braincam.pipeline.cam_localization``). One row per (cell, method, level) is
appended to ``OUT/results.tsv`` as soon as it is measured, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from bench_eval_cams import markdown  # the same table writer (scripts run from benchmarks/)

from braincam.cam.methods import METHODS
from braincam.config import CamEvalConfig, ExplainConfig, load_config, override
from braincam.models.registry import get_spec
from braincam.pipeline.cam_context import load_context
from braincam.pipeline.cam_localization import localization, localization_3d
from braincam.pipeline.evaluate import evaluate_run
from braincam.pipeline.explain import explain_run
from braincam.pipeline.prepare import prepare
from braincam.pipeline.train import fit
from braincam.synth import generator_for

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fast-cpu.yaml"
KEYS = ["placement", "seed", "size", "model", "variant"]


def feature_grid(model: str, size: int) -> int:
    """The CAM layer's side length at input ``size`` (the registry's feature size, scaled)."""
    spec = get_spec(model)
    return round(spec.feature_size[0] * size / spec.input_size)


def dotted(changes: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"prefix.a.b": 1}`` (what ``override`` takes: one leaf each)."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, dict):
            out |= dotted(value, f"{prefix}.{key}")
        else:
            out[f"{prefix}.{key}"] = value
    return out


def _done(results: Path) -> set[tuple]:
    if not results.is_file():
        return set()
    table = pd.read_csv(results, sep="\t")
    return {tuple(row) for row in table[KEYS].drop_duplicates().itertuples(index=False)}


def _append(results: Path, rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows)
    if results.is_file():  # in the file's column order (a rescore has no cell_s)
        frame = frame.reindex(columns=pd.read_csv(results, sep="\t", nrows=0).columns)
    frame.to_csv(results, sep="\t", index=False, mode="a", header=not results.is_file())


def _cohort(out: Path, base: Any, placement: str, seed: int) -> Path:
    """Synthesize the cohort once (the slow part that every size shares)."""
    bids = out / f"{placement}-{seed}" / "bids"
    if (bids / "dataset_description.json").is_file():
        return bids
    synth = override(base, {"synth.effect_region": f"random:{placement}", "synth.seed": seed})
    config = synth.synth.generator_config()
    generator_for(config).synthesize(
        bids, config, overwrite=True, progress=False, workers=synth.synth.workers
    )
    return bids


def _prepared(out: Path, base: Any, bids: Path, size: int) -> Path:
    work = bids.parent / f"size-{size}"
    if not (work / "slices" / "meta.json").is_file():
        cfg = override(base, {"prepare.size": size})
        prepare(bids, work, cfg.prepare.step_config(False))
    return work


def _run_dir(work: Path, model: str, train: Any) -> Path:
    digest = hashlib.sha256(train.model_dump_json().encode()).hexdigest()[:10]
    return work / "runs" / f"{model}-{digest}"


def run_cell(work: Path, model: str, train: Any, methods: list[str]) -> list[dict[str, Any]]:
    """Train, classify the test subjects, explain with every method, score localization."""
    run = _run_dir(work, model, train)
    start = time.perf_counter()
    fit(work, run, model=model, config=train, progress=False)
    return score_cell(work, run, model, methods, round(time.perf_counter() - start, 1))


def score_cell(
    work: Path, run: Path, model: str, methods: list[str], train_s: float
) -> list[dict[str, Any]]:
    """Classify a trained run's test subjects, explain with ``methods``, score localization."""
    test = evaluate_run(run, splits=["test"], work_dir=work)["test"]
    record = json.loads((run / "record.json").read_text())
    common = {
        "grid": feature_grid(model, int(record["input"]["size"])),
        "subject_acc": test["subject"]["accuracy"],
        "slice_acc": test["accuracy"],
        "best_epoch": record["best_epoch"],
        "epochs_run": record["epochs_run"],
        "train_s": train_s,
    }
    seconds = {}
    for method in methods:  # one at a time, to time each
        start = time.perf_counter()
        explain_run(run, ExplainConfig(methods=(method,), overlays=0), progress=False)
        seconds[method] = round(time.perf_counter() - start, 2)
    cfg = CamEvalConfig(methods=tuple(methods), regions=False)
    ctx = load_context(run, cfg, progress=False)
    frame = pd.concat([localization(ctx, cfg), localization_3d(ctx, cfg)], ignore_index=True)
    rows = []
    for rec in frame.to_dict(orient="records"):
        rows.append({**common, **rec, "explain_s": seconds.get(rec["method"])})
    return rows


def run(args: argparse.Namespace) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(args.config)
    variants = {"base": {}}
    for item in args.variant or []:
        name, _, text = item.partition("=")
        variants[name] = json.loads(text)
    results = out / "results.tsv"
    done = _done(results)
    for seed in args.seeds:
        for placement in args.placements:
            bids = _cohort(out, base, placement, seed)
            for size in args.sizes:
                work = _prepared(out, base, bids, size)
                for model in args.models:
                    for name, changes in variants.items():
                        key = (placement, seed, size, model, name)
                        if key in done:
                            continue
                        train = override(base, dotted(changes, "train")).train
                        start = time.perf_counter()
                        rows = run_cell(work, model, train, args.methods)
                        total = round(time.perf_counter() - start, 1)
                        keyed = [dict(zip(KEYS, key, strict=True)) | r for r in rows]
                        _append(results, [r | {"cell_s": total} for r in keyed])
                        print(f"{key}: {total} s", flush=True)


def rescore(args: argparse.Namespace) -> None:
    """Score more ``--methods`` on the runs ``run`` already trained (same cells, same variants);
    their rows are appended (the baselines' rows are not repeated)."""
    out: Path = args.out
    base = load_config(args.config)
    variants = {"base": {}} | {
        name: json.loads(text) for name, _, text in (v.partition("=") for v in args.variant or [])
    }
    results = pd.read_csv(out / "results.tsv", sep="\t")
    for key, cell in results.groupby(KEYS):
        placement, seed, size, model, name = key
        if model not in args.models or name not in variants:
            continue
        todo = [m for m in args.methods if m not in set(cell["method"])]
        if not todo:
            continue
        work = out / f"{placement}-{seed}" / f"size-{size}"
        train = override(base, dotted(variants[name], "train")).train
        run = _run_dir(work, model, train)
        if not (run / "model.pt").is_file():
            print(f"{key}: no trained run at {run}, skipped", flush=True)
            continue
        rows = score_cell(work, run, model, todo, float(cell["train_s"].iloc[0]))
        rows = [r for r in rows if not r["method"].startswith("baseline")]
        _append(out / "results.tsv", [dict(zip(KEYS, key, strict=True)) | r for r in rows])
        print(f"{key}: scored {', '.join(todo)}", flush=True)


# ------------------------------------------------------------------------------ the table

SHOW = {
    "pointing_game": "PG strict",
    "pointing_game_tolerant": "PG tolerant",
    "relevance_mass": "mass",
    "auroc": "AUROC",
}


def table(args: argparse.Namespace) -> None:
    """Mean over cohorts per (size, grid, model, variant, method, level), with the baselines."""
    res = pd.read_csv(args.out / "results.tsv", sep="\t")
    res["mass ÷ area"] = res["relevance_mass"] / res["mask_fraction"]
    cell = ["size", "grid", "model", "variant"]
    per_cohort = res.groupby(["placement", "seed", *cell]).first().reset_index()
    acc = per_cohort.groupby(cell).agg(
        cohorts=("seed", "size"),
        subject_acc=("subject_acc", "mean"),
        best_epoch=("best_epoch", "mean"),
        train_s=("train_s", "mean"),
    )
    print("### Classification per cell (mean over cohorts)\n")
    print(markdown(acc.reset_index().round(3)))
    for level in ("volume", "slice"):
        sub = res[res["level"] == level]
        means = sub.groupby([*cell, "method"])[[*SHOW, "mass ÷ area", "explain_s"]].mean()
        means = means.rename(columns=SHOW).reset_index()
        print(f"\n### {level} level (mean over cohorts)\n")
        print(markdown(means.round(3)))
    best = res[(res["level"] == "volume") & ~res["method"].str.startswith("baseline")]
    ranked = best.groupby([*cell, "method"])["pointing_game"].mean().sort_values(ascending=False)
    print("\n### Best cells by strict pointing game per volume\n")
    print(markdown(ranked.head(10).reset_index().round(3)))


def store_ceiling(work: Path, tolerance: float | None = None) -> dict[str, Any]:
    """The fixed-point ceiling (:func:`~braincam.metrics.localization.fixed_point_ceiling`) of a
    prepared work directory's test images with mask voxels, strict and tolerant (the scoring's
    default tolerance), in the store's own space: slices, or volumes for a volume store."""
    import numpy as np
    import torch

    from braincam.metrics.localization import default_tolerance, fixed_point_ceiling

    store = work / ("volumes" if (work / "volumes" / "meta.json").is_file() else "slices")
    index = pd.read_csv(store / "index.tsv", sep="\t")
    column = "mask_voxels" if "mask_voxels" in index else "mask_pixels"
    count = pd.to_numeric(index[column], errors="coerce").fillna(0)
    rows = np.flatnonzero((index["split"] == "test").to_numpy() & (count > 0).to_numpy())
    masks = torch.from_numpy(np.load(store / "masks.npy", mmap_mode="r")[rows] > 0)
    tol = default_tolerance(tuple(masks.shape[1:])) if tolerance is None else tolerance
    return {
        "store": store.name,
        "n": len(rows),
        "ceiling": round(fixed_point_ceiling(masks), 3),
        "ceiling_tolerant": round(fixed_point_ceiling(masks, tol), 3),
        "mask_fraction": round(masks.flatten(1).float().mean(1).mean().item(), 5),
    }


def ceiling(args: argparse.Namespace) -> None:
    """The fixed-point ceiling of each prepared work directory given (``OUT/<cohort>/size-N`` of
    ``run``, or any ``braincam prepare`` output)."""
    rows = [{"work": str(w), **store_ceiling(w)} for w in args.work]
    print(markdown(pd.DataFrame(rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="measure (resumes)")
    p_run.add_argument("out", type=Path)
    p_run.add_argument("--config", type=Path, default=CONFIG)
    p_run.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p_run.add_argument("--placements", nargs="+", default=["deep", "cortical"])
    p_run.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    p_run.add_argument("--models", nargs="+", default=["smallcnn-gap", "smallcnn-p2-gap"])
    p_run.add_argument("--methods", nargs="+", default=list(METHODS))
    p_run.add_argument("--variant", action="append", help="NAME=JSON train override")
    p_re = sub.add_parser("rescore", help="score more methods on the runs already trained")
    p_re.add_argument("out", type=Path)
    p_re.add_argument("--config", type=Path, default=CONFIG)
    p_re.add_argument("--models", nargs="+", required=True)
    p_re.add_argument("--methods", nargs="+", required=True)
    p_re.add_argument("--variant", action="append", help="NAME=JSON train override")
    p_tab = sub.add_parser("table", help="print the Markdown tables")
    p_tab.add_argument("out", type=Path)
    p_ceil = sub.add_parser("ceiling", help="the best a fixed-place map could score")
    p_ceil.add_argument("work", type=Path, nargs="+")
    args = parser.parse_args()
    commands = {"run": run, "rescore": rescore, "table": table, "ceiling": ceiling}
    commands[args.command](args)


if __name__ == "__main__":
    main()
