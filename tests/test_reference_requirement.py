"""The reference-library guard of the cross-checks: a skip locally, a failure under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders.reference import require

TESTS = Path(__file__).resolve().parent


def test_present_library_is_returned() -> None:
    assert require("json").dumps([1]) == "[1]"


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_missing_library_fails_under_ci_and_skips_otherwise(
    tmp_path: Path, ci: str, outcome: str
) -> None:
    test = tmp_path / "test_needs_it.py"
    test.write_text(
        "from builders.reference import require\n"
        "lib = require('braincam_no_such_reference_library')\n"
        "def test_cross_check():\n"
        "    assert lib\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test),
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-o",
            f"pythonpath={TESTS}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": ci},
        cwd=tmp_path,
        check=False,
    )
    out = proc.stdout + proc.stderr
    if outcome == "failed":
        assert proc.returncode != 0, out
        assert "braincam_no_such_reference_library" in out and "in CI" in out, out
    else:
        assert proc.returncode == 5, out  # pytest's "no tests ran": the module was skipped
        assert "1 skipped" in out and "error" not in out.lower(), out
