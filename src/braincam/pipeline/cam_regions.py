"""``evaluate-cams``, regions family: heatmap mass per atlas region and lobe in MNI space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from braincam.imaging.groundtruth import mni_to_native_beside
from braincam.io import write_atomic
from braincam.layout import CamEvalLayout
from braincam.pipeline.cam_context import CamContext

if TYPE_CHECKING:
    from braincam.pipeline.evaluate_cams import CamEvalConfig


def regions(ctx: CamContext, cfg: CamEvalConfig, out: CamEvalLayout) -> dict[str, pd.DataFrame]:
    """Heatmap mass per atlas region and lobe in MNI space, ranked per class; class differences.

    Synthetic cohorts carry the exact native→MNI mapping next to their ground-truth masks; for
    other data each subject's image is registered affinely to the bundled MNI152 template; the
    maps of a volume store in MNI space (``volume_space: mni``) are used as they are. The
    mean map per method and class is written to ``out.mni_mean(method, class)``.
    """
    import nibabel as nib

    from braincam.metrics.atlas import load_atlas, resample_atlas
    from braincam.metrics.region_mass import (
        lobe_mass,
        rank_regions,
        region_differences,
        region_mass,
    )
    from braincam.metrics.regions import apply_to_mni, mni_template, register_to_mni, warp_to_mni

    atlas = load_atlas(cfg.atlas)
    heatmaps = ctx.explained.layout
    reference = None  # the MNI template is only needed to register real data: loaded on demand
    sums: dict[tuple[str, str], tuple[Any, int, np.ndarray]] = {}
    grid_atlases: dict[tuple[Any, bytes], Any] = {}
    tables = []
    in_mni = ctx.store.meta.get("space", "native") != "native"
    for pid, group in ctx.table.groupby("participant_id"):
        meta = ctx.store.meta["subjects"][pid]
        imgs = [nib.load(heatmaps.nifti_map(pid, m)) for m in ctx.maps]
        stack = nib.Nifti1Image(
            np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in imgs], -1), imgs[0].affine
        )
        coords = mni_to_native_beside(meta.get("mask"), str(pid))
        if in_mni:  # a volume store in MNI space: the maps are there already
            warped = stack
        elif coords is not None:
            warped = warp_to_mni(stack, nib.load(coords))
        else:
            if reference is None:
                reference = mni_template(2.0)
            transform = register_to_mni(nib.load(meta["images"][0]))
            warped = apply_to_mni(stack, transform, reference=reference)
        data = np.moveaxis(np.asarray(warped.dataobj), -1, 0)
        key = (warped.shape[:3], warped.affine.tobytes())  # subjects usually share the MNI grid
        if key not in grid_atlases:
            grid_atlases[key] = resample_atlas(atlas, warped.affine, warped.shape[:3])
        grid_atlas = grid_atlases[key]
        label = str(group["label"].iloc[0])
        for method, vol in zip(ctx.maps, data, strict=True):
            total, count, _ = sums.get((method, label), (0.0, 0, warped.affine))
            sums[(method, label)] = (total + np.nan_to_num(vol), count + 1, warped.affine)
        info = pd.DataFrame({"participant_id": pid, "label": label, "method": list(ctx.maps)})
        tables.append(region_mass(data, grid_atlas, meta=info))
    # the mean heatmap per method and class in MNI space, for the report's 3D view
    for (method, label), (total, count, affine) in sums.items():
        mean = nib.Nifti1Image((total / count).astype(np.float32), affine)
        write_atomic(out.mni_mean(method, label), lambda tmp, img=mean: nib.save(img, tmp))
    per_map = pd.concat(tables, ignore_index=True).assign(model=ctx.model_name)
    lobes = lobe_mass(per_map)
    return {
        "regions": per_map,
        "lobes": lobes,
        "region_ranking": rank_regions(per_map, by=["model", "method", "label"]),
        "lobe_ranking": rank_regions(lobes, by=["model", "method", "label"]),
        "region_differences": region_differences(per_map, by=["model", "method"]),
        "atlas": pd.DataFrame(
            [{"atlas": atlas.name, "source": atlas.source, "licence": atlas.licence}]
        ),
    }
