"""Tiny BIDS diffusion datasets: gradient schemes, DWI volumes of a known tensor, masks."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SHAPE = (12, 12, 9)


AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


EVALS = (1.7e-3, 0.3e-3, 0.3e-3)  # prolate tensor: FA ≈ 0.80


def gradient_scheme(n_b0: int = 2, n_dirs: int = 12, seed: int = 0) -> tuple[np.ndarray, ...]:
    """bvals (n,), unit bvecs (n, 3) with zero vectors for the b=0 volumes."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_dirs, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    bvals = np.r_[np.zeros(n_b0), np.full(n_dirs, 1000.0)]
    bvecs = np.r_[np.zeros((n_b0, 3)), dirs]
    return bvals, bvecs


def brain_ball(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    axes = [np.linspace(-1, 1, s) for s in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x**2 + y**2 + z**2) < 0.55


def dwi_data(
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    shape: tuple[int, int, int] = SHAPE,
    evals: tuple[float, float, float] = EVALS,
    noise: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """A ball of one tensor (S0 = 1000) on a dim background, with Gaussian noise (magnitude)."""
    rng = np.random.default_rng(seed)
    d = np.diag(evals)
    signal = 1000.0 * np.exp(-bvals * np.einsum("ni,ij,nj->n", bvecs, d, bvecs))
    data = np.full((*shape, len(bvals)), 20.0)
    data[brain_ball(shape)] = signal
    if noise:
        data = np.abs(data + rng.normal(0.0, noise, data.shape))
    return data.astype(np.float32)


def write_dwi(
    folder: Path,
    stem: str,
    *,
    seed: int = 0,
    shape: tuple[int, int, int] = SHAPE,
    n_dirs: int = 12,
    evals: tuple[float, float, float] = EVALS,
    noise: float = 4.0,
) -> dict[str, Path]:
    """Write ``stem.nii.gz/.bval/.bvec`` (FSL layout) into ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    bvals, bvecs = gradient_scheme(n_dirs=n_dirs, seed=seed)
    data = dwi_data(bvals, bvecs, shape=shape, evals=evals, noise=noise, seed=seed)
    paths = {
        "dwi": folder / f"{stem}.nii.gz",
        "bval": folder / f"{stem}.bval",
        "bvec": folder / f"{stem}.bvec",
    }
    nib.save(nib.Nifti1Image(data, AFFINE), paths["dwi"])
    np.savetxt(paths["bval"], bvals[None], fmt="%g")
    np.savetxt(paths["bvec"], bvecs.T, fmt="%.8f")
    return paths


def write_mask(path: Path, shape: tuple[int, int, int] = SHAPE) -> Path:
    """A small cube mask on the DWI grid (uint8)."""
    mask = np.zeros(shape, np.uint8)
    mask[4:7, 4:7, 3:6] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(mask, AFFINE), path)
    return path


def make_bids(
    root: Path,
    labels: dict[str, str],
    *,
    sessions: tuple[str, ...] = (),
    runs: tuple[str, ...] = (),
    with_masks: bool = False,
    extra_columns: dict[str, dict[str, str]] | None = None,
    noise: float = 4.0,
) -> Path:
    """A BIDS dataset with one DWI per (subject, session, run) and participants.tsv."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "test", "BIDSVersion": "1.9.0"})
    )
    rows = []
    for i, (pid, label) in enumerate(sorted(labels.items())):
        row = {"participant_id": pid, "group": label}
        for col, values in (extra_columns or {}).items():
            row[col] = values[pid]
        rows.append(row)
        for j, ses in enumerate(sessions or (None,)):
            for k, run in enumerate(runs or (None,)):
                parts = [pid] + ([f"ses-{ses}"] if ses else []) + ([f"run-{run}"] if run else [])
                folder = root / pid / (f"ses-{ses}" if ses else "") / "dwi"
                write_dwi(folder, "_".join([*parts, "dwi"]), seed=100 * i + 10 * j + k, noise=noise)
        if with_masks:
            gt = root / "derivatives" / "groundtruth" / pid / "dwi"
            write_mask(gt / f"{pid}_desc-effect_mask.nii.gz")
    if with_masks:
        (root / "derivatives" / "groundtruth" / "dataset_description.json").write_text(
            json.dumps({"Name": "gt", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
        )
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


LABELS = {"sub-01": "young", "sub-02": "old", "sub-03": "young", "sub-04": "old"}


def failure_of(result, pid: str):
    matches = [f for f in result.failures if f.participant_id == pid]
    assert matches, f"no failure recorded for {pid}: {result.failures}"
    return matches[0]
