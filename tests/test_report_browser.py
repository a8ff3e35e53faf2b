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
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from braincam.report import blocks as B
from braincam.report.render import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser() -> None:
    missing = CHROMIUM is None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium/playwright missing in CI: .ci/run should have installed them")
        pytest.skip("chromium or playwright not installed")


def check_report_in_browser(report: Path, screenshot: Path) -> dict:
    """Load ``report`` headless; return console errors, broken images and viewer canvas sizes."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.resolve().as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(1500)
        broken = page.evaluate(
            "Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)"
        )
        n_images = page.evaluate("document.images.length")
        canvases = []
        for frame in page.frames[1:]:
            canvases += frame.evaluate(
                "Array.from(document.querySelectorAll('canvas')).map(c => [c.width, c.height])"
            )
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"errors": errors, "broken": broken, "n_images": n_images, "canvases": canvases}


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
    result = check_report_in_browser(report, shot)
    assert result["errors"] == []
    assert result["n_images"] >= 1 and result["broken"] == []
    assert any(w > 0 and h > 0 for w, h in result["canvases"]), result["canvases"]
    assert shot.stat().st_size > 10_000
    if out := os.environ.get("BRAINCAM_SCREENSHOT_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / "report-browser-test.png")
