"""Issue 12, training side: broken or unsafe checkpoints, exact resume, a quiet CLI."""

from __future__ import annotations

import logging
import pickle
import warnings
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from braincam.data.normalization import zscore
from braincam.errors import InputError
from braincam.pipeline import train as train_mod
from braincam.pipeline.train import fit
from braincam.training.loading import load_trained
from braincam.training.module import read_metrics
from builders.cli import run_cli
from builders.store import quick_config, write_store

pytestmark = pytest.mark.usefixtures("tiny_zoo")  # a tiny GAP CNN stands in for the zoo
AUGMENT = {"hflip": {"p": 0.5}, "noise": {"p": 0.5, "std": 0.1}}


class _Evil:
    def __reduce__(self):  # what a malicious pickle would run on load
        return (print, ("pwned",))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _unsafe(path: Path) -> None:
    torch.save({"state_dict": {}, "evil": _Evil()}, path)


def _garbage(path: Path) -> None:
    path.write_bytes(pickle.dumps("not a checkpoint"))


def _foreign(path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, path)  # loads, but is not a braincam checkpoint


BREAKERS = {"truncated": _truncate, "unsafe": _unsafe, "garbage": _garbage, "foreign": _foreign}


def _check_message(text: str, path: Path) -> None:
    assert str(path) in text
    assert "not a valid braincam checkpoint" in text
    assert "--no-resume" in text
    assert "weights_only=False" not in text and "will likely succeed" not in text


@pytest.mark.parametrize("kind", list(BREAKERS))
def test_broken_last_checkpoint_on_resume(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    fit(work, run, model="tiny", config=quick_config(epochs=1), progress=False)
    last = run / "checkpoints" / "last.ckpt"
    BREAKERS[kind](last)
    with pytest.raises(InputError) as info:
        fit(work, run, model="tiny", config=quick_config(epochs=2), progress=False)
    _check_message(str(info.value), last)
    # The same through the CLI: one message, exit 2, no traceback.
    args = ["train", str(work), str(run), "--model", "tiny", "--epochs", "2", "--no-progress"]
    result = run_cli(args, capsys)
    assert result.exc is None and "Traceback" not in result.text
    assert result.code == 2
    _check_message(result.err, last)
    # --no-resume starts over.
    fit(work, run, model="tiny", config=quick_config(epochs=1), resume=False, progress=False)
    assert read_metrics(run)["epoch"].tolist() == [0]


@pytest.mark.parametrize("kind", ["truncated", "unsafe", "foreign"])
def test_broken_model_file(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    fit(work, run, model="tiny", config=quick_config(epochs=1), progress=False)
    BREAKERS[kind](run / "model.pt")
    with pytest.raises(InputError) as info:
        load_trained(run)
    _check_message(str(info.value), run / "model.pt")
    result = run_cli(["evaluate", str(run)], capsys)
    assert result.exc is None and "Traceback" not in result.text and result.code == 2
    _check_message(result.err, run / "model.pt")


def test_weights_file_refusal_gives_no_unsafe_advice(tmp_path: Path) -> None:
    from braincam.errors import ModelError
    from braincam.models.weights import load_state_file

    path = tmp_path / "w.pth"
    _unsafe(path)
    with pytest.raises(ModelError) as info:
        load_state_file(path)
    assert "unsafe" in str(info.value) and "weights_only=False" not in str(info.value)


class _StopAt(L.Callback):
    """Raise in the middle of an epoch, as a crash (or kill) would stop the run."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError("stopped")


def _predictions(run: Path, work: Path) -> torch.Tensor:
    import numpy as np

    model, record = load_trained(run)
    images = torch.from_numpy(np.load(work / "slices" / "images.npy"))
    with torch.no_grad():
        return model(zscore(images, record))


# Warm-up + cosine (LambdaLR state) and the smoothed loss (a running average in the checkpoint)
# must resume as exactly as the plain run.
STABLE = {"schedule": {"name": "cosine", "warmup_epochs": 1},
          "checkpoint": {"monitor": "val_loss_smooth"}}  # fmt: skip


@pytest.mark.parametrize("extra", [{}, STABLE], ids=["plain", "warmup-smooth"])
def test_resume_after_a_stop_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict
) -> None:
    work = write_store(tmp_path / "work")
    cfg = quick_config(epochs=3, seed=3, augment=AUGMENT, batch_size=4, **extra)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(work, straight, model="tiny", config=cfg, progress=False)

    real_trainer = train_mod._make_trainer

    def stopping_trainer(cfg, run_dir, callbacks, progress):
        return real_trainer(cfg, run_dir, [*callbacks, _StopAt(epoch=2, batch=3)], progress)

    monkeypatch.setattr(train_mod, "_make_trainer", stopping_trainer)
    with pytest.raises(RuntimeError, match="stopped"):
        fit(work, resumed, model="tiny", config=cfg, progress=False)
    monkeypatch.setattr(train_mod, "_make_trainer", real_trainer)
    assert read_metrics(resumed)["epoch"].tolist() == [0, 1]  # stopped in epoch 2
    fit(work, resumed, model="tiny", config=cfg, progress=False)

    pd.testing.assert_frame_equal(read_metrics(straight), read_metrics(resumed))
    a, rec_a = load_trained(straight)
    b, rec_b = load_trained(resumed)
    assert rec_a["best_epoch"] == rec_b["best_epoch"]
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key
    for name in ("best.ckpt", "last.ckpt"):
        ca = torch.load(straight / "checkpoints" / name, weights_only=True)
        cb = torch.load(resumed / "checkpoints" / name, weights_only=True)
        for key, value in ca["state_dict"].items():
            assert torch.equal(value, cb["state_dict"][key]), (name, key)
    # Test-split metrics are the same (they come from the same weights on the same slices).
    from braincam.pipeline.evaluate import evaluate_run

    ea = evaluate_run(straight, splits=["test"], work_dir=work)["test"]
    eb = evaluate_run(resumed, splits=["test"], work_dir=work)["test"]
    assert ea["loss"] == eb["loss"] and ea["accuracy"] == eb["accuracy"]
    assert torch.equal(_predictions(straight, work), _predictions(resumed, work))
    # A different seed gives a different run, so the equalities above are not vacuous.
    other = tmp_path / "other"
    fit(work, other, model="tiny", config=cfg.model_copy(update={"seed": 4}), progress=False)
    assert not torch.equal(_predictions(other, work), _predictions(straight, work))


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    from braincam.training.datamodule import EpochShuffle

    s = EpochShuffle(20, seed=1)
    first = list(s)
    torch.manual_seed(123)  # the global RNG does not matter
    assert list(s) == first
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(20)) and second != first
    assert list(EpochShuffle(20, seed=2)) != first


def test_quiet_cli_filters_third_party_noise_only() -> None:
    from braincam.cli._app import quiet_third_party

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn(
            "`torch.utils._pytree._register_pytree_node` is deprecated. Please use ...",
            FutureWarning,
            stacklevel=1,
        )
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
        )
        warnings.warn(
            "Warning: 'partition' will ignore the 'mask' of the MaskedArray.",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("class 'old' has only 2 subject(s)", UserWarning, stacklevel=1)  # ours
    assert [str(w.message) for w in seen] == ["class 'old' has only 2 subject(s)"]

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = Keep()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        logger.info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
        logger.info("GPU available: False, used: False")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [r.getMessage() for r in records] == ["GPU available: False, used: False"]


def test_train_cli_prints_no_third_party_noise(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    work = write_store(tmp_path / "work")
    code = "from braincam.cli import main; main()"
    args = ["train", str(work), str(tmp_path / "run"), "--model", "tinycnn-gap", "--epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "trained tinycnn-gap" in out  # ours is kept
    for noise in ("💡", "litlogger", "LeafSpec", "_register_pytree_node", "'partition'"):
        assert noise not in out, (noise, out)
