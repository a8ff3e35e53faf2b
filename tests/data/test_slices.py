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


def test_store_subjects_grid_target_and_thickness(tmp_path) -> None:
    from braincam.data.slicing import backproject

    sources, splits = write_cohort(tmp_path, masks=False)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    order = list(dict.fromkeys(store.index["participant_id"]))  # store order, each once
    assert store.subjects() == order and len(order) == len(sources)
    for split in ("train", "val", "test"):
        members = set(splits.loc[splits["split"] == split, "participant_id"])
        assert store.subjects(split) == [p for p in order if p in members]
    pid = sources[0].participant_id
    rows = store.rows(participant_id=pid).index.to_numpy()
    values = np.ones((len(rows), 32, 32), np.float32)
    # the isotropic grid, not the source grid (their shapes differ here)
    grid_affine, grid_shape = store.grid(pid, "grid")
    assert grid_shape != store.grid(pid, "source")[1]
    on_grid = store.backproject(values, pid, target="grid")
    assert on_grid.shape == grid_shape
    np.testing.assert_allclose(on_grid.affine, grid_affine)
    # an explicit slab thickness reaches the back-projection (3 mm fills more voxels)
    thick = store.backproject(values, pid, thickness=3.0)
    affine, shape = store.grid(pid)
    expected = backproject(values, store.pixel_to_world[rows], affine, shape, thickness=3.0)
    np.testing.assert_array_equal(thick.get_fdata(), expected)
    assert (
        np.isfinite(expected).sum() > np.isfinite(store.backproject(values, pid).get_fdata()).sum()
    )


def test_store_summary_every_count(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    per_subject = len(AXES) * SPEC.per_axis
    subjects = splits.groupby("split")["participant_id"].nunique()
    labels = splits.groupby("label")["participant_id"].nunique()
    summary = store_summary(store)
    assert summary == {
        "n_slices": per_subject * len(sources),
        "n_subjects": len(sources),
        "classes": ["old", "young"],
        "slices_per_split": {k: per_subject * int(n) for k, n in subjects.items()},
        "subjects_per_split": {k: int(n) for k, n in subjects.items()},
        "slices_per_label": {k: per_subject * int(n) for k, n in labels.items()},
        "mask_slices": count_mask_slices(store),
        "size": 32,
        "channels": 1,
        "axes": list(AXES),
        "slices_per_axis": 4,
        "voxel_size_mm": store.meta["voxel_size_mm"],
    }
    assert list(summary["slices_per_split"]) == ["test", "train", "val"]  # sorted, as in JSON
    assert list(summary["subjects_per_split"]) == ["test", "train", "val"]


def test_count_mask_slices_of_one_subject(tmp_path) -> None:
    """One subject's slices: the slices with at least one mask pixel; None without a mask."""
    import dataclasses

    sources, _ = write_cohort(tmp_path)
    src = next(s for s in sources if s.mask is not None)
    ref = extract_slices([nib.load(src.images[0])], SPEC, mask=nib.load(src.mask))
    hit = ref.masks.reshape(len(ref), -1).any(1)
    assert count_mask_slices(ref) == int(hit.sum()) and 0 < int(hit.sum()) < len(ref)
    single = dataclasses.replace(ref, mask_pixels=np.array([0, 1, 5, 0] + [0] * (len(ref) - 4)))
    assert count_mask_slices(single) == 2  # a slice with one mask pixel counts
    assert count_mask_slices(dataclasses.replace(ref, masks=None, mask_pixels=None)) is None


def test_count_mask_slices_of_a_store_in_store_order(tmp_path) -> None:
    """Per subject with a mask (store order, not sorted): slices with ≥ 1 mask pixel."""
    import pandas as pd

    index = pd.DataFrame(
        {
            "participant_id": ["sub-b", "sub-b", "sub-a", "sub-a", "sub-c"],
            "mask_pixels": pd.array([0, 1, 4, 2, None], dtype="Int64"),  # sub-c: no mask
        }
    )
    store = SliceStore(tmp_path, np.zeros((5, 1, 2, 2)), index, {}, np.zeros((5, 4, 3)))
    counts = count_mask_slices(store)
    assert counts == {"sub-b": 1, "sub-a": 2}
    assert list(counts) == ["sub-b", "sub-a"]


def test_rows_filters_combine(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path, masks=False)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    test_subject = splits.loc[splits["split"] == "test", "participant_id"].iloc[0]
    assert len(store.rows(split="train", participant_id=test_subject)) == 0
    both = store.rows(split="test", participant_id=test_subject)
    assert both.index.equals(store.rows(participant_id=test_subject).index) and len(both) > 0


def test_slice_source_normalizes_its_fields() -> None:
    from pathlib import Path

    from braincam.data.slices import SliceSource

    src = SliceSource(12, 3, "a/fa.nii.gz", mask="a/m.nii.gz")  # type: ignore[arg-type]
    assert src.participant_id == "12" and src.label == "3"
    assert src.images == (Path("a/fa.nii.gz"),)  # one path, not its characters
    assert src.mask == Path("a/m.nii.gz") and src.brain_mask is None
    two = SliceSource("sub-1", "old", ["x.nii", Path("y.nii")], brain_mask="b.nii")
    assert two.images == (Path("x.nii"), Path("y.nii")) and two.brain_mask == Path("b.nii")


def test_open_names_the_missing_files(tmp_path) -> None:
    import pytest

    from braincam.errors import InputError

    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(InputError, match="missing or incomplete") as err:
        SliceStore.open(tmp_path)
    assert err.value.value == ["images.npy", "index.tsv", "pixel_to_world.npy"]


def test_open_reads_index_columns_as_text(tmp_path) -> None:
    """Ids, labels, splits and axes that look like numbers or "NA" stay text; "n/a" mask
    counts are missing."""
    import json

    np.save(tmp_path / "images.npy", np.zeros((2, 1, 2, 2), np.float32))
    np.save(tmp_path / "pixel_to_world.npy", np.zeros((2, 4, 3)))
    (tmp_path / "meta.json").write_text(json.dumps({"n_slices": 2}))
    (tmp_path / "index.tsv").write_text(
        "participant_id\tlabel\ttarget\tsplit\taxis\tposition\tmask_pixels\n"
        "007\t10\t0\t1\t2\t5\tn/a\n"
        "010\t11\t1\t1\t2\t6\t3\n"
    )
    store = SliceStore.open(tmp_path)
    assert store.index["participant_id"].tolist() == ["007", "010"]
    assert store.index["label"].tolist() == ["10", "11"]
    assert store.index["split"].tolist() == ["1", "1"]
    assert store.index["axis"].tolist() == ["2", "2"]
    assert store.index["mask_pixels"].isna().tolist() == [True, False]
    assert int(store.index["mask_pixels"].iloc[1]) == 3
    assert store.masks is None and store.brain is None
    assert str(store.index["mask_pixels"].dtype) == "Int64"
    text = (tmp_path / "index.tsv").read_text()
    (tmp_path / "index.tsv").write_text(text.replace("\t10\t", "\tNA\t"))
    assert SliceStore.open(tmp_path).index["label"].tolist() == ["NA", "11"]  # a label, not NaN
    (tmp_path / "index.tsv").write_text(text)
    # masks and brain masks: read when present, memory-mapped read-only like the images
    np.save(tmp_path / "masks.npy", np.ones((2, 2, 2), np.uint8))
    np.save(tmp_path / "brain.npy", np.ones((2, 2, 2), np.uint8))
    store = SliceStore.open(tmp_path)
    for arr in (store.masks, store.brain):
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
    # arrays that disagree with the index are refused, each on its own
    import pytest

    from braincam.errors import InputError

    np.save(tmp_path / "brain.npy", np.ones((3, 2, 2), np.uint8))
    with pytest.raises(InputError, match="disagree"):
        SliceStore.open(tmp_path)
    np.save(tmp_path / "brain.npy", np.ones((2, 2, 2), np.uint8))
    for name, wrong in (
        ("images.npy", np.zeros((3, 1, 2, 2), np.float32)),
        ("pixel_to_world.npy", np.zeros((3, 4, 3))),
    ):
        right = np.load(tmp_path / name)
        np.save(tmp_path / name, wrong)
        with pytest.raises(InputError, match="disagree"):
            SliceStore.open(tmp_path)
        np.save(tmp_path / name, right)
    assert SliceStore.open(tmp_path).path == tmp_path
    (tmp_path / "meta.json").write_text(json.dumps({"n_slices": 3}))
    with pytest.raises(InputError, match="disagree"):
        SliceStore.open(tmp_path)
