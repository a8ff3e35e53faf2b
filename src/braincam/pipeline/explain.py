"""Explain a trained run: heatmaps for every slice (or volume) of a split, overlays, and 3D
NIfTI maps.

Output layout (``RUN/heatmaps/<split>/``, paths: :class:`braincam.layout.HeatmapLayout`)::

    slices.tsv            one row per explained slice (volume store: per subject): store row,
                          subject, labels, prediction
    <method>.npy          float32 (n, S, S) maps in [0, 1] (volume store: (n, X, Y, Z)),
                          row i ↔ slices.tsv row i
    <method>_range.npy    float32 (n, 2): each map's (min, max) before that scaling
    overlays/<method>.png montage of a sample of slices with box and ground-truth outline
                          (volume store: orthogonal planes through the ground truth or the peak)
    nifti/sub-XX_desc-<method>_heatmap.nii.gz   maps put back on the subject's FA grid,
                          with their strengths (below), scaled to [0, 1] once per subject
                          (volume store: the volume itself, on the store grid, in the subject's
                          space through its affine)
    meta.json             what was computed, with which settings (written last: marks completion)

Re-running with the same settings skips methods already written; changed settings recompute.

Why the ranges: each slice's map is scaled to [0, 1] on its own (the slice-level metrics and the
overlays compare places within a slice), which gives every slice of a subject the same peak. A
subject's volume is built from the unscaled maps instead (``map × (max − min) + min``) and
scaled once, so a slice where the model found strong evidence outweighs one where it found
little, and the volume's maximum (the 3-D pointing game's pick) lies where the evidence is
strongest, not on whichever slice's peak came first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from braincam.config.cams import ExplainConfig
from braincam.data.references import ClassReferences
from braincam.data.volumes import VolumeStore
from braincam.errors import InputError
from braincam.guard import inside
from braincam.imaging.hashing import file_sha256
from braincam.io import read_json, write_atomic, write_bytes_atomic, write_json
from braincam.layout import HeatmapLayout, RunLayout
from braincam.provenance import peak_rss_mib


@dataclass
class ExplainResult:
    """Where the heatmaps of one run and split are, and which methods were (re)computed."""

    out_dir: Path
    methods: list[str]
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def layout(self) -> HeatmapLayout:
        """The paths of the heatmap directory."""
        return HeatmapLayout(self.out_dir)

    def maps(self, method: str) -> np.ndarray:
        """Memory-mapped maps (n, S, S) of ``method``."""
        return np.load(self.layout.maps(method), mmap_mode="r")

    def ranges(self, method: str) -> np.ndarray | None:
        """Each map's (min, max) before min-max scaling, ``(n, 2)``; None if not recorded."""
        path = self.layout.ranges(method)
        return np.load(path) if path.is_file() else None

    def slices(self) -> pd.DataFrame:
        """The slices.tsv table (row i ↔ maps[i])."""
        return pd.read_csv(self.layout.slices, sep="\t", dtype={"participant_id": str})


def heatmap_dir(run_dir: str | Path, split: str) -> Path:
    """Where ``explain`` writes the heatmaps of ``split`` for a run."""
    return RunLayout(run_dir).heatmaps(split).root


def _explained_targets(
    target: str, true: torch.Tensor, predicted: torch.Tensor, classes: Sequence[str]
) -> torch.Tensor:
    if target == "predicted":
        return predicted
    if target == "true":
        return true
    if target in classes:
        return torch.full_like(true, list(classes).index(target))
    raise InputError(
        f"--target must be 'predicted', 'true' or a class name {list(classes)}", value=target
    )


def reference_batch(
    references: ClassReferences | None, rows: np.ndarray, targets: torch.Tensor, record: dict
) -> torch.Tensor:
    """The z-scored reference inputs of ``rows`` explained for ``targets`` (on their device)."""
    from braincam.data.normalization import zscore

    if references is None:  # pragma: no cover - callers build references when a method needs them
        raise InputError("no references were built for a method that needs them")
    ref = torch.from_numpy(references.for_rows(rows, targets.cpu().numpy()))
    return zscore(ref, record).to(targets.device)


def _validate_methods(methods: Sequence[str]) -> list[str]:
    from braincam.cam import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"unknown CAM method(s); choose from {sorted(METHODS)}", value=unknown)
    return list(dict.fromkeys(methods))


def explain_run(
    run_dir: str | Path,
    config: ExplainConfig = ExplainConfig(),
    *,
    store_path: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> ExplainResult:
    """Compute heatmaps for every slice of ``config.split`` with each method; write them to disk.

    The model is the run's best checkpoint (``braincam.training.loading.load_trained``); inputs
    are z-scored exactly as in training. ``store_path`` defaults to the run's own store.
    """
    from braincam.cam import get_method, make_method, normalize_maps
    from braincam.data.normalization import zscore
    from braincam.data.volumes import open_any_store
    from braincam.progress import make_progress
    from braincam.training.loading import load_trained

    methods = _validate_methods(config.methods)
    started = time.perf_counter()
    model, record = load_trained(run_dir, device=device)
    store = open_any_store(store_path or record["store"])
    classes = list(record["classes"])
    if list(store.classes) != classes:
        raise InputError(
            "the slice store's classes differ from the run's", path=store.path, value=store.classes
        )
    rows = store.rows(split=config.split).index.to_numpy()
    if rows.size == 0:
        raise InputError(f"split {config.split!r} of the slice store is empty", path=store.path)

    layout = RunLayout(run_dir).heatmaps(config.split)
    out = layout.root
    out.mkdir(parents=True, exist_ok=True)
    meta_path = layout.meta
    previous = read_json(meta_path) if meta_path.is_file() else {}
    # Maps are reused only for the same settings, the same trained weights and the same store:
    # a retrained model or a rebuilt store (another size, other subjects) makes them stale.
    inputs = {
        "model_sha256": file_sha256(RunLayout(run_dir).model),
        "store_fingerprint": store.meta.get("fingerprint"),
    }
    same = (
        previous.get("fingerprint") == config.fingerprint()
        and previous.get("rows") == len(rows)
        and all(previous.get(k) == v for k, v in inputs.items())
    )
    done = [m for m in methods if layout.maps(m).is_file() and layout.ranges(m).is_file()]
    todo = [m for m in methods if not (same and m in done)]
    result = ExplainResult(
        out, methods, computed=todo, skipped=[m for m in methods if m not in todo]
    )
    if todo or not layout.slices.is_file():
        if meta_path.exists():
            meta_path.unlink()  # the directory is incomplete until meta.json is rewritten
        # a method that compares each image with a reference gets it per batch (it depends on
        # the rows and the classes explained); the others are built once
        with_reference = [m for m in todo if get_method(m).needs_reference]
        references = ClassReferences(store) if with_reference else None
        cam_objects = {
            m: make_method(model, m, config.layer, fusion=config.fusion)
            for m in todo
            if m not in with_reference
        }
        sample = tuple(store.images.shape[2:])  # (S, S) slices or (X, Y, Z) volumes
        maps = {m: np.zeros((len(rows), *sample), np.float32) for m in todo}
        ranges = {m: np.zeros((len(rows), 2), np.float32) for m in todo}
        probs = np.zeros((len(rows), len(classes)), np.float32)
        explained = np.zeros(len(rows), np.int64)
        true_all = torch.as_tensor(store.index["target"].to_numpy()[rows])
        with make_progress(disable=not progress) as bar:
            task = bar.add_task(
                f"explain {config.split} ({', '.join(todo) or 'table'})", total=len(rows)
            )
            for start in range(0, len(rows), config.batch_size):
                sel = rows[start : start + config.batch_size]
                x = torch.from_numpy(np.ascontiguousarray(store.images[sel])).to(device)
                x = zscore(x, record)
                with torch.no_grad():
                    p = torch.softmax(model(x), dim=1)
                true = true_all[start : start + len(sel)].to(device)
                targets = _explained_targets(config.target, true, p.argmax(1), classes)
                # one reference batch, shared by every method that compares with it
                reference = (
                    reference_batch(references, sel, targets, record)
                    if references is not None
                    else None
                )
                for m in todo:
                    cam = cam_objects.get(m) or make_method(
                        model, m, config.layer, fusion=config.fusion, reference=reference
                    )
                    raw = cam(x, targets, upsample=True, normalize=False).maps.detach()
                    lo, hi = torch.aminmax(raw.flatten(1), dim=1)
                    maps[m][start : start + len(sel)] = normalize_maps(raw).cpu().numpy()
                    ranges[m][start : start + len(sel)] = torch.stack([lo, hi], 1).cpu().numpy()
                probs[start : start + len(sel)] = p.cpu().numpy()
                explained[start : start + len(sel)] = targets.cpu().numpy()
                bar.advance(task, len(sel))
        for m in todo:
            write_atomic(inside(out, layout.ranges(m)), lambda tmp, a=ranges[m]: np.save(tmp, a))
            write_atomic(inside(out, layout.maps(m)), lambda tmp, a=maps[m]: np.save(tmp, a))
        columns = ["participant_id", "label", "target", "axis", "position"]
        table = store.index.iloc[rows][[c for c in columns if c in store.index.columns]]
        table = table.assign(
            store_row=rows,
            explained=explained,
            predicted=probs.argmax(1),
            p_explained=probs[np.arange(len(rows)), explained],
            **{f"p_{c}": probs[:, i] for i, c in enumerate(classes)},
        )
        write_atomic(layout.slices, lambda tmp: table.to_csv(tmp, sep="\t", index=False))
    if config.overlays > 0:
        write_overlays(result, store, methods, config.overlays)
    if config.nifti:
        write_nifti(result, store, methods)
    # Time and memory of the run that computed maps; a call that only reused them keeps the
    # figures of the one that did (braincam compare reads them).
    cost = (
        {"seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib()}
        if todo
        else {k: previous.get(k) for k in ("seconds", "peak_rss_mib")}
    )
    write_json(
        meta_path,
        {
            "run": str(Path(run_dir).resolve()),
            "store": str(store.path),
            "model": record["model"],
            "classes": classes,
            "config": config.model_dump(),
            "fingerprint": config.fingerprint(),
            **inputs,
            "rows": len(rows),
            "methods": methods,
            **cost,
        },
    )
    return result


def _sample_rows(table: pd.DataFrame, n: int) -> np.ndarray:
    """A spread-out sample: the centre slice of each axis for successive subjects."""
    order = table.assign(_i=np.arange(len(table)))
    centre = order.groupby(["participant_id", "axis"])["_i"].agg(lambda s: s.iloc[len(s) // 2])
    picks = centre.to_numpy()
    if len(picks) < n:
        picks = np.concatenate([picks, np.setdiff1d(order["_i"].to_numpy(), picks)])
    return np.sort(picks[:n])


def write_overlays(
    result: ExplainResult, store: Any, methods: Sequence[str], n: int
) -> dict[str, Path]:
    """Write one overlay montage per method for the same sample of slices (volumes: of
    subjects, three orthogonal planes each)."""
    from braincam.figures import figure_png_bytes, overlay_montage
    from braincam.metrics.boxes import bounding_boxes

    if isinstance(store, VolumeStore):
        return _volume_overlays(result, store, methods, n)
    table = result.slices()
    picks = _sample_rows(table, n)
    rows = table["store_row"].to_numpy()[picks]
    images = np.asarray(store.images[rows][:, 0])
    masks = None if store.masks is None else np.asarray(store.masks[rows])
    titles = [
        f"{r.participant_id} {r.axis[:3]} {r.position} ({r.label})"
        for r in table.iloc[picks].itertuples()
    ]
    paths = {}
    for m in methods:
        maps = np.asarray(result.maps(m)[picks])
        boxes, _ = bounding_boxes(torch.from_numpy(maps))
        fig = overlay_montage(images, maps, titles=titles, boxes=boxes.numpy(), masks=masks)
        # The method name comes from the config: the file must stay inside RUN's heatmaps.
        path = inside(result.layout.root, result.layout.overlay(m))
        paths[m] = write_bytes_atomic(path, figure_png_bytes(fig))
    return paths


def _volume_overlays(
    result: ExplainResult, store: Any, methods: Sequence[str], n: int
) -> dict[str, Path]:
    """Orthogonal planes (axial, coronal, sagittal) of ``max(1, n // 3)`` subjects (those with
    a ground-truth mask first) through the mask's centre, else through the map's peak."""
    from braincam.figures import PLANES, figure_png_bytes, orthogonal_planes, overlay_montage

    table = result.slices()
    rows = table["store_row"].to_numpy()
    has_mask = (
        np.zeros(len(rows), bool)
        if store.masks is None
        else np.array([bool(np.asarray(store.masks[r]).any()) for r in rows])
    )
    picks = np.concatenate([np.flatnonzero(has_mask), np.flatnonzero(~has_mask)])
    picks = picks[: max(1, n // 3)]
    paths = {}
    for m in methods:
        maps = result.maps(m)
        images, planes, masks, titles = [], [], [], []
        for i in picks:
            row = int(rows[i])
            mask = None if store.masks is None else np.asarray(store.masks[row]) > 0
            vol = np.asarray(maps[i])
            if mask is not None and mask.any():
                centre = np.round(np.argwhere(mask).mean(axis=0)).astype(int)
            else:
                centre = np.unravel_index(int(np.argmax(vol)), vol.shape)
            images += orthogonal_planes(np.asarray(store.images[row, 0]), centre)
            planes += orthogonal_planes(vol, centre)
            masks += orthogonal_planes(np.zeros(vol.shape, bool) if mask is None else mask, centre)
            r = table.iloc[i]
            titles += [f"{r.participant_id} {p[:3]} ({r.label})" for p in PLANES]
        fig = overlay_montage(images, planes, titles=titles, masks=masks, columns=6)
        path = inside(result.layout.root, result.layout.overlay(m))
        paths[m] = write_bytes_atomic(path, figure_png_bytes(fig))
    return paths


def unscaled_maps(maps: np.ndarray, ranges: np.ndarray | None) -> np.ndarray:
    """Maps in [0, 1] back to their values before min-max scaling, ``map × (max − min) + min``
    per map (module docstring); without ``ranges`` (maps of an older braincam) as they are."""
    values = np.asarray(maps, dtype=np.float32)
    if ranges is None:
        return values
    lo, hi = ranges[:, :1, None], ranges[:, 1:, None]
    return values * (hi - lo) + lo


def scaled_volume(volume: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] over the finite (covered) voxels; the others are 0, and so is
    a constant volume (as :func:`~braincam.cam.normalize_maps` makes a constant map)."""
    volume = np.asarray(volume, dtype=np.float64)
    covered = np.isfinite(volume)
    out = np.zeros(volume.shape, np.float32)
    if covered.any():
        lo, hi = volume[covered].min(), volume[covered].max()
        if hi > lo:
            out[covered] = (volume[covered] - lo) / (hi - lo)
    return out


def write_nifti(result: ExplainResult, store: Any, methods: Sequence[str]) -> list[Path]:
    """Back-project each subject's slice maps onto its FA grid, one NIfTI per method, scaled once
    per subject (:func:`unscaled_maps`, :func:`scaled_volume`; a volume store's maps are volumes
    already: written on the store grid, in the subject's space)."""
    import nibabel as nib

    table = result.slices()
    written = []
    if isinstance(store, VolumeStore):
        for m in methods:
            maps = result.maps(m)
            for i, pid in enumerate(table["participant_id"]):
                img = store.to_nifti(np.asarray(maps[i]), str(pid))
                path = inside(result.layout.root, result.layout.nifti_map(str(pid), m))
                written.append(write_atomic(path, lambda tmp, im=img: nib.save(im, tmp)))
        return written
    for m in methods:
        maps, ranges = result.maps(m), result.ranges(m)
        for pid, group in table.groupby("participant_id"):
            idx = group.index.to_numpy()
            values = unscaled_maps(maps[idx], None if ranges is None else ranges[idx])
            img = store.backproject(values, pid, rows=group["store_row"].to_numpy())
            img = nib.Nifti1Image(scaled_volume(img.get_fdata()), img.affine)
            # IDs come from the store's index, the method from the config: stay inside RUN.
            path = inside(result.layout.root, result.layout.nifti_map(str(pid), m))
            written.append(write_atomic(path, lambda tmp, im=img: nib.save(im, tmp)))
    return written
