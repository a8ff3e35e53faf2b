"""GPU readiness, exercised on the CPU: mixed precision, channels_last, pinned memory, throughput.

A CPU has no fp16 autocast worth testing and no CUDA memory, but bf16 autocast runs on it, and
channels_last is a memory layout any device honours — so the code paths a GPU run takes are
the ones these tests drive.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

from braincam.config import parse_config
from braincam.errors import ConfigError
from braincam.training import zoo
from braincam.training.datamodule import SliceDataModule, open_store
from builders.store import quick_config, tiny_build, write_store


class Seen:
    """What the first conv of the trained model saw in its training forward passes."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def build(self, name: str, **kwargs: Any) -> nn.Module:
        model = tiny_build(name, **kwargs)
        conv = model.features[0]

        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if module.training:
                x = args[0]
                self.calls.append(
                    {
                        "out_dtype": out.dtype,
                        "input_nhwc": x.is_contiguous(memory_format=torch.channels_last)
                        and not x.is_contiguous(),
                        "weight_nhwc": module.weight.is_contiguous(
                            memory_format=torch.channels_last
                        )
                        and not module.weight.is_contiguous(),
                    }
                )

        conv.register_forward_hook(hook)
        return model


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch, tiny_zoo: None) -> Seen:
    record = Seen()
    monkeypatch.setattr(zoo, "build_model", record.build)
    return record


def _fit(tmp_path: Path, **cfg: Any) -> Path:
    from braincam.pipeline.train import fit

    # Two channels: a 1-channel NCHW tensor is also channels_last (its strides are ambiguous).
    work = write_store(tmp_path / "work", size=16, channels=2)
    config = quick_config(epochs=1, limit_train_batches=2, **cfg)
    fit(work, tmp_path / "run", model="tiny", config=config, progress=False)
    return tmp_path / "run"


def test_precision_is_validated_with_the_choices() -> None:
    base = {"models": ["smallcnn-gap"], "synth": {"subjects": 10}}
    for good in ("32-true", "16-mixed", "bf16-mixed"):
        assert parse_config({**base, "train": {"precision": good}}).train.precision == good
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "train": {"precision": "fp16"}})
    message = str(err.value)
    assert "train.precision:" in message and "'fp16'" in message and "bf16-mixed" in message
    assert parse_config(base).train.channels_last is False
    with pytest.raises(ConfigError, match=r"train\.channels_last:"):
        parse_config({**base, "train": {"channels_last": "sometimes"}})


@pytest.mark.parametrize(
    ("precision", "channels_last", "dtype"),
    [
        ("32-true", False, torch.float32),
        ("bf16-mixed", False, torch.bfloat16),
        ("32-true", True, torch.float32),
        ("bf16-mixed", True, torch.bfloat16),
    ],
)
def test_training_steps_in_the_chosen_precision_and_layout(
    tmp_path: Path, seen: Seen, precision: str, channels_last: bool, dtype: torch.dtype
) -> None:
    run = _fit(tmp_path, precision=precision, channels_last=channels_last)
    assert len(seen.calls) == 2  # two training steps
    for call in seen.calls:
        assert call["out_dtype"] == dtype
        assert call["input_nhwc"] is channels_last
        assert call["weight_nhwc"] is channels_last
    metrics = pd.read_csv(run / "metrics.tsv", sep="\t")
    assert len(metrics) == 1 and math.isfinite(metrics["train_loss"].iloc[0])
    # The trained weights load back into a standard (fp32, contiguous) model.
    saved = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert all(v.dtype in (torch.float32, torch.int64) for v in saved.values())
    tiny_build("tiny", in_channels=2).load_state_dict(saved)


def test_throughput_table_on_cpu_has_no_gpu_memory(tmp_path: Path, tiny_zoo: None) -> None:
    from braincam.training.module import THROUGHPUT_COLUMNS, read_throughput

    run = _fit(tmp_path)
    table = read_throughput(run)
    assert table is not None and list(table.columns) == list(THROUGHPUT_COLUMNS)
    row = table.iloc[0]
    assert row["epoch"] == 0 and row["train_images"] == 16  # 2 batches of 8
    assert row["images_per_s"] == pytest.approx(row["train_images"] / row["train_seconds"])
    assert row["epoch_seconds"] >= row["train_seconds"] > 0
    assert pd.isna(row["peak_gpu_mb"])


def test_pinned_memory_only_for_cuda(tmp_path: Path) -> None:
    """Lightning's CPU trainer: the loaders are not pinned (pinning needs a CUDA device)."""
    store = open_store(write_store(tmp_path / "work", size=16) / "slices")
    dm = SliceDataModule(store, batch_size=4, num_workers=0, pin_memory=True)
    assert dm.train_dataloader().pin_memory and dm.val_dataloader().pin_memory
    dm = SliceDataModule(store, batch_size=4)
    assert not dm.train_dataloader().pin_memory and not dm.test_dataloader().pin_memory


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcampp"])
def test_cams_of_a_channels_last_model_match_the_standard_layout(method: str) -> None:
    from braincam.cam import compute_cams
    from braincam.training.module import ClassifierModule

    cfg = quick_config(channels_last=True).model_dump(mode="json")
    torch.manual_seed(0)
    nhwc = ClassifierModule("tinycnn-gap", 2, 2, cfg, [0.0] * 2, [1.0] * 2).model.eval()
    weight = next(p for p in nhwc.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    nchw = copy.deepcopy(nhwc).to(memory_format=torch.contiguous_format)
    x = torch.randn(3, 2, 96, 96)
    ref = compute_cams(nchw, x, method)
    got = compute_cams(nhwc, x.contiguous(memory_format=torch.channels_last), method)
    assert got.shape == ref.shape == (3, 96, 96)
    assert ref.amax() > 0
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
