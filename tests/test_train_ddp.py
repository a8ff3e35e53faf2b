"""DDP: two CPU processes (gloo on loopback) train to completion through Lightning's launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from test_train import write_store

TESTS_DIR = Path(__file__).resolve().parent


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
    # A script file (not `python -c`): Lightning's DDP launcher re-runs sys.argv for rank 1,
    # and both ranks substitute the tiny test model for the zoo the same way.
    script = tmp_path / "ddp_train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(TESTS_DIR)!r})
            from test_train import quick_config, tiny_build, tiny_check
            from braincam import train

            train.build_model = tiny_build
            train.check_model_name = tiny_check
            cfg = quick_config(epochs=2, devices=2, strategy="ddp", accelerator="cpu")
            summary = train.fit({str(work)!r}, {str(run)!r}, model="tiny", config=cfg,
                                progress=False)
            if summary is not None:
                print("RANK0 DONE", summary["epochs_run"], flush=True)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=_ddp_env(),
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANK0 DONE 2" in proc.stdout
    assert proc.stdout.count("RANK0 DONE") == 1  # only global rank 0 writes the results
    assert "world_size=2" in proc.stderr or "GLOBAL_RANK: 1" in proc.stderr
    table = pd.read_csv(run / "metrics.tsv", sep="\t")
    assert table["epoch"].tolist() == [0, 1]
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["record"]["train_config"]["strategy"] == "ddp"
    assert saved["record"]["train_config"]["devices"] == 2
