"""Training benchmarks (figures go to the "Training" section of BENCHMARKS.md).

1. ``throughput``: images/s of one training step (forward + backward + SGD step) on batches
   that are already normalized tensors in memory, against the same model fed by braincam's data
   pipeline (memmapped slice store → DataLoader → z-scoring on the batch), and against a full
   Lightning epoch through ``braincam.train.ClassifierModule`` (logging, hooks, checkpoint-free).
   All three are interleaved in the same run; medians of ``--repeats`` runs.

       .venv/bin/python benchmarks/bench_train.py throughput --model smallcnn-gap --size 96

2. ``accuracy``: ``braincam run configs/fast-cpu.yaml`` end to end (synthetic cohort → prepare
   → train → evaluate), printing wall time and the per-model comparison table.

       .venv/bin/python benchmarks/bench_train.py accuracy --out /tmp/bench-fast-cpu
"""

from __future__ import annotations

import argparse
import json
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


def bench_in_memory(model, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """images/s on pre-normalized tensors already in memory."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    _step(model, opt, *batches[0])  # warm-up
    t0 = time.perf_counter()
    n = 0
    for x, y in batches:
        _step(model, opt, x, y)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def bench_pipeline(model, store, batch_size: int, n_batches: int, mean, std) -> float:
    """images/s through SliceDataset + DataLoader (shuffled memmap reads) + batch z-scoring."""
    from braincam.data.datamodule import make_dataset, make_loader

    loader = make_loader(make_dataset(store, "train"), batch_size, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    it = iter(loader)
    x, y, _ = next(it)
    _step(model, opt, (x - m) / s, y)  # warm-up
    t0 = time.perf_counter()
    n = 0
    for i, (x, y, _) in enumerate(it):
        if i >= n_batches:
            break
        _step(model, opt, (x - m) / s, y)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


class _EpochTimer:
    def __init__(self) -> None:
        self.start = 0.0
        self.images = 0
        self.seconds = 0.0

    def callback(self):
        import lightning as L

        timer = self

        class Timer(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if batch_idx == 1:  # after the first (warm-up) batch
                    timer.start = time.perf_counter()
                    timer.images = 0
                if batch_idx >= 1:
                    timer.images += batch[0].shape[0]

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                timer.seconds = time.perf_counter() - timer.start

        return Timer()


def bench_lightning(model_name: str, store, batch_size: int, n_batches: int, mean, std) -> float:
    """images/s of a Lightning training epoch through braincam's ClassifierModule."""
    import lightning as L

    from braincam.config import TrainConfig
    from braincam.data.datamodule import SliceDataModule
    from braincam.train import ClassifierModule

    cfg = TrainConfig(batch_size=batch_size, epochs=1)
    module = ClassifierModule(model_name, 1, 2, cfg.model_dump(mode="json"), mean, std)
    timer = _EpochTimer()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        limit_train_batches=n_batches + 1,
        limit_val_batches=0,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer.callback()],
    )
    trainer.fit(module, datamodule=SliceDataModule(store, batch_size=batch_size))
    return timer.images / timer.seconds


def throughput(args: argparse.Namespace) -> None:
    from braincam.data.datamodule import channel_stats, open_store
    from braincam.models import build_model

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = make_store(Path(tmp), args.batches * args.batch_size + 64, args.size)
        store = open_store(work / "slices")
        mean, std = channel_stats(store.images_path, store.rows("train"))
        rows = store.rows("train")[: args.batches * args.batch_size]
        images = torch.from_numpy(np.load(store.images_path)[rows])
        images = (images - mean[0]) / std[0]
        targets = torch.as_tensor(store.index["target"].to_numpy()[rows])
        batches = list(
            zip(images.split(args.batch_size), targets.split(args.batch_size), strict=True)
        )
        results: dict[str, list[float]] = {"in_memory": [], "pipeline": [], "lightning": []}
        for r in range(args.repeats):
            model = build_model(args.model, in_channels=1, num_classes=2)
            results["in_memory"].append(bench_in_memory(model, batches))
            model = build_model(args.model, in_channels=1, num_classes=2)
            results["pipeline"].append(
                bench_pipeline(model, store, args.batch_size, args.batches, mean, std)
            )
            results["lightning"].append(
                bench_lightning(args.model, store, args.batch_size, args.batches, mean, std)
            )
            print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"\nmodel {args.model}, {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.batches} batches, {torch.get_num_threads()} threads, medians of {args.repeats}"
    )
    print("| path | images/s | overhead vs in-memory |")
    print("|---|---|---|")
    for key in ("in_memory", "pipeline", "lightning"):
        overhead = 100 * (med["in_memory"] / med[key] - 1)
        print(f"| {key} | {med[key]:.1f} | {overhead:+.1f} % |")


def accuracy(args: argparse.Namespace) -> None:
    from braincam.run import run_experiment

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
    ac.add_argument("--config", default=str(Path(__file__).parents[1] / "configs/fast-cpu.yaml"))
    ac.add_argument("--out", default="bench-fast-cpu-out")
    args = parser.parse_args()
    {"throughput": throughput, "accuracy": accuracy}[args.what](args)


if __name__ == "__main__":
    main()
