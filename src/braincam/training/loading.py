"""A trained run back: the best model (eval mode) and its record — without importing Lightning.

``RUN/model.pt`` holds ``{"state_dict": best weights, "record": JSON-able record}`` and loads
with ``torch.load(weights_only=True)``; explaining or evaluating a model needs torch only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from braincam.errors import InputError, ModelError
from braincam.guard import load_refusal
from braincam.layout import RunLayout
from braincam.training import zoo

RECORD_FORMAT = "braincam-trained-model/1"
CHECKPOINT_HINT = "`braincam train --no-resume` starts the run over"


def read_checkpoint(
    path: str | Path,
    *,
    keys: tuple[str, ...] = ("state_dict",),
    device: str | torch.device = "cpu",
) -> dict:
    """``torch.load(path, weights_only=True)`` of a braincam checkpoint or model file.

    A truncated, foreign or unsafe file raises InputError naming it, saying it is not a valid
    braincam checkpoint and that ``--no-resume`` starts over.
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        reason = load_refusal(exc)
        data = None
    else:
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        reason = f"keys {missing} missing" if missing else ""
    if reason:
        raise InputError(
            f"not a valid braincam checkpoint ({reason}); {CHECKPOINT_HINT}", path=path
        ) from None
    return data  # type: ignore[return-value]


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
    saved = read_checkpoint(path, keys=("state_dict", "record"), device=device)
    record = saved.get("record", {})
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise InputError(
            f"not a valid braincam checkpoint (not a braincam model file); {CHECKPOINT_HINT}",
            path=path,
            value=record.get("format") if isinstance(record, dict) else type(record).__name__,
        )
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
