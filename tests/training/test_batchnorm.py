"""Issue 14: BatchNorm statistics recomputed over the train split before each validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from braincam.pipeline.train import fit
from braincam.training.module import ClassifierModule
from builders.store import quick_config, write_store


def _last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


def test_batchnorm_recalibration_matches_the_train_split(tmp_path: Path) -> None:
    # The real tinycnn-gap (it has BatchNorm; the tests' usual stand-in has none), tiny store.
    work = write_store(tmp_path / "work", size=16, slices=2)
    run = tmp_path / "run"
    fit(work, run, model="tinycnn-gap", config=quick_config(epochs=2, batch_size=4,
        bn_recalibrate=True), progress=False)  # fmt: skip
    ckpt = _last(run)
    module = ClassifierModule(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    names = [n for n, m in module.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert names

    # Independently: with the last weights and every layer normalizing by its batch, the mean
    # over the train batches (store order, 4 per batch) of each layer's per-channel input mean.
    index = pd.read_csv(work / "slices" / "index.tsv", sep="\t")
    train = np.load(work / "slices" / "images.npy")[index.index[index["split"] == "train"]]
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for name in names:
        module.get_submodule(name).register_forward_hook(
            lambda _m, inp, _out, name=name: seen[name].append(inp[0].mean((0, 2, 3)))
        )
    module.model.train()
    with torch.no_grad():
        for start in range(0, len(train), 4):
            batch = torch.from_numpy(train[start : start + 4])
            module.model(module.prepare_images(batch, train=False))
    for name in names:
        expected = torch.stack(seen[name]).mean(0)
        saved = ckpt["state_dict"][f"{name}.running_mean"]
        assert torch.allclose(saved, expected, atol=1e-5), name

    # Without the option the saved statistics are momentum averages, which differ.
    plain = tmp_path / "plain"
    fit(work, plain, model="tinycnn-gap", config=quick_config(epochs=2, batch_size=4),
        progress=False)  # fmt: skip
    key = f"{names[-1]}.running_mean"
    assert not torch.allclose(_last(plain)["state_dict"][key], ckpt["state_dict"][key], atol=1e-5)
