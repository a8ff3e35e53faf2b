"""`braincam run` orchestration and the train/evaluate/run CLI on a tiny store and model.

Synthesis and preparation have their own tests; here ``prepare`` is replaced by a recorder and
the slice store is written directly, so the test exercises config → train → evaluate → table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from braincam.cli import app
from braincam.config.prepare import PrepareSection
from braincam.errors import ConfigError
from braincam.pipeline import run as run_mod
from builders.store import write_store


def _config(tmp_path: Path, **extra) -> Path:
    data = {
        "name": "t",
        "bids": str(tmp_path / "bids"),
        "out": str(tmp_path / "ignored"),
        "prepare": {"size": 32},
        "models": ["tiny"],
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "accelerator": "cpu",
            "devices": 1,
            "optimizer": {"name": "adam", "lr": 0.01},
        },
        # the fake prepare writes only what training reads; heatmaps are tested elsewhere
        "cams": {"enabled": False},
        **extra,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "bids").mkdir(exist_ok=True)
    return path


@pytest.fixture
def fake_prepare(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []

    def record(cfg, bids, out, progress):
        calls.append((Path(bids), Path(out), cfg.prepare))
        write_store(Path(out))

    monkeypatch.setattr(run_mod, "_ensure_prepared", record)
    return calls


def test_run_trains_evaluates_and_compares(tmp_path: Path, tiny_zoo, fake_prepare) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(_config(tmp_path)), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    expected = PrepareSection(size=32)  # the config's prepare section, defaults filled in
    assert fake_prepare == [(tmp_path / "bids", out, expected)]
    assert not (tmp_path / "ignored").exists()  # --out overrode the config
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["out"] == str(out) and saved["train"]["optimizer"]["momentum"] == 0.9
    run = out / "runs" / "tiny"
    for name in ("model.pt", "metrics.tsv", "curves.png", "eval_val.json", "eval_test.json"):
        assert (run / name).is_file(), name
    assert "| tiny |" in (out / "comparison.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"training", "evaluation", "comparison"}
    assert summary["evaluation"]["tiny"]["test"]["subjects"] == 2
    assert "| model |" in result.output


def test_run_config_errors_name_the_key(tmp_path: Path, tiny_zoo, fake_prepare) -> None:
    with pytest.raises(ConfigError, match=r"models\.0: unknown model 'nope'"):
        run_mod.run_experiment(_config(tmp_path, models=["nope"]), out=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"prepare\.sizee: unknown key"):
        run_mod.run_experiment(_config(tmp_path, prepare={"sizee": 3}), out=tmp_path / "o")
    cfg = _config(tmp_path, synth={"subjectz": 3})
    with pytest.raises(ConfigError, match=r"synth\.subjectz: unknown key"):
        run_mod.run_experiment(cfg, bids=None, out=tmp_path / "o")
    assert fake_prepare == []  # nothing ran before the config was known to be good


def test_cli_train_and_evaluate(tmp_path: Path, tiny_zoo) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["train", str(work), str(run), "--model", "tiny", "--epochs", "1"]
    args += ["--batch-size", "8", "--accelerator", "cpu", "--devices", "1", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained tiny: best epoch 0" in result.output
    result = runner.invoke(app, ["evaluate", str(run), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert (run / "eval_test.json").is_file() and not (run / "eval_val.json").exists()
    assert "subject acc" in result.output


def test_cli_bad_value_is_a_config_error(tmp_path: Path, tiny_zoo) -> None:
    work = write_store(tmp_path / "work")
    result = CliRunner().invoke(
        app, ["train", str(work), str(tmp_path / "r"), "--model", "tiny", "--lr", "-1"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "optimizer.lr: must be > 0, got -1" in str(result.exception)
