"""benchmarks/gpu_study.sh and its helper: derived configs validate, the report reads the runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import yaml

from braincam.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ("dmri-age-6models", "ms-subtypes-3class")


def _helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_study", ROOT / "benchmarks/gpu_study.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("tiny", [False, True])
def test_derived_configs_validate(study: str, tiny: bool) -> None:
    source = ROOT / "configs" / f"{study}.yaml"
    data = _helper().derive_config(source, precision="16-mixed", channels_last=True, tiny=tiny)
    cfg = parse_config(data)
    assert (cfg.train.precision, cfg.train.channels_last) == ("16-mixed", True)
    full = parse_config(yaml.safe_load(source.read_text()))
    if tiny:
        assert cfg.models == ["tinycnn-gap"] and cfg.train.accelerator == "cpu"
        assert cfg.train.epochs == 1 and not cfg.cams.enabled
    else:
        # Only the GPU options change: the study itself is untouched.
        assert cfg.models == full.models and cfg.train.epochs == full.train.epochs
        assert cfg.prepare == full.prepare


def test_report_summarizes_throughput_tables(tmp_path: Path) -> None:
    helper = _helper()
    run = tmp_path / "study" / "runs" / "net"
    run.mkdir(parents=True)
    pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "train_images": [100, 100, 100],
            "train_seconds": [1.0, 2.0, 4.0],
            "epoch_seconds": [2.0, 3.0, 5.0],
            "images_per_s": [100.0, 50.0, 25.0],
            "peak_gpu_mb": [10.0, 30.0, 20.0],
        }
    ).to_csv(run / "throughput.tsv", sep="\t", index=False)
    table = helper.study_table([tmp_path / "study"])
    assert table.to_dict("records") == [
        {
            "study": "study",
            "model": "net",
            "epochs": 3,
            "images_per_s": 50.0,
            "seconds_per_epoch": 3.0,
            "peak_gpu_mb": 30.0,
        }
    ]
    assert "| study | net | 3 | 50.0 | 3.0 | 30 |" in helper.markdown(table)
    assert helper.main(["report", str(tmp_path / "nothing")]) == 1


@pytest.mark.slow
def test_tiny_mode_runs_both_studies_on_the_cpu(tmp_path: Path) -> None:
    """The whole script, --tiny: both studies run (bf16 autocast, channels_last) and report."""
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "BRAINCAM": str(bindir / "braincam"),
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(ROOT / "benchmarks/gpu_study.sh"), "--tiny", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(out / "gpu_study.tsv", sep="\t")
    assert sorted(table["study"]) == sorted(STUDIES)
    assert (table["epochs"] == 1).all() and (table["images_per_s"] > 0).all()
    assert table["peak_gpu_mb"].isna().all()  # no GPU here
    assert "| study | model |" in proc.stdout
