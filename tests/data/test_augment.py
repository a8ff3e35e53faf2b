"""Batched augmentations: each transform does what it says, per image, and only when drawn."""

from __future__ import annotations

import torch

from braincam.config import AugmentConfig
from braincam.data.augment import Augmenter, gaussian_noise, geometric, hflip, random_erasing


def _batch(n: int = 32, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g) + 1.0  # strictly positive


def test_hflip_all_none_and_some() -> None:
    x = _batch()
    assert torch.equal(hflip(x, 1.0), x.flip(-1))
    assert torch.equal(hflip(x, 0.0), x)
    out = hflip(x, 0.5, torch.Generator().manual_seed(1))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 0 < int(flipped.sum()) < x.shape[0]


def test_noise_has_the_requested_std() -> None:
    x = torch.zeros(64, 1, 32, 32)
    out = gaussian_noise(x, 1.0, 0.2, torch.Generator().manual_seed(0))
    assert abs(float(out.std()) - 0.2) < 0.01
    assert torch.equal(gaussian_noise(x, 0.0, 0.2), x)


def test_erasing_sets_one_rectangle_within_scale() -> None:
    x = _batch(64, 32)
    out = random_erasing(x, 1.0, (0.05, 0.2), (0.5, 2.0), value=0.0, gen=torch.Generator())
    erased = out == 0
    area = erased.flatten(1).sum(1).float() / (32 * 32)
    assert bool((area > 0.02).all()) and bool((area < 0.3).all())
    for mask in erased[:8, 0]:  # the erased pixels form one axis-aligned rectangle
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all())
    assert torch.equal(out[~erased], x[~erased])


def test_identity_geometry_leaves_images_untouched() -> None:
    x = _batch()
    cfg = AugmentConfig.model_validate(
        {"resized_crop": {"p": 1.0, "scale": [1, 1], "ratio": [1, 1]}}
    )
    assert torch.allclose(geometric(x, cfg), x, atol=1e-5)
    assert torch.equal(geometric(x, AugmentConfig()), x)


def test_zoom_out_shrinks_the_image_into_zero_padding() -> None:
    x = torch.ones(4, 1, 32, 32)
    cfg = AugmentConfig.model_validate({"affine": {"p": 1.0, "scale": [0.5, 0.5]}})
    out = geometric(x, cfg)
    assert float(out[:, :, :4, :].abs().max()) == 0.0  # borders are padding
    assert torch.allclose(out[:, :, 12:20, 12:20], torch.ones(4, 1, 8, 8))
    assert abs(float(out.mean()) - 0.25) < 0.03


def test_resized_crop_zooms_in() -> None:
    # A centred bright square grows when a crop smaller than the image is resized back.
    x = torch.zeros(16, 1, 32, 32)
    x[:, :, 12:20, 12:20] = 1.0
    cfg = AugmentConfig.model_validate(
        {"resized_crop": {"p": 1.0, "scale": [0.25, 0.25], "ratio": [1, 1]}}
    )
    out = geometric(x, cfg, torch.Generator().manual_seed(0))
    assert float(out.sum()) > 2.0 * float(x.sum())


def test_augmenter_is_reproducible_with_a_generator_and_keeps_shape() -> None:
    cfg = AugmentConfig.model_validate(
        {
            "hflip": {"p": 0.5},
            "noise": {"p": 0.5},
            "resized_crop": {"p": 0.5},
            "erasing": {"p": 0.5},
            "affine": {"p": 0.5, "degrees": 15, "translate": 0.1},
        }
    )
    x = _batch()
    runs = []
    for _ in range(2):
        aug = Augmenter(cfg, torch.Generator().manual_seed(3))
        runs.append(aug.after_normalize(aug.before_normalize(x)))
    assert torch.equal(runs[0], runs[1]) and runs[0].shape == x.shape
    assert not torch.equal(runs[0], x)
    assert not Augmenter(AugmentConfig()).enabled and Augmenter(cfg).enabled
