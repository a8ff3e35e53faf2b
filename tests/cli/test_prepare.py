"""`braincam prepare --modality anat`: a missing contrast is one clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from braincam.errors import InputError
from braincam.synth import anat as sa
from braincam.synth.anatomy import load_template
from builders.anat import anat_bids


@pytest.fixture(scope="module")
def bids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return anat_bids(tmp_path_factory, load_template(4.0))


def test_cli_prepare_anat_missing_contrast_is_a_clear_error(bids: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from braincam.cli import app

    copy = tmp_path / "bids"
    shutil.copytree(bids, copy)
    sa.anat_paths(copy, "sub-03")["T2w"].unlink()
    args = ["prepare", str(copy), str(tmp_path / "work"), "--label", "group"]
    result = CliRunner().invoke(app, [*args, "--modality", "anat", "--no-progress"])
    assert result.exit_code != 0 and isinstance(result.exception, InputError)
    assert result.exception.subject == "sub-03" and "T2w" in str(result.exception)
    assert result.exception.path == str(copy / "sub-03" / "anat" / "sub-03_T2w.nii.gz")
