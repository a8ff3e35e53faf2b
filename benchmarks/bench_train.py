"""Training benchmarks (figures go to the "Training" section of BENCHMARKS.md).

1. ``throughput``: time per training step (forward + backward + SGD step) on batches already
   normalized in memory, against the same model fed by braincam's data pipeline (memmapped slice
   store → shuffled DataLoader → z-scoring on the batch). The two alternate batch by batch, so
   both see the same machine load (other processes share the 2 cores); also a full Lightning
   epoch through ``braincam.training.module.ClassifierModule`` (hooks, logging), interleaved the
   same way with in-memory steps run from a callback. Medians of per-batch times; overheads are the
   median over ``--repeats`` of per-repeat ratios.

       .venv/bin/python benchmarks/bench_train.py throughput --model smallcnn-gap --size 64

2. ``accuracy``: ``braincam run configs/fast-cpu.yaml`` end to end (synthetic cohort → prepare
   → train → evaluate), printing wall time and the per-model comparison table.

       .venv/bin/python benchmarks/bench_train.py accuracy --out /tmp/bench-fast-cpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F


def make_store(work: Path, n: int, size: int, seed: int = 0) -> Path:
    """A slice store in the contract's format: ``n`` random slices, half of them per split."""
    rng = np.random.default_rng(seed)
    store = work / "slices"
    store.mkdir(parents=True, exist_ok=True)
    images = rng.random((n, 1, size, size), dtype=np.float32)
    np.save(store / "images.npy", images)
    per_subject = 16
    subjects = [f"sub-{i // per_subject:03d}" for i in range(n)]
    n_subj = n // per_subject
    split_of = {f"sub-{i:03d}": ("train" if i < n_subj - 2 else "val") for i in range(n_subj)}
    index = pd.DataFrame(
        {
            "participant_id": subjects,
            "label": [["young", "old"][(i // per_subject) % 2] for i in range(n)],
            "target": [(i // per_subject) % 2 for i in range(n)],
            "split": [split_of[s] for s in subjects],
            "axis": "axial",
            "position": [i % per_subject for i in range(n)],
        }
    )
    index.to_csv(store / "index.tsv", sep="\t", index=False)
    meta = {"classes": ["young", "old"], "size": size, "channels": 1, "axes": ["axial"]}
    (store / "meta.json").write_text(json.dumps(meta))
    return work


def _step(model, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def interleaved(model_name: str, store, batch_size: int, n_batches: int, mean, std):
    """Per-batch seconds of the two paths, alternating batch by batch (same load conditions).

    ``in_memory``: one training step on a batch already normalized in memory.
    ``pipeline``: fetch the next batch from the memmapped store (shuffled DataLoader), z-score
    it, and the same training step on a second copy of the model.
    """
    from braincam.models import build_model
    from braincam.training.datamodule import make_dataset, make_loader

    rows = store.rows("train")
    images = torch.from_numpy(np.load(store.images_path)[rows])
    images = (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    targets = torch.as_tensor(store.index["target"].to_numpy()[rows])
    mem_batches = list(zip(images.split(batch_size), targets.split(batch_size), strict=True))
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    models = [build_model(model_name, in_channels=1, num_classes=2) for _ in range(2)]
    opts = [torch.optim.SGD(md.parameters(), lr=1e-3, momentum=0.9) for md in models]
    loader = make_loader(make_dataset(store, "train"), batch_size, shuffle=True)
    it = iter(loader)
    times: dict[str, list[float]] = {"in_memory": [], "pipeline": [], "fetch": []}
    for i in range(n_batches + 1):
        x, y = mem_batches[i % len(mem_batches)]
        t0 = time.perf_counter()
        _step(models[0], opts[0], x, y)
        t1 = time.perf_counter()
        try:
            xb, yb, _ = next(it)
        except StopIteration:
            it = iter(loader)
            xb, yb, _ = next(it)
        t2 = time.perf_counter()
        _step(models[1], opts[1], (xb - m) / s, yb)
        t3 = time.perf_counter()
        if i > 0:  # the first batch warms up both paths
            times["in_memory"].append(t1 - t0)
            times["pipeline"].append(t3 - t1)
            times["fetch"].append(t2 - t1)
    return times


def lightning_batches(model_name: str, store, batch_size: int, n_batches: int, mean, std):
    """Per-batch seconds of a Lightning epoch through braincam's ClassifierModule, interleaved
    with an in-memory step of a second copy of the model run inside a callback.

    Lightning's time for batch i is from the end of that in-memory step to the start of batch
    i + 1 (data fetch, hooks, logging, the training step); the in-memory step is timed alone.
    """
    import lightning as L

    from braincam.config import TrainConfig
    from braincam.models import build_model
    from braincam.training.datamodule import SliceDataModule
    from braincam.training.module import ClassifierModule

    other = build_model(model_name, in_channels=1, num_classes=2)
    opt = torch.optim.SGD(other.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch_size, 1, store.size, store.size)
    y = torch.randint(0, 2, (batch_size,))
    marks: list[tuple[float, float, float]] = []

    class Interleave(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            t0 = time.perf_counter()
            _step(other, opt, x, y)
            t1 = time.perf_counter()
            marks.append((t0, t1 - t0, t1))

    cfg = TrainConfig(batch_size=batch_size, epochs=1)
    module = ClassifierModule(model_name, 1, 2, cfg.model_dump(mode="json"), mean, std)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        limit_train_batches=n_batches + 2,
        limit_val_batches=0,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Interleave()],
    )
    trainer.fit(module, datamodule=SliceDataModule(store, batch_size=batch_size))
    lightning = [marks[i + 1][0] - marks[i][2] for i in range(1, len(marks) - 1)]
    in_memory = [m[1] for m in marks[1:-1]]
    return lightning, in_memory


def throughput(args: argparse.Namespace) -> None:
    from braincam.training.datamodule import channel_stats, open_store

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = make_store(Path(tmp), args.batches * args.batch_size + 64, args.size)
        store = open_store(work / "slices")
        mean, std = channel_stats(store.images_path, store.rows("train"))
        medians: dict[str, list[float]] = {"in_memory": [], "pipeline": [], "fetch": []}
        medians["lightning"] = []
        medians["in_memory_near_lightning"] = []
        for r in range(args.repeats):
            times = interleaved(args.model, store, args.batch_size, args.batches, mean, std)
            for key, values in times.items():
                medians[key].append(statistics.median(values))
            lt, near = lightning_batches(
                args.model, store, args.batch_size, args.batches, mean, std
            )
            medians["lightning"].append(statistics.median(lt))
            medians["in_memory_near_lightning"].append(statistics.median(near))
            print(
                f"repeat {r}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in medians.items())
            )
    med = {k: statistics.median(v) for k, v in medians.items()}
    # Overheads are ratios within one repeat (same load), then the median over repeats.
    ratio = {
        "pipeline": [p / m for p, m in zip(medians["pipeline"], medians["in_memory"], strict=True)],
        "lightning": [
            p / m
            for p, m in zip(medians["lightning"], medians["in_memory_near_lightning"], strict=True)
        ],
    }
    print(
        f"\nmodel {args.model}, {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.batches} batches x {args.repeats} repeats, {torch.get_num_threads()} threads; "
        "medians of per-batch times"
    )
    print("| path | ms / batch | images/s | overhead vs in-memory (median of per-repeat ratios) |")
    print("|---|---|---|---|")
    rows = [
        ("in memory (normalized tensors)", "in_memory"),
        ("braincam pipeline (memmap → DataLoader → z-score)", "pipeline"),
        ("  of which batch fetch", "fetch"),
        ("in memory (interleaved with the Lightning run)", "in_memory_near_lightning"),
        ("Lightning epoch (ClassifierModule)", "lightning"),
    ]
    for label, key in rows:
        ms = med[key] * 1e3
        ips = args.batch_size / med[key]
        over = f"{100 * (statistics.median(ratio[key]) - 1):+.1f} %" if key in ratio else ""
        print(f"| {label} | {ms:.1f} | {ips:.0f} | {over} |")


def accuracy(args: argparse.Namespace) -> None:
    from braincam.pipeline.run import run_experiment

    t0 = time.perf_counter()
    result = run_experiment(args.config, out=args.out, progress=False)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\nwall time {minutes:.1f} min (config {args.config}, out {args.out})\n")
    print((Path(result["out"]) / "comparison.md").read_text())
    for run in result["runs"]:
        test = json.loads((run / "eval_test.json").read_text())
        sub = test["subject"]
        print(
            f"{run.name}: test slices {test['accuracy']:.3f} (n={test['n']}), "
            f"subjects {sub['correct']}/{sub['n']} = {sub['accuracy']:.3f}, AUC {test['auc']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--model", default="smallcnn-gap")
    tp.add_argument("--size", type=int, default=96)
    tp.add_argument("--batch-size", type=int, default=16)
    tp.add_argument("--batches", type=int, default=40)
    tp.add_argument("--repeats", type=int, default=5)
    ac = sub.add_parser("accuracy")
    ac.add_argument(
        "--config", default=os.fspath(Path(__file__).parents[1] / "configs/fast-cpu.yaml")
    )
    ac.add_argument("--out", default="bench-fast-cpu-out")
    args = parser.parse_args()
    {"throughput": throughput, "accuracy": accuracy}[args.what](args)


if __name__ == "__main__":
    main()
