"""What every family of ``evaluate-cams`` needs, loaded once: model, store, maps, inputs.

Explaining comes first (``explain_run`` skips maps already written), then the model and the
store are loaded and the split's inputs z-scored as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from braincam.pipeline.explain import ExplainResult, explain_run

if TYPE_CHECKING:
    from braincam.pipeline.evaluate_cams import CamEvalConfig


@dataclass
class CamContext:
    """What every metric family needs, loaded once."""

    model: nn.Module
    record: dict[str, Any]
    store: Any
    explained: ExplainResult
    table: pd.DataFrame  # slices.tsv of the split
    images: Tensor  # normalized model inputs (n, C, S, S); volume store: (n, C, X, Y, Z)
    targets: Tensor  # explained class per slice
    maps: dict[str, Tensor]  # method → (n, S, S); volume store: (n, X, Y, Z)
    model_name: str
    generator: torch.Generator


def load_context(run_dir: Path, cfg: CamEvalConfig, progress: bool) -> CamContext:
    """Explain the run's split with ``cfg.methods`` (if not done yet) and load everything."""
    from braincam.data.normalization import zscore
    from braincam.data.volumes import open_any_store
    from braincam.training.loading import load_trained

    explained = explain_run(run_dir, cfg.explain_config(), progress=progress)
    model, record = load_trained(run_dir)
    store = open_any_store(record["store"])
    table = explained.slices()
    rows = table["store_row"].to_numpy()
    images = zscore(torch.from_numpy(np.asarray(store.images[rows])), record)
    maps = {m: torch.from_numpy(np.array(explained.maps(m))) for m in cfg.methods}
    return CamContext(
        model=model,
        record=record,
        store=store,
        explained=explained,
        table=table,
        images=images,
        targets=torch.as_tensor(table["explained"].to_numpy().copy()),
        maps=maps,
        model_name=str(record["model"]),
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def is_volume_context(ctx: CamContext) -> bool:
    """True when the explained samples are whole volumes (a volume store), not slices."""
    return ctx.images.ndim == 5


def subsample(n: int, limit: int | None, generator: torch.Generator) -> Tensor:
    """``limit`` sorted random indices of ``n`` (all of them when ``limit`` is None or ≥ n)."""
    if limit is None or n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:limit].sort().values


def brain_pixels(ctx: CamContext, pick: Tensor) -> Tensor:
    """Brain pixels of the picked slices: the store's brain masks, or (stores built before they
    were kept) raw intensity above zero (FA and skull-stripped T1 backgrounds are 0)."""
    rows = ctx.table["store_row"].to_numpy()[pick.numpy()]
    if ctx.store.brain is not None:
        return torch.from_numpy(np.asarray(ctx.store.brain[rows]) > 0)
    raw = torch.from_numpy(np.asarray(ctx.store.images[rows]))
    return (raw > 0).any(1)
