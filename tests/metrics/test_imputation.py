"""ROAD noisy linear imputation and the translation (metrics/imputation.py)."""

from __future__ import annotations

import torch

from braincam.metrics import imputation as im

SIZE = 24


def test_impute_continues_the_surrounding_tissue() -> None:
    # A linear ramp solves the Laplace equation: linear imputation must give it back.
    ramp = torch.linspace(0, 1, SIZE).expand(SIZE, SIZE)[None, None].clone()
    region = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    region[0, 8:14, 6:12] = True
    spoiled = ramp.clone()
    spoiled[0, 0][region[0]] = 5.0
    out = im.impute(spoiled, region, iterations=300)
    assert torch.allclose(out, ramp, atol=1e-3)
    # Voxels outside the support neither change nor feed the mean (no background bleed).
    support = torch.ones_like(region)
    support[0, :, :8] = False  # the region's left part and everything left of it
    tissue = torch.ones(1, 1, SIZE, SIZE)
    tissue[0, 0][~support[0]] = -3.0
    tissue[0, 0][region[0]] = 9.0
    out = im.impute(tissue, region, support, iterations=300)
    assert torch.allclose(out[0, 0][region[0] & support[0]], torch.tensor(1.0), atol=1e-3)
    assert torch.equal(
        out[0, 0][~(region[0] & support[0])], tissue[0, 0][~(region[0] & support[0])]
    )
    noisy = im.impute(
        tissue, region, support, noise_std=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(noisy[0, 0][~region[0]], tissue[0, 0][~region[0]])
    assert 0.03 < float((noisy - out)[0, 0][region[0] & support[0]].std()) < 0.2


def test_translate_pads_with_background() -> None:
    images = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    out = im.translate(images, (1, -1))
    assert torch.equal(out[0, 0, 0], torch.ones(4))  # vacated top row → minimum (1)
    assert torch.equal(out[0, 0, :, 3], torch.ones(4))  # vacated right column
    assert torch.equal(out[0, 0, 1:, :3], images[0, 0, :3, 1:])
