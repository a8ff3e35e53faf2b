"""The slice store on disk: rows, masks, channels, counts, back-projection."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from braincam.data.slice_build import build_slice_store
from braincam.data.slices import (
    AXES,
    SliceSpec,
    SliceStore,
    count_mask_slices,
    store_summary,
)
from braincam.data.slicing import extract_slices
from braincam.data.splits import load_splits, save_splits
from builders.slices import SHAPE, lps_affine, write_cohort

SPEC = SliceSpec(per_axis=4, size=32)


def test_store_rows_match_images_and_splits(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path)
    save_splits(splits, tmp_path / "splits.tsv")
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    n_per = len(AXES) * SPEC.per_axis
    assert len(store) == n_per * len(sources)
    assert store.classes == ["old", "young"]  # sorted label names
    assert list(store.index.columns) == [
        "participant_id", "label", "target", "split", "axis", "position", "mask_pixels"
    ]  # fmt: skip
    # Memory-mapped, read-only arrays.
    reopened = SliceStore.open(tmp_path / "slices")
    assert isinstance(reopened.images, np.memmap) and not reopened.images.flags.writeable
    assert isinstance(np.load(tmp_path / "slices" / "images.npy", mmap_mode="r"), np.memmap)
    assert reopened.images.shape == (len(store), 1, 32, 32)
    assert reopened.pixel_to_world.shape == (len(store), 4, 3)
    # Every row's image, position and matrix equal a fresh extraction of its subject.
    for src in sources:
        rows = reopened.rows(participant_id=src.participant_id)
        assert len(rows) == n_per
        ref = extract_slices([nib.load(src.images[0])], SPEC)
        np.testing.assert_allclose(reopened.images[rows.index.to_numpy()], ref.images, atol=1e-6)
        np.testing.assert_allclose(reopened.pixel_to_world[rows.index], ref.pixel_to_world)
        assert list(rows["axis"]) == list(ref.axes)
        assert list(rows["position"]) == list(ref.positions)
        assert set(rows["target"]) == {store.classes.index(src.label)}
    # The split column agrees with splits.tsv for every row.
    table = load_splits(tmp_path / "splits.tsv")
    merged = reopened.index.merge(table, on="participant_id", suffixes=("", "_tsv"))
    assert len(merged) == len(reopened.index)
    assert (merged["split"] == merged["split_tsv"]).all()
    assert (merged["label"] == merged["label_tsv"]).all()
    for split in ("train", "val", "test"):
        assert set(reopened.rows(split=split)["participant_id"]) == set(
            table.loc[table["split"] == split, "participant_id"]
        )
    meta = reopened.meta
    assert meta["channels"] == 1 and meta["size"] == 32 and meta["slices_per_axis"] == 4
    assert meta["axes"] == list(AXES) and meta["voxel_size_mm"] == 1.0
    assert meta["source"][sources[0].participant_id] == str(sources[0].images[0])
    np.testing.assert_allclose(
        reopened.grid(sources[0].participant_id)[0], lps_affine()
    )  # source grid recorded


def test_store_masks_and_counts(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    assert store.masks is not None and store.masks.shape == (len(store), 32, 32)
    counts = count_mask_slices(store)
    with_mask = {s.participant_id for s in sources if s.mask is not None}
    assert set(counts) == with_mask
    for src in sources:
        rows = store.rows(participant_id=src.participant_id)
        m = store.masks[rows.index.to_numpy()]
        if src.mask is None:
            assert rows["mask_pixels"].isna().all() and not m.any()
            continue
        ref = extract_slices([nib.load(src.images[0])], SPEC, mask=nib.load(src.mask))
        np.testing.assert_array_equal(m, ref.masks)
        np.testing.assert_array_equal(
            rows["mask_pixels"].to_numpy(int), m.reshape(len(m), -1).sum(1)
        )
        assert counts[src.participant_id] == int((rows["mask_pixels"] > 0).sum())
        assert 0 < counts[src.participant_id] < len(rows)
    summary = store_summary(store)
    assert summary["mask_slices"] == counts
    assert sum(summary["slices_per_split"].values()) == len(store) == summary["n_slices"]
    assert summary["subjects_per_split"] == {
        k: int(v) for k, v in splits["split"].value_counts().items()
    }


def test_store_without_masks_has_no_masks_file(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path, n_per_class=3, masks=False)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    assert store.masks is None and not (tmp_path / "slices" / "masks.npy").exists()
    assert store.index["mask_pixels"].isna().all()
    assert count_mask_slices(store) == {}


def test_store_three_channels(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path, channels=3, masks=False)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    assert store.images.shape[1] == 3 and store.meta["channels"] == 3
    src = sources[2]
    rows = store.rows(participant_id=src.participant_id).index.to_numpy()
    for ch in range(3):
        ref = extract_slices([nib.load(src.images[ch])], SPEC)
        np.testing.assert_allclose(store.images[rows, ch], ref.images[:, 0], atol=1e-6)


def test_store_explicit_classes_and_backproject(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path, masks=False)
    store = build_slice_store(
        tmp_path / "slices", sources, splits, SPEC, classes=["young", "old"], progress=False
    )
    assert store.classes == ["young", "old"]
    young = store.index["label"] == "young"
    assert (store.index.loc[young, "target"] == 0).all()
    assert (store.index.loc[~young, "target"] == 1).all()
    pid = sources[0].participant_id
    rows = store.rows(participant_id=pid).index.to_numpy()
    img = store.backproject(np.ones((len(rows), 32, 32), np.float32), pid)
    assert img.shape == SHAPE
    np.testing.assert_allclose(img.affine, lps_affine())
    data = img.get_fdata()
    assert np.nanmax(data) == 1.0 and np.isnan(data).any() and np.isfinite(data).any()
