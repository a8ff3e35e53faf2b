"""The report of a volume run (issue 15): each picked test subject's heatmap NIfTI in nilearn's
offline viewer over the subject's image, opened at the map's maximum, and orthogonal slices
through that maximum; a cap on the number of viewers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braincam.config import ExplainConfig
from braincam.data.volumes import VolumeStore
from braincam.figures import orthogonal_planes
from braincam.layout import RunLayout
from braincam.pipeline.explain import explain_run
from braincam.report.audit import remote_resources, viewer_documents
from braincam.report.build import build_report
from braincam.report.volumes import peak_planes, peak_voxel, pick_subjects

METHODS = ["cam", "gradcam"]  # as tests/pipeline/test_volume_cams.py: the maps are reused


def _brainsprite(document: str) -> dict:
    """The parameters nilearn's viewer page passes to brainsprite (title, cut, affine)."""
    match = re.search(r"brainsprite\((\{.*?\})\);", document, re.S)
    assert match, "no brainsprite call in the viewer document"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def explained(volume_run: tuple[Path, Path]) -> tuple[Path, Path, VolumeStore, pd.DataFrame]:
    work, run = volume_run
    explain_run(run, ExplainConfig(methods=METHODS, split="test"), progress=False)
    table = pd.read_csv(
        RunLayout(run).heatmaps("test").slices, sep="\t", dtype={"participant_id": str}
    )
    return work, run, VolumeStore.open(work / "volumes"), table


def _expected_picks(table: pd.DataFrame, store: VolumeStore) -> list[str]:
    """Per class, the test subject with the most mask voxels, else the first in the table."""
    picks = []
    for label in store.classes:
        part = table[table["label"] == label]
        voxels = [int((np.asarray(store.masks[r]) > 0).sum()) for r in part["store_row"]]
        picks.append(str(part["participant_id"].iloc[int(np.argmax(voxels))]))
    return picks


def test_the_report_shows_each_methods_nifti_at_its_maximum_in_an_offline_viewer(
    explained: tuple[Path, Path, VolumeStore, pd.DataFrame],
) -> None:
    work, run, store, table = explained
    html = build_report(work, runs=[run], max_viewers=10).read_text()
    assert remote_resources(html) == []  # no CDN: scripts and styles inline, no favicon
    expected = _expected_picks(table, store)
    assert len(expected) == 2 and any(store.masks[store.row(p)].any() for p in expected)
    documents = [d for d in viewer_documents(html) if f"{run.name} · " in d]
    assert len(documents) == len(expected) * len(METHODS)  # under the cap of 10
    seen = []
    for document in documents:
        assert remote_resources(document) == []
        params = _brainsprite(document)
        pid, label, method = re.fullmatch(
            rf"{run.name} · (\S+) \((\w+)\) · (\w+)", params["title"]
        ).groups()  # type: ignore[union-attr]
        seen.append((pid, method))
        assert label == table.set_index("participant_id").loc[pid, "label"]
        # The viewer opens at the maximum of this subject's and this method's NIfTI file.
        img = nib.load(RunLayout(run).heatmaps("test").nifti_map(pid, method))
        data = np.asarray(img.dataobj)
        peak_world = nib.affines.apply_affine(img.affine, peak_voxel(data))
        # brainsprite reads coordinates as affine @ (numSlice + 1) (nilearn shifts the affine)
        cut = [params["numSlice"][axis] + 1 for axis in "XYZ"]
        shown_world = nib.affines.apply_affine(np.asarray(params["affine"]), cut)
        np.testing.assert_allclose(shown_world, peak_world, atol=1e-3)
        assert params["nbSlice"] == dict(zip("XYZ", data.shape, strict=True))
    assert seen == [(p, m) for p in expected for m in METHODS]
    # The slice figure of each pick names its maximum, read from the NIfTI independently.
    for pid in expected:
        for method in METHODS:
            data = np.asarray(
                nib.load(RunLayout(run).heatmaps("test").nifti_map(pid, method)).dataobj
            )
            i, j, k = np.unravel_index(int(np.argmax(data)), data.shape)
            assert f"{method}: maximum at voxel ({i}, {j}, {k})" in html
    assert f"{len(documents)} interactive 3-D viewer(s)" in html


def test_the_viewer_cap_keeps_the_slices_and_drops_viewers(
    explained: tuple[Path, Path, VolumeStore, pd.DataFrame],
) -> None:
    work, run, store, table = explained
    one = build_report(work, runs=[run], max_viewers=1).read_text()
    documents = [d for d in viewer_documents(one) if f"{run.name} · " in d]
    assert len(documents) == 1
    first = _expected_picks(table, store)[0]
    assert _brainsprite(documents[0])["title"].startswith(f"{run.name} · {first} ")
    assert _brainsprite(documents[0])["title"].endswith(f"· {METHODS[0]}")
    none = build_report(work, runs=[run], max_viewers=0).read_text()
    assert [d for d in viewer_documents(none) if f"{run.name} · " in d] == []
    assert none.count("<figcaption>cam: maximum at voxel") == 2  # one slice figure per pick
    assert len(none) < len(one)


def test_pick_subjects_puts_the_largest_mask_first_per_class() -> None:
    class Store:
        classes = ("young", "old")
        masks = np.zeros((5, 2, 2, 2), np.uint8)

    Store.masks[1, 0, 0, 0] = 1  # old, 1 voxel
    Store.masks[3, :, :, 0] = 1  # old, 4 voxels
    table = pd.DataFrame(
        {
            "participant_id": ["a", "b", "c", "d", "e"],
            "label": ["old", "old", "young", "old", "young"],
            "store_row": [0, 1, 2, 3, 4],
        }
    )
    assert pick_subjects(table, Store()) == [2, 3]  # young: first in order; old: 4 voxels
    assert pick_subjects(table, Store(), per_class=3) == [2, 4, 3, 1, 0]
    Store.masks = None  # type: ignore[assignment]
    assert pick_subjects(table, Store(), per_class=2) == [2, 4, 0, 1]


def test_peak_planes_cut_through_the_maximum() -> None:
    rng = np.random.default_rng(0)
    heatmap = rng.uniform(0, 0.5, size=(6, 7, 8)).astype(np.float32)
    heatmap[4, 2, 6] = 0.9
    image = rng.normal(size=heatmap.shape)
    mask = np.zeros(heatmap.shape, bool)
    mask[4, 2, 5:7] = True
    planes = peak_planes(image, heatmap, mask)
    assert planes.peak == (4, 2, 6)
    for got, want in zip(planes.heatmap, orthogonal_planes(heatmap, (4, 2, 6)), strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.max() == pytest.approx(0.9)  # every plane holds the maximum
    for got, want in zip(planes.image, orthogonal_planes(image, (4, 2, 6)), strict=True):
        np.testing.assert_array_equal(got, want)
    assert [int(m.sum()) for m in planes.mask] == [1, 2, 2]  # axial cuts z=6 only
    assert peak_planes(image, heatmap, None).mask[0].sum() == 0


def test_remote_resources_finds_what_a_page_or_its_viewers_would_fetch() -> None:
    import html as html_lib

    from braincam.report.blocks import offline_document

    inner = (
        '<html><head><link rel="icon" type="image/x-icon"\n href="https://example.org/f.ico" />'
        '<script src="https://cdn.example.org/jquery.js"></script>'
        '<style>@import "http://example.org/a.css"; b { background: url(//example.org/b.png) }'
        '</style></head><body><a href="https://example.org/docs">docs</a>'
        '<img src="data:image/png;base64,AAAA"></body></html>'
    )
    page = (
        '<html><body><script src="http://example.org/x.js"></script>'
        f'<iframe class="viewer" srcdoc="{html_lib.escape(inner)}"></iframe></body></html>'
    )
    assert remote_resources(page) == [
        "http://example.org/x.js",
        "https://example.org/f.ico",
        "https://cdn.example.org/jquery.js",
        "http://example.org/a.css",
        "//example.org/b.png",
    ]  # the <a href> link and the data: image are not fetched on opening
    assert viewer_documents(page) == [inner]
    cleaned = offline_document(inner)
    assert remote_resources(cleaned) == [
        "https://cdn.example.org/jquery.js",
        "http://example.org/a.css",
        "//example.org/b.png",
    ]  # only <link> elements are dropped: a remote script stays visible to the check
    assert "<script" in cleaned and 'href="https://example.org/docs"' in cleaned
