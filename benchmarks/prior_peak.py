"""Where a trained spatial prior peaks, against where the effect is (BENCHMARKS.md, "Where the
prior settles"). For each run directory (a ``priorcnn-gap`` or ``priorcnn3d-gap`` run inside
its work directory, as ``bench_localization.py`` lays them out: WORK/runs/RUN):

    cd benchmarks && python prior_peak.py WORK/runs/priorcnn-gap-XXXX [...]

prints the prior's peak (input voxels), its share of the mass on the top cells, the effect
masks' centroid ± SD over the masked slices/volumes, how often the peak lies inside the mask,
and the best any single voxel could do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_prior_variants import register  # the variants' runs load too

from braincam.training.loading import load_trained


def report(run: Path) -> str:
    work = run.parents[1]
    store = work / ("slices" if (work / "slices").is_dir() else "volumes")
    index = pd.read_csv(store / "index.tsv", sep="\t")
    masks = np.load(store / "masks.npy", mmap_mode="r")
    model, _ = load_trained(run)
    prior = model.get_submodule("backbone.prior")
    shape = masks.shape[1:]
    with torch.no_grad():
        w = prior.weights(tuple(s // 2 for s in shape))[0, 0].numpy()  # the stem halves the grid
    cell = np.unravel_index(w.argmax(), w.shape)
    peak = np.array(cell) * 2 + 0.5
    top = np.sort(w.ravel())[::-1]
    column = "mask_pixels" if "mask_pixels" in index else "mask_voxels"
    chosen = np.flatnonzero(index[column].to_numpy() > 0)
    m = np.asarray(masks[chosen], dtype=float)
    centroids = np.array([np.argwhere(x).mean(0) for x in m])
    block = tuple(slice(2 * c, 2 * c + 2) for c in cell)
    inside = m[(slice(None), *block)].reshape(len(m), -1).max(1).mean()
    freq = m.mean(0)
    return (
        f"{run}: peak {peak.round(1)}, top-5 cells hold {top[:5].sum() / w.size:.2f} of the mass; "
        f"effect centroid {centroids.mean(0).round(1)} ± {centroids.std(0).round(1)}, offset "
        f"{(peak - centroids.mean(0)).round(1)}; peak inside the mask on {inside:.2f} of "
        f"{len(m)} masked images (best single voxel {freq.max():.2f})"
    )


if __name__ == "__main__":
    register()
    for arg in sys.argv[1:]:
        print(report(Path(arg)))
