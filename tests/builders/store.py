"""A tiny slice store on disk, a tiny model zoo and a quick training config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from braincam.config import TrainConfig
from braincam.errors import ModelError

SPLIT_OF = {
    **{f"sub-{i:02d}": "train" for i in range(1, 9)},
    **{f"sub-{i:02d}": "val" for i in (9, 10)},
    **{f"sub-{i:02d}": "test" for i in (11, 12)},
}


def write_store(
    work: Path, *, size: int = 32, slices: int = 4, channels: int = 1, seed: int = 0
) -> Path:
    """A slice store of 12 subjects (8/2/2); class 'old' has a dim square in the middle."""
    rng = np.random.default_rng(seed)
    rows, images = [], []
    for n, (pid, split) in enumerate(SPLIT_OF.items()):
        target = n % 2
        for pos in range(slices):
            img = 1.0 + 0.1 * rng.standard_normal((channels, size, size))
            if target == 1:
                img[:, size // 4 : size // 2, size // 4 : size // 2] -= 0.6
            images.append(img)
            label = ["young", "old"][target]
            rows.append((pid, label, target, split, "axial", 10 + pos))
    store = work / "slices"
    store.mkdir(parents=True, exist_ok=True)
    np.save(store / "images.npy", np.stack(images).astype(np.float32))
    # pixel → world matrices are not used by training, but a store always has them
    np.save(store / "pixel_to_world.npy", np.zeros((len(rows), 4, 3)))
    cols = ["participant_id", "label", "target", "split", "axis", "position"]
    index = pd.DataFrame(rows, columns=cols).assign(mask_pixels=0)
    index.to_csv(store / "index.tsv", sep="\t", index=False)
    meta = {
        "classes": ["young", "old"],
        "size": size,
        "channels": channels,
        "axes": ["axial"],
        "n_slices": len(rows),
    }
    (store / "meta.json").write_text(json.dumps(meta))
    return work


class TinyGap(nn.Module):
    """conv → ReLU → conv → GAP → dropout → linear, with the zoo's CAM attributes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(8, num_classes)
        self.cam_layer = "features.3"
        self.classifier_layer = "fc"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))


def tiny_build(name: str, *, in_channels=1, num_classes=2, weights=None, dropout=0.5):
    if name != "tiny":
        raise ModelError(f"unknown model {name!r}; valid: ['tiny']")
    return TinyGap(in_channels, num_classes, dropout)


def tiny_check(name: str) -> None:
    tiny_build(name)


def quick_config(**updates) -> TrainConfig:
    base = {
        "epochs": 2,
        "batch_size": 8,
        "accelerator": "cpu",
        "devices": 1,
        "optimizer": {"name": "adam", "lr": 0.01},
    }
    base.update(updates)
    return TrainConfig.model_validate(base)
