"""Figures shared by `explain` and the report: heatmap overlays with boxes and mask outlines.

Drawing only (matplotlib, Agg): below both the pipeline steps and the report in the import
layers, so a step can draw a figure without importing the report.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def figure_png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


#: The planes of :func:`orthogonal_planes`, in order.
PLANES = ("axial", "coronal", "sagittal")


def orthogonal_planes(volume: np.ndarray, centre: Sequence[int]) -> list[np.ndarray]:
    """Axial, coronal and sagittal planes through voxel ``centre`` of a volume ``(X, Y, Z)`` on
    RAS-ordered axes (a volume store's grid), upright as the slice store shows slices: axial
    rows anterior→posterior, coronal/sagittal rows superior→inferior; columns left→right
    (axial, coronal) or posterior→anterior (sagittal)."""
    x, y, z = (int(c) for c in centre)
    return [volume[:, :, z].T[::-1], volume[:, y, :].T[::-1], volume[x, :, :].T[::-1]]


def overlay_montage(
    images: np.ndarray,
    maps: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    boxes: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    columns: int = 6,
    alpha: float = 0.45,
) -> Any:
    """A grid of slices (n, S, S) with their heatmaps (n, S, S) in ``jet`` over grey (or lists
    of n 2-D planes of any shapes, e.g. :func:`orthogonal_planes`).

    ``boxes`` (n, 4) as (row0, col0, row1, col1) with the upper corner exclusive (the convention of
    :func:`braincam.metrics.boxes.bounding_boxes`; an empty box is skipped) draw the
    localization box;
    ``masks`` (n, S, S) draw the ground-truth outline (white contour) where given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", interpolation="nearest")
        ax.imshow(maps[i], cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
        if masks is not None and masks[i].any():
            ax.contour(masks[i].astype(float), levels=[0.5], colors="white", linewidths=0.8)
        if boxes is not None and boxes[i][2] > boxes[i][0]:
            r0, c0, r1, c1 = (float(v) for v in boxes[i])
            ax.add_patch(
                Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec="lime", lw=1.2)
            )
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig
