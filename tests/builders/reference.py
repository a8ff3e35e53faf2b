"""Reference libraries of the cross-checks: skipped when missing locally, a failure under CI.

A module-level ``pytest.importorskip`` silently skips every cross-check when a dependency goes
missing; under CI (``CI=true``, as ``.ci/run`` and most CI services set it) the test extras are
installed, so a missing one is a broken environment and must fail, as the browser test does.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import ``module``; skip the test (or the whole test module) without it, fail under CI."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"reference library {module!r} not importable ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} in CI: install the test extras (.[test])", pytrace=False)
        pytest.skip(message, allow_module_level=True)
