"""DDP: two CPU processes (gloo on loopback) train to completion through Lightning's launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from builders.store import write_store


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        GLOO_SOCKET_IFNAME="lo",
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )
    return env


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_to_completion(tmp_path: Path) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    braincam = Path(sys.executable).parent / "braincam"
    cmd = [str(braincam), "train", str(work), str(run), "--model", "tinycnn-gap"]
    cmd += ["--epochs", "2", "--batch-size", "8", "--optimizer", "adam", "--lr", "0.01"]
    cmd += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress"]
    # Lightning's DDP launcher re-runs this command line for rank 1; gloo talks over loopback.
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_ddp_env(), timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr and "distributed_backend=gloo" in proc.stderr
    assert proc.stdout.count("trained tinycnn-gap") == 1  # only global rank 0 reports
    table = pd.read_csv(run / "metrics.tsv", sep="\t")
    assert table["epoch"].tolist() == [0, 1]
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["record"]["train_config"]["strategy"] == "ddp"
    assert saved["record"]["train_config"]["devices"] == 2


@pytest.mark.slow
def test_ddp_trains_a_3d_model_on_a_volume_store(tmp_path: Path) -> None:
    from builders.volumes import write_volume_work

    store = write_volume_work(tmp_path / "work")
    run = tmp_path / "run"
    braincam = Path(sys.executable).parent / "braincam"
    cmd = [str(braincam), "train", str(tmp_path / "work"), str(run), "--model", "tinycnn3d-gap"]
    cmd += ["--epochs", "2", "--batch-size", "2", "--optimizer", "adam", "--lr", "0.01"]
    cmd += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_ddp_env(), timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr
    table = pd.read_csv(run / "metrics.tsv", sep="\t")
    assert table["epoch"].tolist() == [0, 1]
    # The validation subjects of both ranks are gathered: one volume per subject.
    assert table["val_subject_acc"].notna().all()
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["record"]["representation"] == "volume"
    assert saved["record"]["split"]["val"] == sorted(store.subjects("val"))
