"""The synth seam: one registry maps a kind to its generator; 'structural' is an alias."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from braincam.cli import app
from braincam.errors import ConfigError
from braincam.synth import generator_for, generator_kinds, get_generator
from braincam.synth.anat import AnatSynthConfig, synthesize_anat
from braincam.synth.dwi import SynthConfig, synthesize


def test_kinds_and_generators() -> None:
    assert generator_kinds() == ("dwi", "anat")
    dwi, anat = get_generator("dwi"), get_generator("anat")
    assert dwi.config_class is SynthConfig and dwi.synthesize is synthesize
    assert anat.config_class is AnatSynthConfig and anat.synthesize is synthesize_anat
    assert generator_for(SynthConfig()) is dwi and generator_for(AnatSynthConfig()) is anat
    with pytest.raises(TypeError):
        generator_for(object())


def test_config_from_options_takes_only_its_options() -> None:
    options = {"subjects": 7, "snr": 12.0, "groups": ("a", "b", "c"), "bias_strength": 0.1}
    anat = get_generator("anat").config_from_options(options)
    assert anat.subjects == 7 and anat.groups == ("a", "b", "c") and anat.bias_strength == 0.1
    assert anat.snr == AnatSynthConfig().snr  # the dwi CLI default never reaches anat
    dwi = get_generator("dwi").config_from_options(options)
    assert dwi.subjects == 7 and dwi.snr == 12.0


def test_unknown_kind_and_deprecated_alias() -> None:
    with pytest.raises(ConfigError, match="--kind must be dwi or anat, got 'pet'"):
        get_generator("pet", what="--kind")
    with pytest.warns(FutureWarning, match="kind 'structural' is deprecated; use 'anat'"):
        assert get_generator("structural").kind == "anat"


def test_cli_prints_the_deprecation_for_kind_structural(tmp_path: Path) -> None:
    args = ["synth", str(tmp_path / "x"), "--kind", "structural", "-n", "2", "--quiet"]
    result = CliRunner().invoke(app, args)  # 2 subjects: rejected after the name is resolved
    assert isinstance(result.exception, ConfigError) and "subjects" in str(result.exception)
    assert "'structural' is deprecated; use 'anat'" in result.output


def test_the_cli_head_options_reach_the_structural_generator(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import braincam.synth.anat
    from braincam.cli import app

    seen: list = []

    def fake(out, config, *, overwrite, progress, workers):
        seen.append(config)
        return out

    monkeypatch.setattr(braincam.synth.anat, "synthesize_anat", fake)
    args = ["synth", str(tmp_path / "b"), "--kind", "anat", "--head", "--scalp-shortcut-mm", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen[0].head.enabled is True and seen[0].head.shortcut_mm == 4.0
    CliRunner().invoke(app, ["synth", str(tmp_path / "c"), "--kind", "anat"])
    assert seen[1].head.enabled is False  # no head unless asked: synthetic brains are stripped
