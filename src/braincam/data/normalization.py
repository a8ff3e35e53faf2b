"""Input z-scoring: raw store images to the model's input scale (the train split's statistics).

Not to be confused with the min-max scaling of heatmaps (:func:`braincam.cam.postprocess.
normalize_maps`): this acts on images, per channel, with statistics recorded at training time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def zscore(images: Tensor, record: dict[str, Any]) -> Tensor:
    """Z-score raw store images ``(N, C, S, S)`` (or volumes ``(N, C, X, Y, Z)``) with the run's
    train-split statistics.

    ``record["normalization"]`` holds ``mean`` and ``std`` per channel (see
    :func:`braincam.training.loading.load_trained`).
    """
    norm = record["normalization"]
    shape = (1, -1, *([1] * (images.ndim - 2)))  # per channel, whatever the spatial rank
    mean = torch.tensor(norm["mean"], dtype=images.dtype, device=images.device).view(shape)
    std = torch.tensor(norm["std"], dtype=images.dtype, device=images.device).view(shape)
    return (images - mean) / std
