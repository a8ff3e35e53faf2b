"""The 3-D heatmaps of a volume run in the report (issue 15).

For a few test subjects per class (those with a ground-truth mask first), each method's heatmap
NIfTI as ``explain`` wrote it (``RUN/heatmaps/test/nifti/<pid>_desc-<method>_heatmap.nii.gz``,
in the subject's space; in MNI for a store in MNI space) is shown twice:

- in nilearn's interactive viewer over the subject's own image (channel 0 of the volume store,
  same grid and affine), opened at the map's maximum; the viewer's scripts are inlined, so the
  report works offline;
- as orthogonal slices (axial, coronal, sagittal) through the map's maximum, one row per method.

One viewer weighs roughly 0.2–1 MB (its scripts ≈ 0.1 MB plus the image sprites), so their
number is capped (``max_viewers``); the slice figures are small PNGs and are always shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from braincam.config.experiment import ReportConfig
from braincam.layout import RunLayout
from braincam.report import blocks as B

#: Interactive viewers of single-subject heatmaps in one report (the rest: slices only).
DEFAULT_MAX_VIEWERS: int = ReportConfig().max_viewers
#: Test subjects shown per class.
SUBJECTS_PER_CLASS = 1


@dataclass(frozen=True)
class PeakPlanes:
    """Orthogonal planes of an image, its heatmap and its mask through the heatmap's maximum."""

    peak: tuple[int, int, int]  # voxel of the maximum (store grid)
    image: list[np.ndarray]  # axial, coronal, sagittal (figures.orthogonal_planes)
    heatmap: list[np.ndarray]
    mask: list[np.ndarray]


def peak_voxel(volume: np.ndarray) -> tuple[int, int, int]:
    """Voxel index of the volume's maximum (the first one on ties, as ``np.argmax``)."""
    i, j, k = np.unravel_index(int(np.argmax(volume)), volume.shape)
    return int(i), int(j), int(k)


def peak_planes(image: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None) -> PeakPlanes:
    """The three orthogonal planes through the heatmap's maximum, for image, map and mask."""
    from braincam.figures import orthogonal_planes

    peak = peak_voxel(heatmap)
    mask = np.zeros(heatmap.shape, bool) if mask is None else np.asarray(mask) > 0
    return PeakPlanes(
        peak,
        orthogonal_planes(image, peak),
        orthogonal_planes(heatmap, peak),
        orthogonal_planes(mask, peak),
    )


def pick_subjects(
    table: pd.DataFrame, store: Any, per_class: int = SUBJECTS_PER_CLASS
) -> list[int]:
    """Row positions in the heatmap table (``slices.tsv``): per class in the store's class
    order, ``per_class`` subjects — those with a ground-truth mask first (most mask voxels
    first), then the others in table order."""
    picks: list[int] = []
    for label in store.classes:
        positions = np.flatnonzero(table["label"].to_numpy() == label)
        if positions.size == 0:
            continue
        voxels = np.zeros(positions.size, np.int64)
        if store.masks is not None:
            rows = table["store_row"].to_numpy()[positions]
            voxels = np.array([int((np.asarray(store.masks[r]) > 0).sum()) for r in rows])
        # Stable sort: ties (e.g. no mask at all) keep the table's order.
        order = np.argsort(-voxels, kind="stable")
        picks += [int(p) for p in positions[order][:per_class]]
    return picks


def _slices_figure(planes: dict[str, PeakPlanes]) -> tuple[Any, list[str]]:
    """One row per method: the three planes through that map's maximum; caption lines."""
    from braincam.figures import PLANES, overlay_montage

    images, maps, masks, titles, lines = [], [], [], [], []
    for method, p in planes.items():
        images += p.image
        maps += p.heatmap
        masks += p.mask
        coords = dict(zip(PLANES, ("z", "y", "x"), strict=True))
        index = dict(zip(("x", "y", "z"), p.peak, strict=True))
        titles += [f"{method} {plane} {coords[plane]}={index[coords[plane]]}" for plane in PLANES]
        lines.append(f"{method}: maximum at voxel {p.peak}")
    fig = overlay_montage(images, maps, titles=titles, masks=masks, columns=3)
    return fig, lines


def volume_heatmap_blocks(
    run: Path,
    store: Any,
    *,
    max_viewers: int = DEFAULT_MAX_VIEWERS,
    per_class: int = SUBJECTS_PER_CLASS,
    split: str = "test",
) -> tuple[list[B.Block], int]:
    """The blocks of one run (slice figure + viewers per picked subject) and how many viewers
    they hold (at most ``max_viewers``)."""
    import json

    import nibabel as nib

    layout = RunLayout(run).heatmaps(split)
    if not layout.meta.is_file():
        return [], 0
    methods = list(json.loads(layout.meta.read_text())["methods"])
    table = pd.read_csv(layout.slices, sep="\t", dtype={"participant_id": str})
    blocks: list[B.Block] = []
    viewers = 0
    for pos in pick_subjects(table, store, per_class):
        pid, label = str(table["participant_id"].iloc[pos]), str(table["label"].iloc[pos])
        row = int(table["store_row"].iloc[pos])
        image = np.asarray(store.images[row, 0], dtype=np.float32)
        mask = None if store.masks is None else np.asarray(store.masks[row])
        loaded = {m: layout.nifti_map(pid, m) for m in methods}
        missing = [m for m, path in loaded.items() if not path.is_file()]
        if missing:
            blocks.append(B.note(f"{run.name} · {pid}: no heatmap NIfTI for {', '.join(missing)}."))
        stats = {m: nib.load(path) for m, path in loaded.items() if path.is_file()}
        if not stats:
            continue
        planes = {m: peak_planes(image, np.asarray(img.dataobj), mask) for m, img in stats.items()}
        fig, lines = _slices_figure(planes)
        masked = mask is not None and bool((np.asarray(mask) > 0).any())
        blocks.append(
            B.figure_from_matplotlib(
                fig,
                title=f"{run.name} · {pid} ({label}): orthogonal slices through each map's maximum",
                caption="; ".join(lines)
                + (". White: the ground-truth effect region." if masked else "."),
            )
        )
        background = store.to_nifti(image, pid)  # the store grid (the subject's space, or MNI)
        for method, img in stats.items():
            if viewers >= max_viewers:
                break
            peak = planes[method].peak
            world = nib.affines.apply_affine(img.affine, peak)
            blocks.append(
                B.brain_viewer(
                    img,
                    bg_img=background,
                    cut_coords=tuple(float(c) for c in world),
                    title=f"{run.name} · {pid} ({label}) · {method}",
                    caption=f"Interactive: {loaded[method].name} over the subject's image "
                    f"(channel 0), opened at the map's maximum (voxel {peak}); threshold at "
                    "20 % of the maximum.",
                )
            )
            viewers += 1
    return blocks, viewers
