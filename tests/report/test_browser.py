"""Open a report in headless Debian chromium: every image and the 3D view render, no JS errors.

Skipped when chromium or playwright is missing, except in CI (``CI=true``), where `.ci/run`
installs chromium and a skip would hide a broken report.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from braincam.report import blocks as B
from braincam.report.browser import check_report
from braincam.report.render import write_report
from builders.browser import _require_browser


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    _require_browser()
    from nilearn import datasets

    tpl = datasets.load_mni152_template(resolution=2)
    heat = np.zeros(tpl.shape, np.float32)
    heat[30:60, 60:90, 40:60] = np.linspace(0, 1, 30)[:, None, None]
    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(0).random((16, 16)))
    section = B.Section("s", "Section <1>")
    section.add(B.figure_from_matplotlib(fig, title="random"))
    section.add(B.brain_viewer(nib.Nifti1Image(heat, tpl.affine), title="mean heatmap"))
    report = write_report(tmp_path / "report.html", [section], title="browser check")

    shot = tmp_path / "report.png"
    result = check_report(report, shot)
    assert result.errors == []
    assert result.n_images >= 1 and result.broken_images == []
    assert result.n_viewers == 1
    assert any(w > 0 and h > 0 for w, h in result.canvases), result.canvases
    assert result.ok
    assert shot.stat().st_size > 10_000
    if out := os.environ.get("BRAINCAM_SCREENSHOT_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / "report-browser-test.png")
