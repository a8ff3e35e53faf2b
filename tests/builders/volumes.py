"""A tiny work directory with a volume store (``WORK/volumes/``, ``WORK/splits.tsv``): 16
subjects, class ``old`` with a bright sphere (its ground-truth mask) at a random place."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braincam.config import TrainConfig, VolumeSpec
from braincam.data.slices import SliceSource
from braincam.data.splits import make_splits, save_splits
from braincam.data.volumes import VolumeStore, build_volume_store

SHAPE = (20, 20, 20)
AFFINE = np.diag([-2.0, 2.0, 2.0, 1.0])  # LAS, as the synthetic cohorts
SPEC = VolumeSpec(shape=(16, 16, 16), spacing=2.0)
#: A few quick epochs of tinycnn3d-gap (the fixture ``volume_run`` of tests/conftest.py).
TRAIN = TrainConfig(
    epochs=3, batch_size=4, seed=0, accelerator="cpu", devices=1, dropout=0.0,
    optimizer={"name": "adam", "lr": 3e-3},
)  # fmt: skip


def volume_sources(root: Path, n: int = 16, seed: int = 0) -> list[SliceSource]:
    """``n`` subjects (half ``old``): a brain ball of ~0.5 with noise; ``old`` adds +1 in a
    sphere of radius 2.5 voxels placed at random inside the brain (the mask)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij"), axis=-1)
    centre = (np.asarray(SHAPE) - 1) / 2
    brain = np.linalg.norm(grid - centre, axis=-1) < 8
    sources = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pid, label = f"sub-{i + 1:02d}", ("young", "old")[i % 2]
        data = brain * (0.5 + 0.05 * rng.standard_normal(SHAPE))
        where = centre + rng.uniform(-3, 3, size=3)
        sphere = (np.linalg.norm(grid - where, axis=-1) < 2.5) & (label == "old")
        data = data + 1.0 * sphere
        paths = [root / f"{pid}_{name}.nii.gz" for name in ("img", "mask", "brain")]
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), paths[0])
        nib.save(nib.Nifti1Image(sphere.astype(np.uint8), AFFINE), paths[1])
        nib.save(nib.Nifti1Image(brain.astype(np.uint8), AFFINE), paths[2])
        sources.append(SliceSource(pid, label, [paths[0]], paths[1], paths[2]))
    return sources


def write_volume_work(work: Path, n: int = 16, seed: int = 0) -> VolumeStore:
    """``work`` with ``splits.tsv`` (by subject, 10/3/3 for 16) and ``volumes/``."""
    sources = volume_sources(work.parent / f"{work.name}-nifti", n, seed)
    labels = pd.DataFrame(
        {"participant_id": [s.participant_id for s in sources], "label": [s.label for s in sources]}
    )
    splits = make_splits(labels, (0.625, 0.1875, 0.1875), seed=seed)
    save_splits(splits, work / "splits.tsv")
    return build_volume_store(work / "volumes", sources, splits, SPEC, progress=False)
