"""Check a report in a real headless browser (Debian's chromium via playwright; no download).

Used by the test suite and by ``braincam report --check``: every image must decode, every 3D
viewer must draw on its canvas, and the page must log no JavaScript error.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from braincam.errors import BraincamError

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """Path of a system chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class BrowserCheck:
    """What the browser saw."""

    errors: list[str] = field(default_factory=list)
    n_images: int = 0
    broken_images: list[str] = field(default_factory=list)
    canvases: list[tuple[int, int]] = field(default_factory=list)
    n_viewers: int = 0

    @property
    def ok(self) -> bool:
        viewers_drawn = sum(1 for w, h in self.canvases if w > 0 and h > 0) >= self.n_viewers
        return not self.errors and not self.broken_images and viewers_drawn


def check_report(report: str | Path, screenshot: str | Path | None = None) -> BrowserCheck:
    """Open ``report`` headless, wait for it to render, and collect errors and broken content."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BraincamError("the browser check needs playwright (pip install playwright)") from None
    chromium = find_chromium()
    if chromium is None:
        raise BraincamError("no chromium found (Debian: apt-get install chromium)")
    result = BrowserCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: result.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: result.errors.append(str(e)))
        page.goto(Path(report).resolve().as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(1500)  # let the viewers' scripts draw
        result.n_images = page.evaluate("document.images.length")
        result.broken_images = page.evaluate(
            "Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)"
        )
        result.n_viewers = page.evaluate("document.querySelectorAll('iframe.viewer').length")
        for frame in page.frames[1:]:
            result.canvases += [
                tuple(c)
                for c in frame.evaluate(
                    "Array.from(document.querySelectorAll('canvas')).map(c => [c.width, c.height])"
                )
            ]
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return result
