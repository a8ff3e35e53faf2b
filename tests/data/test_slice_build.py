"""Building the slice store: atomic, resumable, fingerprinted, validated."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from braincam.data.slice_build import build_slice_store, store_fingerprint
from braincam.data.slices import (
    AXES,
    SliceSpec,
    SliceStore,
)
from braincam.errors import InputError
from builders.slices import SHAPE, lps_affine, write_cohort

SPEC = SliceSpec(per_axis=4, size=32)


def _truncate(path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def test_store_build_is_atomic(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path)
    # What a killed build leaves: a hidden partial directory, which is not a store and is removed.
    killed = tmp_path / ".slices.tmp-deadbeef"
    killed.mkdir()
    np.lib.format.open_memmap(
        killed / "images.npy", mode="w+", dtype=np.float32, shape=(2, 1, 4, 4)
    )
    with pytest.raises(InputError, match="missing or incomplete"):
        SliceStore.open(killed)
    _truncate(sources[4].images[0])
    with pytest.raises(InputError) as info:
        build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    assert info.value.subject == sources[4].participant_id
    assert info.value.path == str(sources[4].images[0])
    assert not (tmp_path / "slices").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no temp directory left behind
    with pytest.raises(InputError, match="missing or incomplete"):
        SliceStore.open(tmp_path / "slices")


def test_failed_rebuild_keeps_previous_store(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    before = np.array(store.images)
    del store
    # A truncated gzip is only noticed when the data is decompressed, halfway through the build.
    with gzip.open(sources[3].images[0], "rb") as f:
        raw = f.read()
    sources[3].images[0].write_bytes(gzip.compress(raw)[:200])
    with pytest.raises(InputError):
        build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False, force=True)
    after = SliceStore.open(tmp_path / "slices")
    np.testing.assert_array_equal(np.array(after.images), before)


def test_store_skips_rebuild_when_inputs_unchanged(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path, masks=False)
    out = tmp_path / "slices"
    build_slice_store(out, sources, splits, SPEC, progress=False)
    stamp = os.stat(out / "images.npy").st_mtime_ns, os.stat(out / "images.npy").st_ino
    build_slice_store(out, sources, splits, SPEC, progress=False)
    assert (os.stat(out / "images.npy").st_mtime_ns, os.stat(out / "images.npy").st_ino) == stamp
    fp = store_fingerprint(sources, splits, SPEC, ["old", "young"])
    assert SliceStore.open(out).meta["fingerprint"] == fp
    # Changing the spec, the split or an input file changes the fingerprint.
    assert store_fingerprint(sources, splits, SliceSpec(per_axis=3, size=32), None) != fp
    moved = splits.copy()
    moved.loc[0, "split"] = "val" if moved.loc[0, "split"] != "val" else "train"
    assert store_fingerprint(sources, moved, SPEC, ["old", "young"]) != fp
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), lps_affine()), sources[0].images[0])
    store = build_slice_store(out, sources, splits, SPEC, progress=False)
    assert store.meta["fingerprint"] != fp
    assert not np.asarray(store.images[: len(AXES) * SPEC.per_axis]).any()


def test_store_rejects_inconsistent_inputs(tmp_path) -> None:
    sources, splits = write_cohort(tmp_path, masks=False)
    with pytest.raises(InputError, match="not in the split table"):
        build_slice_store(tmp_path / "s", sources, splits.iloc[1:], SPEC, progress=False)
    relabelled = splits.copy()
    relabelled.loc[0, "label"] = "other"
    with pytest.raises(InputError, match="label differs"):
        build_slice_store(tmp_path / "s", sources, relabelled, SPEC, progress=False)
    with pytest.raises(InputError, match="duplicate"):
        build_slice_store(tmp_path / "s", [*sources, sources[0]], splits, SPEC, progress=False)
    with pytest.raises(InputError, match="not among the classes"):
        build_slice_store(tmp_path / "s", sources, splits, SPEC, classes=["young"], progress=False)
    assert not (tmp_path / "s").exists()


def test_brain_masks_are_sliced_like_the_images_and_change_the_fingerprint(tmp_path) -> None:
    import dataclasses

    from braincam.data.slicing import extract_slices

    sources, splits = write_cohort(tmp_path, masks=False)
    plain = build_slice_store(tmp_path / "plain", sources, splits, SPEC, progress=False)
    assert plain.brain is None and not plain.meta["has_brain"]
    # a brain mask for every subject but the last (whose rows must then count as all brain)
    with_brain = []
    for k, src in enumerate(sources):
        if k == len(sources) - 1:
            with_brain.append(src)
            continue
        img = nib.load(src.images[0])
        brain = np.zeros(img.shape, np.uint8)
        brain[3 + k % 3 : 14, 4:18, 2:16] = 1
        path = tmp_path / "in" / f"{src.participant_id}_brain.nii.gz"
        nib.save(nib.Nifti1Image(brain, img.affine), path)
        with_brain.append(dataclasses.replace(src, brain_mask=path))
    assert store_fingerprint(with_brain, splits, SPEC) != store_fingerprint(sources, splits, SPEC)
    store = build_slice_store(tmp_path / "brain", with_brain, splits, SPEC, progress=False)
    assert store.meta["has_brain"] and store.brain.shape == (len(store), SPEC.size, SPEC.size)
    reopened = SliceStore.open(tmp_path / "brain")
    for src in with_brain:
        lo, hi = reopened.meta["subjects"][src.participant_id]["rows"]
        got = np.asarray(reopened.brain[lo:hi])
        if src.brain_mask is None:
            assert (got == 1).all()
            continue
        # the same slices a direct extraction gives (nearest neighbour, like the masks)
        ref = extract_slices([nib.load(src.images[0])], SPEC, brain=nib.load(src.brain_mask))
        assert np.array_equal(got, ref.brain) and 0 < got.mean() < 1
        # and the images are unchanged by the brain mask
        assert np.array_equal(np.asarray(reopened.images[lo:hi]), np.asarray(plain.images[lo:hi]))
