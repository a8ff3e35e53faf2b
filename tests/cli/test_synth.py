"""`braincam synth`: the structural kind and a bad kind."""

from __future__ import annotations

from pathlib import Path

from braincam.errors import ConfigError
from braincam.synth import anat as sa


def test_cli_synth_structural_and_bad_kind(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from braincam.cli import app

    runner = CliRunner()
    out = tmp_path / "bids"
    args = ["synth", str(out), "--kind", "structural", "-n", "3", "--voxel-size", "4"]
    result = runner.invoke(app, [*args, "--groups", "hc,rr,sp", "--quiet"])
    assert result.exit_code == 0, result.output
    assert all(p.is_file() for p in sa.anat_paths(out, "sub-03").values())
    groups = (out / "participants.tsv").read_text().split()
    assert {"hc", "rr", "sp"} <= set(groups)
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--kind", "pet", "--quiet"])
    # The console script (cli._app.main) prints domain errors; CliRunner keeps the exception.
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)
    assert "--kind" in str(bad.exception)
