"""Fixtures of the structural-modality tests: the 4 mm template and a 3-subject cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from braincam.synth.anatomy import load_template
from builders.anat import anat_bids


@pytest.fixture(scope="module")
def template():
    return load_template(4.0)


@pytest.fixture(scope="module")
def bids(tmp_path_factory: pytest.TempPathFactory, template) -> Path:
    return anat_bids(tmp_path_factory, template)
