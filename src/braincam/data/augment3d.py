"""Training-time augmentation of volumes: MONAI transforms on ``(C, D, H, W)`` tensors, per sample.

The train config's ``augment`` section drives it as it drives the 2-D :class:`~braincam.data.
augment.Augmenter`: ``hflip`` (left-right flip), ``affine`` (rotation about each axis, shift,
per-axis scale; trilinear, zero padding), ``bias_field`` and ``noise``, in that order, each with
its probability ``p``. MONAI was chosen over TorchIO by measured CPU throughput
(``benchmarks/bench_augment_3d.py``, BENCHMARKS.md "3-D augmentation (issue 15)"), and it was
already installed.

Unlike the 2-D augmenter, which works on the batch on its device, this one runs in the data
loader (a worker process when ``num_workers > 0``) on one raw volume at a time, *before*
z-scoring: the geometry's zero padding is then the background, and ``noise.std`` (in units of
the z-scored input, as for slices) is scaled by each channel's ``channel_std``.

Random draws: a :class:`VolumeAugmenter` is seeded at construction; in a ``DataLoader`` worker
it reseeds itself on first use from the worker's seed (which torch derives from the main
process's generator, so a seeded run draws the same and no two workers draw alike); ``seed=`` on
a call makes that one sample's draws depend on nothing else. Training uses the latter: the train
split's ``SliceDataset`` (``braincam.training.datamodule``) calls it with a seed derived from
(run seed, epoch, sample), so resumed runs draw exactly what uninterrupted ones do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from braincam.config import AugmentConfig
from braincam.errors import ConfigError, InputError

# Augmentations of the config that volumes take, and the 2-D-only ones they refuse.
VOLUME_KEYS = ("hflip", "affine", "bias_field", "noise")
SLICE_ONLY_KEYS = ("resized_crop", "erasing")
_MAX_SEED = 2**32  # MONAI seeds numpy RandomState: 32-bit


def check_augment_for(cfg: AugmentConfig, spatial_dims: int) -> None:
    """Raise ``ConfigError`` for an augmentation enabled (``p > 0``) that ``spatial_dims``-D
    input does not take: ``resized_crop`` / ``erasing`` on volumes, ``bias_field`` on slices."""
    refused = SLICE_ONLY_KEYS if spatial_dims == 3 else ("bias_field",)
    kind = "volumes" if spatial_dims == 3 else "2-D slices"
    for key in refused:
        p = getattr(cfg, key).p
        if p > 0:
            raise ConfigError(f"train.augment.{key}: not available for {kind} (p is {p}); set p: 0")


def augment_enabled(cfg: AugmentConfig) -> bool:
    """Whether any augmentation a volume takes can fire."""
    return any(getattr(cfg, key).p > 0 for key in VOLUME_KEYS)


class VolumeAugmenter:
    """The configured volume augmentations, a callable on ``(C, D, H, W)`` float tensors.

    ``lr_axis``: the spatial axis (0, 1 or 2 of D, H, W) that runs left-right, flipped by
    ``hflip`` (0 for a volume in RAS+ orientation). ``channel_std``: each channel's raw standard
    deviation (the train split's, as z-scoring uses), scaling ``noise.std``; ``None``: 1.
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        *,
        seed: int = 0,
        lr_axis: int = 0,
        channel_std: Sequence[float] | None = None,
    ) -> None:
        check_augment_for(cfg, 3)
        if lr_axis not in (0, 1, 2):
            raise InputError(f"lr_axis must be 0, 1 or 2 (an axis of D, H, W), got {lr_axis!r}")
        self.cfg = cfg
        self.lr_axis = lr_axis
        self.channel_std = None if channel_std is None else [float(s) for s in channel_std]
        if self.channel_std is not None and not all(s > 0 for s in self.channel_std):
            raise InputError(f"channel_std must be positive, got {self.channel_std}")
        self.seed = int(seed)
        # One list of steps per (channels, *shape): the affine's shift range is in voxels and
        # the noise's std is per channel.
        self._pipelines: dict[tuple[int, ...], list[Any]] = {}
        self._worker: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether any augmentation can fire."""
        return augment_enabled(self.cfg)

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed`` (e.g. at an epoch's start, for exact resume)."""
        self.seed = int(seed)
        for steps in self._pipelines.values():
            _seed_steps(steps, self.seed)

    def __call__(self, volume: Tensor, seed: int | None = None) -> Tensor:
        """One augmented copy of ``volume`` ``(C, D, H, W)`` (same shape and dtype).

        ``seed``: this sample's draws from ``seed`` alone (else the augmenter's stream).
        """
        if volume.ndim != 4 or not volume.is_floating_point():
            raise InputError(
                f"a volume to augment must be a float tensor (C, D, H, W), got "
                f"{volume.dtype} of shape {tuple(volume.shape)}"
            )
        if not self.enabled:
            return volume
        self._follow_worker()
        steps = self._pipeline(tuple(volume.shape[1:]), volume.shape[0])
        if seed is not None:
            _seed_steps(steps, seed)
        out: Any = volume
        for step in steps:
            out = step(out)
        # MONAI may hand back a MetaTensor (and float64 from numpy-side transforms).
        out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
        return out.to(dtype=volume.dtype, device=volume.device)

    def _follow_worker(self) -> None:
        """In a DataLoader worker, reseed once from the worker's own seed."""
        info = torch.utils.data.get_worker_info()
        if info is not None and info.id != self._worker:
            self._worker = info.id
            self.reseed(info.seed)

    def _pipeline(self, shape: tuple[int, ...], channels: int) -> list[Any]:
        key = (channels, *shape)
        if key not in self._pipelines:
            steps = volume_transforms(
                self.cfg, shape, channels, lr_axis=self.lr_axis, channel_std=self.channel_std
            )
            _seed_steps(steps, self.seed)
            self._pipelines[key] = steps
        return self._pipelines[key]


def _seed_steps(steps: list[Any], seed: int) -> None:
    """Seed each step from ``seed`` (distinct streams per step, as MONAI's ``Compose`` does)."""
    seeds = np.random.RandomState(int(seed) % _MAX_SEED).randint(_MAX_SEED, size=len(steps))
    for step, own in zip(steps, seeds, strict=True):
        step.set_random_state(seed=int(own))


def volume_transforms(
    cfg: AugmentConfig,
    shape: Sequence[int],
    channels: int,
    *,
    lr_axis: int = 0,
    channel_std: Sequence[float] | None = None,
) -> list[Any]:
    """The enabled volume augmentations for ``(channels, *shape)`` input, in order (MONAI array
    transforms and :class:`ChannelNoise`; each has ``set_random_state``)."""
    import monai.transforms as mt

    steps: list[Any] = []
    if cfg.hflip.p > 0:
        steps.append(mt.RandFlip(prob=cfg.hflip.p, spatial_axis=lr_axis))
    aff = cfg.affine
    if aff.p > 0 and (aff.degrees > 0 or aff.translate > 0 or aff.scale != (1.0, 1.0)):
        rad = math.radians(aff.degrees)
        steps.append(
            mt.RandAffine(
                prob=aff.p,
                rotate_range=(rad, rad, rad),
                # MONAI's factor is 1 + a draw in the range: [scale_min - 1, scale_max - 1].
                scale_range=[(aff.scale[0] - 1, aff.scale[1] - 1)] * 3,
                translate_range=[aff.translate * n for n in shape],
                mode="bilinear",
                padding_mode="zeros",
            )
        )
    bias = cfg.bias_field
    if bias.p > 0:
        steps.append(
            mt.RandBiasField(
                degree=bias.order, coeff_range=(-bias.coefficients, bias.coefficients), prob=bias.p
            )
        )
    noise = cfg.noise
    if noise.p > 0 and noise.std > 0:
        scale = [1.0] * channels if channel_std is None else list(channel_std)
        if len(scale) != channels:
            raise InputError(f"channel_std has {len(scale)} values for {channels} channels")
        std = torch.tensor([v * noise.std for v in scale]).view(-1, *[1] * len(shape))
        steps.append(ChannelNoise(std, noise.p))
    return steps


class ChannelNoise:
    """Additive Gaussian noise with one std per channel (``std`` broadcast over the volume),
    applied with probability ``prob``; seeded like a MONAI transform (``set_random_state``).

    MONAI's ``RandGaussianNoise`` has one std for all channels and draws float64 numbers with
    numpy; this draws float32 with torch, from a seed taken from its numpy state.
    """

    def __init__(self, std: Tensor, prob: float) -> None:
        self.std = std
        self.prob = prob
        self.R = np.random.RandomState()

    def set_random_state(self, seed: int | None = None) -> ChannelNoise:
        self.R = np.random.RandomState(seed)
        return self

    def __call__(self, img: Tensor) -> Tensor:
        if self.R.rand() >= self.prob:
            return img
        gen = torch.Generator().manual_seed(int(self.R.randint(2**31)))
        noise = torch.randn(img.shape, generator=gen, dtype=torch.float32)
        return img + (noise * self.std).to(device=img.device, dtype=img.dtype)
