"""Volume augmentation (issue 15): MONAI transforms from the train config, per (C, D, H, W)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from braincam.config import AugmentConfig, TrainConfig
from braincam.data.augment3d import VolumeAugmenter, check_augment_for, volume_transforms
from braincam.errors import ConfigError, InputError

SHAPE = (12, 14, 10)  # anisotropic: a swapped axis would show
ALL_ON = {
    "hflip": {"p": 1.0},
    "affine": {"p": 1.0, "degrees": 10.0, "scale": [0.95, 1.05], "translate": 0.05},
    "bias_field": {"p": 1.0, "coefficients": 0.3},
    "noise": {"p": 1.0, "std": 0.1},
}


def _cfg(**sections: dict) -> AugmentConfig:
    return AugmentConfig.model_validate(sections)


def _ball(channels: int = 1, shape: tuple[int, int, int] = SHAPE) -> torch.Tensor:
    """A positive ball (brain-like) on a zero background, (C, D, H, W) float32."""
    axes = [torch.linspace(-1, 1, n) for n in shape]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    inside = (zz**2 + yy**2 + xx**2 < 0.6).float()
    return torch.stack([inside * (c + 1) for c in range(channels)])


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_and_dtype_are_kept(channels: int) -> None:
    x = _ball(channels)
    for dtype in (torch.float32, torch.float64):
        out = VolumeAugmenter(_cfg(**ALL_ON), seed=1)(x.to(dtype))
        assert type(out) is torch.Tensor  # not MONAI's MetaTensor
        assert out.shape == x.shape and out.dtype == dtype
        assert not torch.equal(out, x.to(dtype))


def test_flip_moves_a_voxel_along_the_left_right_axis_only() -> None:
    x = torch.zeros(1, *SHAPE)
    x[0, 2, 3, 4] = 1.0
    out = VolumeAugmenter(_cfg(hflip={"p": 1.0}), lr_axis=0)(x)
    assert out[0, SHAPE[0] - 1 - 2, 3, 4] == 1.0 and out.sum() == 1.0
    other = VolumeAugmenter(_cfg(hflip={"p": 1.0}), lr_axis=1)(x)
    assert other[0, 2, SHAPE[1] - 1 - 3, 4] == 1.0 and other[0, SHAPE[0] - 3, 3, 4] == 0.0


def test_probability_zero_is_the_identity() -> None:
    x = _ball(2) + 0.01 * torch.randn(2, *SHAPE)
    off = {k: {**v, "p": 0.0} for k, v in ALL_ON.items()}  # every parameter set, never fired
    aug = VolumeAugmenter(_cfg(**off))
    assert not aug.enabled and aug(x) is x
    assert volume_transforms(_cfg(**off), SHAPE, 2) == []
    # p = 0 for all but the flip: only the flip happens.
    flip_only = VolumeAugmenter(_cfg(**{**off, "hflip": {"p": 1.0}}))
    torch.testing.assert_close(flip_only(x), x.flip(1), rtol=0, atol=0)


def test_seeded_draws_are_reproducible() -> None:
    x = _ball(1)
    cfg = _cfg(**{k: {**v, "p": 0.5} for k, v in ALL_ON.items()})
    first = VolumeAugmenter(cfg, seed=5)
    second = VolumeAugmenter(cfg, seed=5)
    other = VolumeAugmenter(cfg, seed=6)
    a = [first(x) for _ in range(4)]
    b = [second(x) for _ in range(4)]
    c = [other(x) for _ in range(4)]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))
    assert not all(torch.equal(a[0], u) for u in a[1:])  # the stream moves on
    first.reseed(5)
    assert torch.equal(first(x), a[0])
    # A per-sample seed: the same draws whatever came before.
    once = other(x, seed=11)
    for _ in range(3):
        first(x)
    assert torch.equal(first(x, seed=11), once)


def test_bias_field_is_smooth_positive_and_keeps_the_background() -> None:
    x = _ball(1)
    out = VolumeAugmenter(_cfg(bias_field={"p": 1.0, "coefficients": 0.3}), seed=2)(x)
    inside = x > 0
    assert torch.equal(out[~inside], x[~inside])  # zero stays zero: multiplicative
    ratio = out[inside] / x[inside]
    assert (ratio > 0).all() and not torch.allclose(ratio, torch.ones_like(ratio))
    # Order 3, 20 terms each ≤ 0.3 over [-1, 1]³: the log-field is bounded by 6.
    assert ratio.log().abs().max() <= 6.0


def test_noise_std_is_in_z_units_per_channel() -> None:
    x = torch.zeros(2, 32, 32, 32)
    aug = VolumeAugmenter(_cfg(noise={"p": 1.0, "std": 0.1}), channel_std=[1.0, 10.0], seed=0)
    out = aug(x)
    assert out[0].std().item() == pytest.approx(0.1, rel=0.05)
    assert out[1].std().item() == pytest.approx(1.0, rel=0.05)
    with pytest.raises(InputError, match="channel_std has 2 values for 3 channels"):
        aug(torch.zeros(3, 8, 8, 8))


def test_affine_rotates_about_the_centre_with_zero_padding() -> None:
    x = _ball(1, (16, 16, 16))
    cfg = _cfg(affine={"p": 1.0, "degrees": 10.0, "scale": [0.95, 1.05]})
    out = VolumeAugmenter(cfg, seed=3)(x)
    assert not torch.equal(out, x)
    assert out[0, 8, 8, 8] == pytest.approx(1.0)  # the centre of the ball stays inside
    assert out[0, 0, 0, 0] == 0.0  # a corner stays background (zero padding)
    assert out.sum().item() == pytest.approx(x.sum().item(), rel=0.2)


def test_two_d_only_augmentations_are_refused_for_volumes_and_back() -> None:
    with pytest.raises(ConfigError, match=r"train\.augment\.resized_crop: not available for vol"):
        VolumeAugmenter(_cfg(resized_crop={"p": 0.5}))
    with pytest.raises(ConfigError, match=r"train\.augment\.erasing: not available for volumes"):
        check_augment_for(_cfg(erasing={"p": 0.1}), 3)
    with pytest.raises(ConfigError, match=r"train\.augment\.bias_field: not available for 2-D"):
        check_augment_for(_cfg(bias_field={"p": 0.1}), 2)
    check_augment_for(_cfg(**ALL_ON), 3)
    check_augment_for(_cfg(erasing={"p": 0.1}, hflip={"p": 1.0}), 2)
    with pytest.raises(InputError, match=r"float tensor \(C, D, H, W\)"):
        VolumeAugmenter(_cfg(**ALL_ON))(torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(InputError, match="lr_axis must be 0, 1 or 2"):
        VolumeAugmenter(_cfg(**ALL_ON), lr_axis=3)


class _Volumes(Dataset):
    """The same volume 8 times, augmented in the loader as the volume store's dataset would."""

    def __init__(self, augment: VolumeAugmenter) -> None:
        self.augment = augment
        self.volume = _ball(1)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.augment(self.volume)


def _epoch(workers: int, seed: int) -> torch.Tensor:
    cfg = _cfg(**{k: {**v, "p": 0.5} for k, v in ALL_ON.items()})
    loader = DataLoader(
        _Volumes(VolumeAugmenter(cfg, seed=0)),
        batch_size=2,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        multiprocessing_context="fork" if workers else None,
    )
    return torch.cat(list(loader))


def test_loader_workers_draw_reproducibly_and_differently() -> None:
    first, again, other = _epoch(2, seed=1), _epoch(2, seed=1), _epoch(2, seed=2)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # Batches 0 and 1 come from workers 0 and 1: without reseeding they would be equal.
    assert not torch.equal(first[0:2], first[2:4])


def test_bias_field_key_is_written_only_when_set() -> None:
    """Train configs of earlier runs (no bias_field) keep their bytes, so those runs are reused."""
    default = TrainConfig().model_dump(mode="json")
    assert "bias_field" not in default["augment"]
    assert list(default["augment"]) == ["hflip", "noise", "resized_crop", "erasing", "affine"]
    cfg = TrainConfig.model_validate({"augment": {"bias_field": {"p": 0.5}}})
    dumped = cfg.model_dump(mode="json")
    assert dumped["augment"]["bias_field"] == {"p": 0.5, "coefficients": 0.3, "order": 3}
    assert TrainConfig.model_validate(json.loads(json.dumps(dumped))) == cfg
    with pytest.raises(ConfigError, match=r"bias_field\.order"):
        TrainConfig(augment={"bias_field": {"order": 0}})
