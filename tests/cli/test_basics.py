"""The CLI shell: help, version, and domain errors printed without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from braincam.cli import app
from braincam.errors import InputError


def test_version_lists_libraries() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert "braincam 0.1.0" in result.output
    assert "torch " in result.output


def test_input_error_names_subject_file_and_value() -> None:
    err = InputError("bvecs are not unit length", subject="sub-01", path="a.bvec", value=1.7)
    assert str(err) == "bvecs are not unit length; subject=sub-01; file=a.bvec; value=1.7"
    assert isinstance(err, ValueError)


def test_main_prints_domain_error_without_traceback() -> None:
    code = (
        "import braincam.cli._app as a\n"
        "from braincam.errors import InputError\n"
        "@a.app.command()\n"
        "def boom():\n"
        "    raise InputError('bad thing', subject='sub-07')\n"
        "a.main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "boom"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "bad thing; subject=sub-07" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_error_naming_a_long_bracketed_path_is_printed_whole() -> None:
    """A path is printed as it is, on one line, whatever the terminal width: brackets are not
    read as markup and a long path is not broken by a newline (it could not be pasted)."""
    path = "/data/" + "very-long-folder-name/" * 12 + "sub-07[run 2]/dwi.nii.gz"
    code = (
        "import braincam.cli._app as a\n"
        "from braincam.errors import InputError\n"
        "@a.app.command()\n"
        "def boom():\n"
        f"    raise InputError('unreadable', subject='sub-07', path={path!r})\n"
        "a.main()\n"
    )
    env = {**os.environ, "COLUMNS": "60"}
    proc = subprocess.run(
        [sys.executable, "-c", code, "boom"], capture_output=True, text=True, check=False, env=env
    )
    assert proc.returncode == 2
    assert proc.stderr == f"error: unreadable; subject=sub-07; file={path}\n"


def test_atomic_writes_use_the_umask_mode(tmp_path) -> None:
    import os

    from braincam.io import write_text_atomic

    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
