"""A trained run back: the best model (eval mode) and its record — without importing Lightning.

``RUN/model.pt`` holds ``{"state_dict": best weights, "record": JSON-able record}`` and loads
with ``torch.load(weights_only=True)``; explaining or evaluating a model needs torch only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from braincam.errors import InputError, ModelError
from braincam.layout import RunLayout
from braincam.training import zoo

RECORD_FORMAT = "braincam-trained-model/1"


def load_trained(
    run_dir: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """The best model of a run (eval mode, on ``device``) and its record.

    The record holds ``model``, ``classes``, ``normalization`` (``mean``/``std`` per channel —
    apply :func:`braincam.data.normalization.zscore` to raw store images before calling the
    model), ``split``, ``input``, ``train_config`` and ``versions``.
    """
    path = RunLayout(run_dir).model
    if not path.is_file():
        raise InputError("no trained model in the run directory (run `braincam train`)", path=path)
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise InputError(f"cannot read trained model: {exc}", path=path) from None
    record = saved.get("record", {})
    if record.get("format") != RECORD_FORMAT:
        raise InputError("not a braincam model file", path=path, value=record.get("format"))
    cfg = record["model_config"]
    model = zoo.build_model(
        record["model"],
        in_channels=cfg["in_channels"],
        num_classes=cfg["num_classes"],
        weights=None,
        dropout=cfg["dropout"],
    )
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"weights in {path} do not match {record['model']}: {exc}") from None
    return model.to(device).eval(), record
