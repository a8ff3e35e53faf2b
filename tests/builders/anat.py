"""Structural test inputs: a tissue-weighted contrast, a tiny synthetic T1w/T2w/FLAIR cohort,
one subject through the common runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from braincam.cohort import runner
from braincam.modalities.anat.modality import ANAT
from braincam.synth import anat as sa


def process_anat_subject(record, work_dir, params, *, force=False):
    """One structural subject through the common batch runner."""
    return runner.process_subject(ANAT, record, work_dir, params, force=force)


def contrast(tpl, weights: tuple[float, float, float]) -> np.ndarray:
    csf, gm, wm = weights
    return (tpl.csf * csf + tpl.gm * gm + tpl.wm * wm).astype(np.float32)


def anat_bids(tmp_path_factory: pytest.TempPathFactory, template) -> Path:
    """3 subjects at 4 mm (seed 2) with ground truth."""
    config = sa.AnatSynthConfig(subjects=3, seed=2, voxel_size=4.0)
    out = tmp_path_factory.mktemp("anat") / "bids"
    return sa.synthesize_anat(out, config, progress=False, template=template)
