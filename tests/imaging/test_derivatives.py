"""braincam's BIDS derivatives folder: housekeeping after a killed run."""

from __future__ import annotations

from pathlib import Path

from braincam.imaging.derivatives import remove_stale_temps


def test_remove_stale_temps_only_removes_temp_names(tmp_path: Path) -> None:
    keep = tmp_path / "a" / "sub-01_dwimap.nii.gz"
    keep.parent.mkdir()
    keep.write_text("x")
    stale = tmp_path / "a" / ".sub-01_dwimap.nii.gz.abc123.tmp.nii.gz"
    stale.write_text("half")
    assert remove_stale_temps(tmp_path) == [stale]
    assert keep.exists() and not stale.exists()
