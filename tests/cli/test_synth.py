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


def test_lesion_only_contrast(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from braincam.cli import app
    from braincam.config.synth import DEFAULT_EFFECTS, AnatSynthConfig

    only = AnatSynthConfig().lesions_only()
    for before, after in zip(DEFAULT_EFFECTS, only.effects, strict=True):
        assert after.atrophy == 0 and after.ventricle_enlargement == 0
        assert (after.lesions, after.radius_mm, after.periventricular, after.ages) == (
            before.lesions,
            before.radius_mm,
            before.periventricular,
            before.ages,
        )
    assert any(e.atrophy > 0 for e in DEFAULT_EFFECTS)  # so the test above is not vacuous

    runner = CliRunner()
    out = tmp_path / "bids"
    args = ["synth", str(out), "--kind", "anat", "-n", "3", "--voxel-size", "4", "--quiet"]
    result = runner.invoke(app, [*args, "--lesion-only"])
    assert result.exit_code == 0, result.output
    sidecars = sorted((out / "derivatives" / "groundtruth").rglob("*_desc-lesion_mask.json"))
    assert len(sidecars) == 3
    for path in sidecars:
        info = json.loads(path.read_text())
        assert info["Atrophy"] == 0 and info["VentricleEnlargement"] == 0
    dwi = runner.invoke(app, ["synth", str(tmp_path / "d"), "--lesion-only", "--quiet"])
    assert dwi.exit_code != 0 and "--lesion-only" in dwi.output
