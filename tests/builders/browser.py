"""Skip (or fail under CI) when chromium or playwright is missing."""

from __future__ import annotations

import os

import pytest

from braincam.report.browser import find_chromium


def _require_browser() -> None:
    missing = find_chromium() is None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium/playwright missing in CI: .ci/run should have installed them")
        pytest.skip("chromium or playwright not installed")
