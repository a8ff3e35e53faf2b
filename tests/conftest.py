"""Shared fixtures: a tiny trained run (slice store + tinycnn-gap) used by explain/evaluate tests.

Trained once per test session because training is the slow part.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braincam.data.slices import SliceSource

# under CI=true a pytest.importorskip of a missing module fails instead of skipping
from builders.reference import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

SHAPE = (20, 22, 18)


def _subject(dir_: Path, pid: str, label: str, rng: np.random.Generator) -> SliceSource:
    """A small 'brain' ellipsoid; class b has a bright blob near the centre (its mask, named as a
    lesion mask so that evaluate-cams scores lesion hit rates on it)."""
    i, j, k = np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij")
    brain = ((i - 10) / 8.0) ** 2 + ((j - 11) / 9.0) ** 2 + ((k - 9) / 7.0) ** 2 < 1
    data = brain * (0.3 + 0.05 * rng.standard_normal(SHAPE))
    blob = ((i - 12) ** 2 + (j - 9) ** 2 + (k - 10) ** 2) < 9
    if label == "b":
        data = data + 0.6 * blob
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img_path = dir_ / f"{pid}_fa.nii.gz"
    mask_path = dir_ / f"{pid}_desc-lesion_mask.nii.gz"  # a lesion mask: lesion hit rates too
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), img_path)
    nib.save(nib.Nifti1Image((blob & (label == "b")).astype(np.uint8), affine), mask_path)
    # a second effect's mask next to it, as synth writes for atrophy and ventricle enlargement
    # (evaluate-cams scores the back-projected maps against it too): a box away from the blob
    box = np.zeros(SHAPE, np.uint8)
    box[4:8, 13:17, 5:9] = 1
    nib.save(nib.Nifti1Image(box, affine), dir_ / f"{pid}_desc-ventricles_mask.nii.gz")
    return SliceSource(pid, label, [img_path], mask_path)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto``), give each worker its share of the
    cores: torch and the BLAS would otherwise each start one thread per core in every worker, and
    oversubscribed OpenMP threads spin instead of working. Subprocesses (the CLI tests) inherit it.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(share)
        if "torch" in sys.modules:  # too late for the variables: set torch's pool directly
            sys.modules["torch"].set_num_threads(share)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` (a tally of what other tests recorded) run at the end of the
    session: after pytest-randomly's shuffle, which happens before this hook."""
    last = [item for item in items if item.get_closest_marker("last")]
    items[:] = [item for item in items if not item.get_closest_marker("last")] + last


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # imported here so that collecting the other tests does not load torch and lightning
    from braincam.config import TrainConfig
    from braincam.data.slice_build import build_slice_store
    from braincam.data.slices import SliceSpec
    from braincam.data.splits import make_splits, save_splits
    from braincam.pipeline.train import fit

    root = tmp_path_factory.mktemp("tiny_run")
    rng = np.random.default_rng(0)
    sources = [_subject(root, f"sub-{i:02d}", "ab"[i % 2], rng) for i in range(10)]
    labels = pd.DataFrame(
        {"participant_id": [s.participant_id for s in sources], "label": [s.label for s in sources]}
    )
    splits = make_splits(labels, (0.6, 0.2, 0.2), seed=0)
    work = root / "work"
    save_splits(splits, work / "splits.tsv")
    build_slice_store(
        work / "slices", sources, splits, SliceSpec(per_axis=3, size=32), progress=False
    )
    cfg = TrainConfig(epochs=2, batch_size=8, seed=0, accelerator="cpu", devices=1)
    run = root / "run"
    fit(work, run, model="tinycnn-gap", config=cfg, progress=False)
    return work, run


@pytest.fixture(scope="session")
def volume_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A volume store (tests/builders/volumes.py) and tinycnn3d-gap trained on it briefly."""
    from braincam.pipeline.train import fit
    from builders.volumes import TRAIN, write_volume_work

    root = tmp_path_factory.mktemp("volume_run")
    work = root / "work"
    write_volume_work(work)
    run = root / "run"
    fit(work, run, model="tinycnn3d-gap", config=TRAIN, progress=False)
    return work, run


@pytest.fixture
def tiny_zoo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let training build the tiny test model under the name ``tiny``."""
    from braincam.training import zoo
    from builders.store import tiny_build, tiny_check

    monkeypatch.setattr(zoo, "build_model", tiny_build)
    monkeypatch.setattr(zoo, "check_model_name", tiny_check)


@pytest.fixture(scope="session")
def cam_evaluation_summary(tiny_run: tuple[Path, Path]) -> dict:
    """The tiny run's heatmap evaluation (a few maps; every family but regions)."""
    from braincam.pipeline.evaluate_cams import CamEvalConfig, evaluate_cams

    _, run = tiny_run
    cfg = CamEvalConfig(
        methods=("cam", "gradcam"),
        regions=False,
        max_images=None,
        sanity_images=4,
        deletion_steps=5,
    )
    return evaluate_cams(run, cfg, progress=False)
