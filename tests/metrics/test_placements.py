"""Area-matched random placements and outside-the-brain regions (metrics/placements.py)."""

from __future__ import annotations

import pytest
import torch

from braincam.metrics import placements as pl


@pytest.mark.parametrize("shape", [(6, 20, 24), (4, 8, 10, 12)])
def test_random_placements_are_translates_inside_the_brain(shape: tuple[int, ...]) -> None:
    regions = torch.zeros(shape, dtype=torch.bool)
    regions[(slice(None),) + (slice(3, 6),) * (len(shape) - 1)] = True
    brain = torch.ones(shape, dtype=torch.bool)
    brain[(slice(None), slice(0, 2))] = False
    moved, overlap = pl.random_placements(regions, brain, 20, torch.Generator().manual_seed(0))
    assert moved.shape == (shape[0], 20, *shape[1:]) and overlap.shape == (shape[0], 20)
    own = (regions & brain).flatten(1).sum(1)
    assert torch.equal(moved.flatten(2).sum(2), regions.flatten(1).sum(1)[:, None].expand(-1, 20))
    assert ((moved & brain[:, None]).flatten(2).sum(2) >= own[:, None]).all()
    assert not (moved == regions[:, None]).flatten(2).all(2).any()  # never left in place
    assert len({tuple(m.nonzero()[0].tolist()) for m in moved[0]}) > 5  # spread, not one spot
    assert ((overlap >= 0) & (overlap <= 1)).all()
    again, _ = pl.random_placements(regions, brain, 20, torch.Generator().manual_seed(0))
    assert torch.equal(again, moved)  # seeded
    # A region covering the whole brain can only stay where it is.
    full = brain.clone()
    stay, _ = pl.random_placements(full[:1], brain[:1], 3)
    assert torch.equal(stay[0], full[:1].expand(3, *shape[1:]))


def test_outside_regions_are_background_far_from_the_brain() -> None:
    brain = torch.zeros(2, 16, 16, dtype=torch.bool)
    brain[:, 4:12, 4:12] = True
    brain[1, :, :] = True
    brain[1, 0, 0] = False  # a single background voxel: all of it is taken
    out = pl.outside_regions(brain, torch.tensor([4, 4]))
    assert out[0].sum() == 4 and not (out[0] & brain[0]).any()
    assert out[0][[0, 0, 15, 15], [0, 15, 0, 15]].all()  # the four corners are farthest
    assert out[1].sum() == 1 and out[1, 0, 0]
