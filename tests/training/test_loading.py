"""Loading a trained run: the model and its record come back without importing Lightning."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from braincam.errors import InputError
from braincam.training.loading import load_trained


def test_load_trained_without_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no trained model"):
        load_trained(tmp_path)


def test_loading_and_zscoring_do_not_import_lightning(tiny_run: tuple[Path, Path]) -> None:
    """A fresh interpreter loads the run, z-scores a batch and runs the model: no Lightning."""
    _, run = tiny_run
    code = textwrap.dedent(
        f"""
        import sys
        import torch
        from braincam.data.normalization import zscore
        from braincam.training.loading import load_trained

        model, record = load_trained({str(run)!r})
        x = zscore(torch.rand(2, record["input"]["channels"], 32, 32), record)
        assert model(x).shape == (2, len(record["classes"]))
        roots = ("lightning", "pytorch_lightning")
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in roots)
        print("LEAKED", leaked)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEAKED []" in proc.stdout, proc.stdout


def test_import_time_shows_no_lightning() -> None:
    """``python -X importtime`` of the loader lists no Lightning module."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import braincam.training.loading"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "braincam.training.loading" in imported
    assert not [m for m in imported if m.split(".")[0] in ("lightning", "pytorch_lightning")]
