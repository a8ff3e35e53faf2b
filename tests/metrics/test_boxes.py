"""The dMRI study's box: threshold, largest connected component, bounding box (2D and 3D)."""

from __future__ import annotations

import torch

from braincam.metrics import boxes as bx


def _two_blobs() -> torch.Tensor:
    """A wide blob (peak 0.7) and a small brighter blob (peak 1.0), far apart."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    wide = 0.7 * torch.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (2 * 4.0**2))
    small = 1.0 * torch.exp(-((yy - 4) ** 2 + (xx - 4) ** 2) / (2 * 1.0**2))
    return (wide + small)[None]


def test_bbox_follows_paper_not_published_code() -> None:
    maps = _two_blobs()
    boxes, regions = bx.bounding_boxes(maps)  # paper: 20 % of max, largest component
    lo, hi = boxes[0, :2], boxes[0, 2:]
    assert (lo > 10).all() and (hi <= 32).all()  # the wide blob only
    assert regions[0, 20, 20] and not regions[0, 4, 4]
    assert torch.equal(regions, bx.box_masks(boxes, (32, 32)) & regions)
    # The published code's rule (80 % of max over all pixels, no component) boxes the small blob.
    code_boxes, _ = bx.bounding_boxes(maps, threshold=0.8, largest_component=False)
    assert not torch.equal(code_boxes, boxes)
    assert (code_boxes[0, 2:] <= 8).all()
    # Without the component step at 20 %, both blobs are boxed together: again not the paper.
    both, _ = bx.bounding_boxes(maps, largest_component=False)
    assert (both[0, :2] <= 4).all() and (both[0, 2:] > 20).all()


def test_bbox_3d_and_connectivity() -> None:
    vol = torch.zeros(2, 6, 7, 8)
    vol[0, 1:3, 1:4, 2:5] = 1.0
    vol[0, 5, 6, 7] = 1.0  # a single stray voxel, smaller component
    vol[1, 2, 2, 2] = vol[1, 3, 3, 3] = vol[1, 4, 4, 4] = 1.0  # diagonal chain
    boxes, _ = bx.bounding_boxes(vol)
    assert boxes[0].tolist() == [1, 1, 2, 3, 4, 5]
    assert boxes[1].tolist() == [2, 2, 2, 5, 5, 5]  # joined under 26-connectivity
    face, _ = bx.bounding_boxes(vol, connectivity="face")
    assert face[1].tolist() == [2, 2, 2, 3, 3, 3]  # first of three equal components
