"""Benchmark the perturbation check's imputation: Jacobi sweeps on whole images vs on the
imputed voxels only (``metrics/imputation.py``), at several region sizes, in 2-D and 3-D.

    .venv/bin/python benchmarks/bench_imputation.py [--repeats 5]

Both variants run alternately on the same inputs (medians of ``--repeats``); prints Markdown:
share of voxels imputed, seconds of each, the ratio and the largest difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from braincam.metrics import imputation as im


def _inputs(spatial: tuple[int, ...], n: int, side: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``n`` random images with an ellipsoid brain and one cubic region of ``side`` voxels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand((n, 1, *spatial), generator=g)
    coords = torch.meshgrid(*(torch.linspace(-1, 1, s) for s in spatial), indexing="ij")
    brain = (sum(c**2 for c in coords) < 0.8).expand(n, *spatial).clone()
    regions = torch.zeros((n, *spatial), dtype=torch.bool)
    for i in range(n):
        # inside the brain's central half where the side allows (perturbed regions are brain)
        start = [
            int(
                torch.randint(
                    min(s // 4, s - side - 2), max(3 * s // 4 - side, s // 4) + 1, (1,), generator=g
                )
            )
            for s in spatial
        ]
        regions[(i, *(slice(a, a + side) for a in start))] = True
    return images * brain[:, None], regions, brain


def _sweeps(images: torch.Tensor, regions: torch.Tensor, brain: torch.Tensor, fn, iterations):
    d = images.ndim - 2
    tissue = brain[:, None].to(images.dtype)
    kernel = im._neighbour_kernel(d, images.dtype, images.device)
    weight = im._CONV[d](tissue, kernel, padding=1)
    update = (regions & brain)[:, None] & (weight > 0)
    return update, fn(images, tissue, update, weight, kernel, iterations)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=100)
    args = ap.parse_args()
    cases = [((64, 64), 256, side) for side in (8, 16, 24, 32, 40)]
    cases += [((56, 68, 58), 4, side) for side in (5, 10, 20)]
    print(f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}\n")
    print(
        "| images | region side | share imputed | whole images (s) | imputed voxels (s) "
        "| ratio | max \\|Δ\\| |"
    )
    print("|---|---|---|---|---|---|---|")
    for spatial, n, side in cases:
        images, regions, brain = _inputs(spatial, n, side, seed=side)
        times: dict[str, list[float]] = {"dense": [], "sparse": []}
        out = {}
        for _ in range(args.repeats):
            for name, fn in (("dense", im._jacobi_dense), ("sparse", im._jacobi_sparse)):
                t = time.perf_counter()
                update, out[name] = _sweeps(images, regions, brain, fn, args.iterations)
                times[name].append(time.perf_counter() - t)
        dense, sparse = (statistics.median(times[k]) for k in ("dense", "sparse"))
        share = float(update.float().mean())
        gap = float((out["dense"] - out["sparse"]).abs().max())
        shape = "×".join(map(str, spatial))
        print(
            f"| {n} × {shape} | {side} | {share:.3f} | {dense:.3f} | {sparse:.3f} | "
            f"{dense / sparse:.1f}× | {gap:.1e} |"
        )


if __name__ == "__main__":
    main()
