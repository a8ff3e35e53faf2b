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


@pytest.mark.parametrize("where", ["test", "module"])
@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_importorskip_fails_under_ci_and_skips_otherwise(
    tmp_path: Path, ci: str, outcome: str, where: str
) -> None:
    """The cross-checks that call ``pytest.importorskip`` directly obey the same rule as
    :func:`builders.reference.require` (the hook in builders.reference, loaded by conftest.py)."""
    test = tmp_path / "test_needs_it.py"
    call = "pytest.importorskip('braincam_no_such_reference_library')"
    body = f"    {call}\n" if where == "test" else "    pass\n"
    head = f"{call}\n" if where == "module" else ""
    test.write_text(f"import pytest\n{head}def test_cross_check():\n{body}")
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
            "-p",
            "builders.reference",
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
        # a failed test (1) or a collection error (2), not "no tests ran" (5)
        assert proc.returncode in (1, 2), out
        assert "braincam_no_such_reference_library" in out and "in CI" in out, out
    else:
        assert proc.returncode in (0, 5), out
        assert "1 skipped" in out and "failed" not in out and "error" not in out.lower(), out
