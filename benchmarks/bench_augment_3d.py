"""3-D augmentation on the CPU: TorchIO vs MONAI, against one training step of ``sfcn3d-gap``.

    PYTHONPATH=src:<dir with torchio> python benchmarks/bench_augment_3d.py \
        [--batch 4] [--repeats 5] [--threads 1] [--shapes 64x64x64 96x112x96]

For each volume shape, a batch of ``--batch`` 1-channel float32 volumes (a brain-like ellipsoid
of positive intensities on a zero background) is augmented sample by sample, as a data-loader
worker does on ``(C, D, H, W)`` tensors, by each library's flip (left-right axis), small affine
(±10°, scale 0.95–1.05, bilinear, zero padding), bias field (order 3, coefficients ±0.3),
Gaussian noise (std 0.1) and the four chained; every transform fires (p = 1: the worst case).
The last row is braincam's own :class:`~braincam.data.augment3d.VolumeAugmenter` (MONAI, the
library chosen) with the same four from a train config, as training runs it (MONAI's default
MetaTensor tracking on; the library rows time plain tensors, tracking off).
The reference is one SGD step (forward, cross-entropy, backward, update) of ``sfcn3d-gap`` on
the same batch. Every figure is the median of ``--repeats`` rounds; within a round the cells run
one after the other (interleaved), so a change of machine load hits all of them alike.
Overhead = augmentation time of the batch / training-step time (serial: ``num_workers=0``; with
workers it runs beside the step). TorchIO is optional (not a braincam dependency): without it
only MONAI is measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from braincam.models import build_model

Transform = Callable[[torch.Tensor], torch.Tensor]
LR_AXIS = 0  # the left-right axis of a (D, H, W) volume in RAS+ orientation
DEGREES, SCALE, BIAS, NOISE = 10.0, 0.05, 0.3, 0.1


def brain_like(batch: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """(batch, 1, *shape) float32: a smooth positive ellipsoid on zeros, plus texture."""
    gen = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1, 1, n) for n in shape]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    inside = (zz / 0.8) ** 2 + (yy / 0.85) ** 2 + (xx / 0.8) ** 2 < 1
    texture = torch.rand((batch, 1, *shape), generator=gen)
    return (inside * (0.5 + 0.5 * texture)).float()


def monai_transforms() -> dict[str, Transform]:
    """MONAI's array transforms (plain tensors out: MetaTensor tracking off while timed)."""
    import monai.transforms as mt

    rad = DEGREES * torch.pi / 180
    cells: dict[str, Transform] = {
        "flip": mt.RandFlip(prob=1.0, spatial_axis=LR_AXIS),
        "affine": mt.RandAffine(
            prob=1.0,
            rotate_range=(rad, rad, rad),
            scale_range=(SCALE, SCALE, SCALE),
            mode="bilinear",
            padding_mode="zeros",
        ),
        "bias field": mt.RandBiasField(degree=3, coeff_range=(-BIAS, BIAS), prob=1.0),
        "noise": mt.RandGaussianNoise(prob=1.0, std=NOISE, sample_std=False),
    }
    for i, t in enumerate(cells.values()):
        t.set_random_state(seed=i)  # type: ignore[attr-defined]
    cells["all four"] = mt.Compose(list(cells.values()))
    return cells


def torchio_transforms() -> dict[str, Transform] | None:
    """TorchIO's transforms on (C, D, H, W) tensors; ``None`` if TorchIO is not installed."""
    try:
        import torchio as tio
    except ImportError:
        return None
    cells: dict[str, Transform] = {
        "flip": tio.RandomFlip(axes=(LR_AXIS,), flip_probability=1.0),
        "affine": tio.RandomAffine(
            scales=SCALE,
            degrees=DEGREES,
            isotropic=True,
            default_pad_value=0.0,
            image_interpolation="linear",
        ),
        "bias field": tio.RandomBiasField(coefficients=BIAS, order=3),
        "noise": tio.RandomNoise(std=(NOISE, NOISE)),
    }
    cells["all four"] = tio.Compose(list(cells.values()))
    return cells


def braincam_augmenter() -> Transform:
    """The four as a train config's ``augment`` section sets them, built by braincam."""
    from braincam.config import AugmentConfig
    from braincam.data.augment3d import VolumeAugmenter

    cfg = AugmentConfig.model_validate(
        {
            "hflip": {"p": 1.0},
            "affine": {"p": 1.0, "degrees": DEGREES, "scale": [1 - SCALE, 1 + SCALE]},
            "bias_field": {"p": 1.0, "coefficients": BIAS, "order": 3},
            "noise": {"p": 1.0, "std": NOISE},
        }
    )
    return VolumeAugmenter(cfg, seed=0, lr_axis=LR_AXIS)


def augment_seconds(transform: Transform, batch: torch.Tensor) -> float:
    """Seconds to augment every sample of ``batch`` (as a worker does, one by one)."""
    start = time.perf_counter()
    for sample in batch:
        out = transform(sample)
        assert out.shape == sample.shape
    return time.perf_counter() - start


class Step:
    """One SGD training step of a zoo model on a fixed batch."""

    def __init__(self, model: str, batch: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.net = build_model(model, in_channels=1, num_classes=2).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=1e-3, momentum=0.9)
        self.x = batch
        self.y = torch.arange(batch.shape[0]) % 2

    def __call__(self) -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(self.net(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return time.perf_counter() - start


def run_shape(
    shape: tuple[int, int, int], batch_size: int, repeats: int, model: str
) -> list[tuple[str, str, float, float]]:
    """(library, transform, median seconds per batch, overhead ratio) rows for one shape."""
    from monai.data import set_track_meta

    batch = brain_like(batch_size, shape)
    libraries = {"MONAI": monai_transforms()}
    tio_cells = torchio_transforms()
    if tio_cells is not None:
        libraries["TorchIO"] = tio_cells
    ours = braincam_augmenter()
    step = Step(model, batch)
    step()  # warm-up: allocator, first-call dispatch
    for cells in libraries.values():
        for t in cells.values():
            augment_seconds(t, batch[:1])
    augment_seconds(ours, batch[:1])
    times: dict[tuple[str, str], list[float]] = {}
    step_times: list[float] = []
    for _ in range(repeats):
        step_times.append(step())
        set_track_meta(False)
        try:
            for lib, cells in libraries.items():
                for name, t in cells.items():
                    times.setdefault((lib, name), []).append(augment_seconds(t, batch))
        finally:
            set_track_meta(True)
        key = ("braincam (MONAI)", "VolumeAugmenter, all four")
        times.setdefault(key, []).append(augment_seconds(ours, batch))
    step_s = statistics.median(step_times)
    rows = [("—", f"training step ({model})", step_s, 1.0)]
    for (lib, name), ts in times.items():
        rows.append((lib, name, statistics.median(ts), statistics.median(ts) / step_s))
    return rows


def main() -> None:
    """Print one Markdown table per volume shape."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="sfcn3d-gap")
    parser.add_argument("--shapes", nargs="+", default=["64x64x64", "96x112x96"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    versions = {"torch": torch.__version__}
    import monai

    versions["monai"] = monai.__version__
    try:
        import torchio

        versions["torchio"] = torchio.__version__
    except ImportError:
        versions["torchio"] = "not installed"
    print(f"torch threads {torch.get_num_threads()}, {versions}, load {os.getloadavg()}")
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split("x"))
        assert len(shape) == 3, text
        rows = run_shape(shape, args.batch, args.repeats, args.model)  # type: ignore[arg-type]
        print(f"\n{args.batch} × 1 × {text}, median of {args.repeats}")
        print("| library | transform | s / batch | × training step |\n|---|---|---:|---:|")
        for lib, name, seconds, ratio in rows:
            print(f"| {lib} | {name} | {seconds:.3f} | {ratio:.3f} |")
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
