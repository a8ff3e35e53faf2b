"""Building the slice store: atomic, resumable, fingerprinted, validated."""

from __future__ import annotations

import gzip
import os
import re

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
    assert plain.brain is None and not plain.meta["has_brain"] and not plain.meta["has_masks"]
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


def test_fingerprint_is_the_hash_of_the_documented_payload(tmp_path) -> None:
    """The exact payload (its keys are the on-disk format: renaming one makes every stored store
    look stale): spec, classes, and per subject its id, label, split, paths and their bytes."""
    import dataclasses
    import hashlib
    import json

    import pandas as pd

    from braincam.data.slices import FORMAT_VERSION, SliceSource

    image = tmp_path / "a.nii.gz"
    image.write_bytes(b"not parsed, only hashed")
    digest = hashlib.sha256(b"not parsed, only hashed").hexdigest()
    gone = tmp_path / "gone.nii.gz"  # a missing file hashes as "missing": the build reports it
    sources = [
        SliceSource("sub-1", "old", [image, gone], mask=image, brain_mask=gone),
        SliceSource("sub-2", "young", [gone, image]),
    ]
    splits = pd.DataFrame(
        {"participant_id": ["sub-2", "sub-1"], "label": ["young", "old"], "split": ["val", "train"]}
    )
    payload = {
        "format_version": FORMAT_VERSION,
        "spec": SPEC.to_dict(),
        "classes": ["young", "old"],
        "sources": [
            {
                "participant_id": "sub-1",
                "label": "old",
                "split": "train",
                "images": [[str(image), digest], [str(gone), "missing"]],
                "mask": [str(image), digest],
                "brain_mask": [str(gone), "missing"],
            },
            {
                "participant_id": "sub-2",
                "label": "young",
                "split": "val",
                "images": [[str(gone), "missing"], [str(image), digest]],
                "mask": None,
            },
        ],
    }
    want = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    assert store_fingerprint(sources, splits, SPEC, ("young", "old")) == want
    payload["classes"] = None
    want = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    assert store_fingerprint(sources, splits, SPEC) == want
    # a mask or a brain mask that appears changes it, as does the file's content
    plain = store_fingerprint([dataclasses.replace(sources[0], mask=None)], splits, SPEC)
    assert plain != store_fingerprint(sources[:1], splits, SPEC)
    before = store_fingerprint(sources, splits, SPEC)
    image.write_bytes(b"other bytes")
    assert store_fingerprint(sources, splits, SPEC) != before


def test_read_errors_name_what_was_read(tmp_path) -> None:
    from braincam.data.slice_build import read_image

    path = tmp_path / "brain.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), lps_affine()), path)
    with pytest.raises(InputError, match="brain mask must be a 3D volume") as info:
        read_image(path, "sub-9", "brain mask")
    assert info.value.subject == "sub-9" and info.value.path == str(path)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 1), np.float32), lps_affine()), path)
    img = read_image(path, "sub-9", "brain mask")  # a trailing singleton axis is dropped
    assert img.shape == (4, 4, 4) and np.allclose(img.affine, lps_affine())


def test_build_makes_missing_parents_and_leaves_only_the_store(tmp_path) -> None:
    """Nested output directories are created; a rebuild leaves no old or temporary directory
    behind, and a leftover that cannot be removed as a directory does not stop the build."""
    sources, splits = write_cohort(tmp_path, masks=False)
    out = tmp_path / "deep" / "er" / "slices"
    build_slice_store(out, sources, splits, SPEC, progress=False)
    assert sorted(p.name for p in out.parent.iterdir()) == ["slices"]
    (out.parent / ".slices.tmp-stale").write_text("a file, not a directory")
    store = build_slice_store(out, sources, splits, SPEC, progress=False, force=True)
    assert len(store) == len(sources) * len(AXES) * SPEC.per_axis
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == [".slices.tmp-stale", "slices"]  # the previous store went, no .old-*


def test_store_meta_and_index_values(tmp_path) -> None:
    """meta.json, index.tsv and pixel_to_world.npy hold what the subjects and the spec say."""
    import pandas as pd

    sources, splits = write_cohort(tmp_path, masks=True)
    store = build_slice_store(tmp_path / "slices", sources, splits, SPEC, progress=False)
    meta = store.meta
    per = len(AXES) * SPEC.per_axis
    n = per * len(sources)
    split_of = dict(zip(splits["participant_id"], splits["split"], strict=True))
    assert meta["classes"] == ["old", "young"]  # sorted labels when none are given
    assert (meta["size"], meta["channels"], meta["slices_per_axis"]) == (32, 1, 4)
    assert meta["axes"] == list(SPEC.axes) and meta["step"] == SPEC.step
    assert meta["n_slices"] == n and meta["has_masks"] and not meta["has_brain"]
    assert meta["spec"] == SPEC.to_dict() and meta["format_version"] == 1
    assert meta["source"] == {s.participant_id: str(s.images[0]) for s in sources}
    assert set(meta["orientation"]) == {"axial", "coronal", "sagittal"}
    # no voxel size in the spec: the subjects' common one (rounded to 1e-6 mm)
    assert SPEC.voxel_size is None
    assert meta["voxel_size_mm"] == round(
        meta["subjects"][sources[0].participant_id]["voxel_size_mm"], 6
    )
    for k, src in enumerate(sources):
        info = meta["subjects"][src.participant_id]
        assert info["rows"] == [k * per, (k + 1) * per]
        assert info["label"] == src.label and info["split"] == split_of[src.participant_id]
        assert info["images"] == [str(p) for p in src.images]
        assert info["mask"] == (None if src.mask is None else str(src.mask))
        assert info["brain_mask"] is None
        assert info["source_shape"] == list(SHAPE) and len(info["grid_shape"]) == 3
        assert np.asarray(info["source_affine"]).shape == (4, 4)
    index = pd.read_csv(tmp_path / "slices" / "index.tsv", sep="\t", keep_default_na=False)
    assert list(index.columns) == [
        "participant_id",
        "label",
        "target",
        "split",
        "axis",
        "position",
        "mask_pixels",
    ]
    assert len(index) == n
    for k, src in enumerate(sources):
        rows = index.iloc[k * per : (k + 1) * per]
        assert set(rows["participant_id"]) == {src.participant_id}
        assert set(rows["target"]) == {["old", "young"].index(src.label)}
        assert set(rows["split"]) == {split_of[src.participant_id]}
        assert list(rows["axis"]) == [a for a in AXES for _ in range(SPEC.per_axis)]
        if src.mask is None:
            assert set(rows["mask_pixels"]) == {"n/a"}  # unknown, not zero
        else:
            assert all(str(v).isdigit() for v in rows["mask_pixels"])
    # masks: zero rows for the subjects without one; pixel_to_world: one (4, 3) map per slice
    from braincam.data.slicing import extract_slices

    first = sources[0]
    ref = extract_slices([nib.load(first.images[0])], SPEC, mask=nib.load(first.mask))
    assert np.array_equal(np.asarray(store.masks[:per]), ref.masks) and ref.masks.any()
    last = sources[-1]
    assert last.mask is None and not np.asarray(store.masks[(len(sources) - 1) * per :]).any()
    p2w = np.load(tmp_path / "slices" / "pixel_to_world.npy")
    assert p2w.shape == (n, 4, 3) and np.abs(p2w).sum(axis=(1, 2)).min() > 0
    # classes given: their order, not the sorted one, sets the targets
    other = build_slice_store(
        tmp_path / "s2", sources, splits, SPEC, classes=["young", "old"], progress=False
    )
    assert other.meta["classes"] == ["young", "old"]
    assert set(other.index["target"][other.index["label"] == "young"]) == {0}


def test_progress_is_shown_by_default_and_can_be_turned_off(tmp_path, capsys) -> None:
    sources, splits = write_cohort(tmp_path, masks=False)
    build_slice_store(tmp_path / "quiet", sources, splits, SPEC, progress=False)
    quiet = capsys.readouterr()
    assert "Slicing subjects" not in quiet.out + quiet.err
    build_slice_store(tmp_path / "shown", sources, splits, SPEC)
    shown = capsys.readouterr()
    # the bar's label as it is, then the count of subjects done
    n = len(sources)
    assert re.search(rf"^Slicing subjects\b.* {n}/{n}\b", shown.out + shown.err, re.M)


# -- issue 19: what _write_store records, value for value ----------------------------------------
def _axis_aligned(tmp_path, name: str, zoom: float, label: str):
    """A random 12×14×10 subject on an axis-aligned grid of ``zoom`` mm (exact in float32)."""
    from braincam.data.slices import SliceSource

    path = tmp_path / "in" / f"{name}.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(len(name)).random((12, 14, 10), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([zoom, zoom, zoom, 1.0])), path)
    return SliceSource(name, label, [path])


def test_store_voxel_size_is_the_specs_or_the_subjects_common_one(tmp_path) -> None:
    """meta.json's voxel size: the spec's as given; else the subjects' smallest voxel size when
    they agree to 1e-6 mm (1.5 and 1.5 + 2⁻²¹ do, their 7th decimals differ), else none. Each
    subject keeps its own, unrounded."""
    import pandas as pd

    near = 1.5 + 2.0**-21  # 1.50000048: float32-exact, rounds to 1.5 at 6 decimals
    a = _axis_aligned(tmp_path, "sub-a", 1.5, "old")
    b = _axis_aligned(tmp_path, "sub-b", near, "young")
    c = _axis_aligned(tmp_path, "sub-c", 2.0, "young")
    splits = pd.DataFrame(
        {
            "participant_id": ["sub-a", "sub-b", "sub-c"],
            "label": ["old", "young", "young"],
            "split": ["train", "val", "test"],
        }
    )
    spec = SliceSpec(per_axis=2, size=16)
    agree = build_slice_store(tmp_path / "ab", [a, b], splits, spec, progress=False).meta
    assert agree["voxel_size_mm"] == 1.5
    assert [agree["subjects"][s]["voxel_size_mm"] for s in ("sub-a", "sub-b")] == [1.5, near]
    differ = build_slice_store(tmp_path / "ac", [a, c], splits, spec, progress=False).meta
    assert differ["voxel_size_mm"] is None
    assert [differ["subjects"][s]["voxel_size_mm"] for s in ("sub-a", "sub-c")] == [1.5, 2.0]
    given = SliceSpec(per_axis=2, size=16, voxel_size=1.2345678)
    fixed = build_slice_store(tmp_path / "v", [a, c], splits, given, progress=False).meta
    assert fixed["voxel_size_mm"] == 1.2345678  # not rounded


def test_store_arrays_dtypes_orientation_grid_and_versions(tmp_path) -> None:
    """The arrays' dtypes on disk, the orientation of each axis's slices, each subject's grid
    affine and the library versions in meta.json."""
    from braincam.data.slicing import extract_slices
    from braincam.provenance import library_versions

    sources, splits = write_cohort(tmp_path, masks=True)
    out = tmp_path / "slices"
    meta = build_slice_store(out, sources, splits, SPEC, progress=False).meta
    assert np.load(out / "images.npy", mmap_mode="r").dtype == np.float32
    assert np.load(out / "masks.npy", mmap_mode="r").dtype == np.uint8
    assert meta["orientation"] == {
        "axial": "rows anterior→posterior, columns left→right",
        "coronal": "rows superior→inferior, columns left→right",
        "sagittal": "rows superior→inferior, columns posterior→anterior",
    }
    assert meta["versions"] == library_versions()
    for src in sources[:2]:
        ref = extract_slices([nib.load(src.images[0])], SPEC)
        info = meta["subjects"][src.participant_id]
        assert np.allclose(info["grid_affine"], ref.grid_affine, rtol=0, atol=1e-12)
        assert info["grid_shape"] == list(ref.grid_shape)


def test_read_errors_during_the_build_name_the_file_kind_and_subject(tmp_path) -> None:
    """A truncated image, mask or brain mask: the error says which kind of file it was and
    names the subject and the path."""
    import dataclasses

    sources, splits = write_cohort(tmp_path, masks=True)
    first = sources[0]
    assert first.mask is not None
    brain = tmp_path / "in" / "brain.nii.gz"
    brain.write_bytes(first.mask.read_bytes())
    sources[0] = dataclasses.replace(first, brain_mask=brain)
    for kind, path in (("image", first.images[0]), ("mask", first.mask), ("brain mask", brain)):
        saved = path.read_bytes()
        _truncate(path)
        with pytest.raises(InputError, match=f"^cannot read {kind}: ") as info:
            build_slice_store(tmp_path / "s", sources, splits, SPEC, progress=False)
        assert info.value.subject == first.participant_id and info.value.path == str(path)
        path.write_bytes(saved)
    store = build_slice_store(tmp_path / "s", sources, splits, SPEC, progress=False)
    subjects = store.meta["subjects"]
    assert subjects[first.participant_id]["brain_mask"] == str(brain)
    assert subjects[sources[1].participant_id]["brain_mask"] is None
