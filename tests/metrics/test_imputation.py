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


def _sweep_inputs(spatial: tuple[int, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """Random images, a blob-shaped support and holes inside and across its edge, including
    single hole voxels whose neighbourhood holds no tissue (they must stay as they are)."""
    g = torch.Generator().manual_seed(seed)
    n, d = 3, len(spatial)
    x = torch.rand((n, 1, *spatial), generator=g)
    coords = torch.meshgrid(*(torch.linspace(-1, 1, s) for s in spatial), indexing="ij")
    support = (sum(c**2 for c in coords) < 0.7).expand(n, *spatial).clone()
    hole = torch.rand((n, *spatial), generator=g) < 0.15
    lonely = (0,) * (d + 1)  # a corner voxel of image 0: no tissue around it
    support[lonely] = True
    hole[lonely] = True
    hole &= support
    tissue = support[:, None].to(x.dtype)
    kernel = im._neighbour_kernel(d, x.dtype, x.device)
    weight = im._CONV[d](tissue, kernel, padding=1)
    update = hole[:, None] & (weight > 0)
    assert not update[(0, 0, *lonely[1:])] and hole[lonely]
    return x, tissue, update, weight, kernel


def test_sparse_and_dense_jacobi_sweeps_agree_in_2d_and_3d() -> None:
    for spatial in ((20, 17), (9, 11, 8)):
        x, tissue, update, weight, kernel = _sweep_inputs(spatial, seed=len(spatial))
        dense = im._jacobi_dense(x, tissue, update, weight, kernel, 30)
        sparse = im._jacobi_sparse(x, tissue, update, weight, kernel, 30)
        assert torch.allclose(dense, sparse, atol=1e-6)
        assert torch.equal(sparse[~update], x[~update])  # only the updated voxels change
        assert (sparse[update] - x[update]).abs().max() > 0.05
        # One sweep by hand at an interior updated voxel: the weighted mean of its tissue
        # neighbours.
        one = im._jacobi_sparse(x, tissue, update, weight, kernel, 1)
        inner = update.clone()
        for axis, size in enumerate(spatial):
            inner.narrow(axis + 2, 0, 1).zero_()
            inner.narrow(axis + 2, size - 1, 1).zero_()
        idx = tuple(inner.nonzero()[0].tolist())
        window = idx[:2] + tuple(slice(c - 1, c + 2) for c in idx[2:])
        k = kernel[0, 0]
        expected = ((x * tissue)[window] * k).sum() / (tissue[window] * k).sum()
        assert torch.allclose(one[idx], expected, atol=1e-6)


def test_impute_gives_the_same_result_on_either_side_of_the_sparse_switch(monkeypatch) -> None:
    g = torch.Generator().manual_seed(5)
    images = torch.rand((2, 2, 24, 24), generator=g)
    region = torch.zeros(2, 24, 24, dtype=torch.bool)
    region[:, 5:11, 7:15] = True  # 8 % of each image: below the switch
    monkeypatch.setattr(im, "SPARSE_BELOW", 0.2)
    sparse = im.impute(images, region, iterations=50)
    monkeypatch.setattr(im, "SPARSE_BELOW", 0.0)
    dense = im.impute(images, region, iterations=50)
    assert torch.allclose(sparse, dense, atol=1e-6)
    assert not torch.equal(sparse, images)
