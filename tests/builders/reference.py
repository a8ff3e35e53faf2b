"""Reference libraries of the cross-checks: skipped when missing locally, a failure under CI.

A module-level ``pytest.importorskip`` silently skips every cross-check when a dependency goes
missing; under CI (``CI=true``, as ``.ci/run`` and most CI services set it) the test extras are
installed, so a missing one is a broken environment and must fail, as the browser test does.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

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


def _in_ci_import_skip(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str | None:
    """The message of a ``pytest.importorskip`` skip when ``CI=true``, else None."""
    if os.environ.get("CI") != "true" or excinfo is None:
        return None
    if not excinfo.errisinstance(pytest.skip.Exception):
        return None
    text = str(excinfo.value)
    return text if text.startswith("could not import") else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI a test that called ``pytest.importorskip`` on a missing module fails, as
    :func:`require` does: the cross-checks that still import their reference that way must not
    skip silently in CI either (``tests/conftest.py`` re-exports this hook)."""
    outcome = yield
    message = _in_ci_import_skip(call.excinfo)
    if message is not None:
        report = outcome.get_result()
        report.outcome = "failed"
        report.longrepr = f"{message} in CI: install the test extras (.[test])"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """The same for a module-level ``pytest.importorskip`` (a skip at collection)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        text = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        if "could not import" in text:
            report.outcome = "failed"
            report.longrepr = f"{text} in CI: install the test extras (.[test])"
