"""Training-step time on the CPU: fp32 vs bf16 autocast, contiguous vs channels_last.

    python benchmarks/bench_amp_cpu.py [--model tinycnn-gap] [--size 96] [--batch 16] [--steps 10]

One SGD step (forward, cross-entropy, backward, update) on random 1-channel images, median of
``--steps`` after 3 warm-up steps. What a GPU gains from bf16 / channels_last (tensor cores)
is not measured here; this only shows the CPU path runs and what it costs on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from braincam.models import build_model


def step_seconds(model: str, size: int, batch: int, steps: int, bf16: bool, nhwc: bool) -> float:
    """Median seconds of one training step in the given precision and memory layout."""
    torch.manual_seed(0)
    net = build_model(model, in_channels=1, num_classes=2).train()
    x = torch.randn(batch, 1, size, size)
    if nhwc:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    times = []
    for i in range(3 + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print one Markdown row per (precision, layout)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tinycnn-gap")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"{args.model}, {args.batch} x 1 x {args.size}², torch threads {torch.get_num_threads()}")
    print("| precision | layout | s/step | images/s |\n|---|---|---:|---:|")
    for bf16 in (False, True):
        for nhwc in (False, True):
            s = step_seconds(args.model, args.size, args.batch, args.steps, bf16, nhwc)
            name = "bf16 autocast" if bf16 else "fp32"
            layout = "channels_last" if nhwc else "contiguous"
            print(f"| {name} | {layout} | {s:.3f} | {args.batch / s:.0f} |")


if __name__ == "__main__":
    main()
