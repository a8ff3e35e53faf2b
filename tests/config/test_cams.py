"""The ``cams`` section and the settings of ``explain`` / ``evaluate-cams``: every option of the
step can be set from YAML (``tolerance``, ``shift``, ``deletion_steps`` included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from braincam.config import CamEvalConfig, CamsConfig, ExplainConfig, load_config, parse_config
from braincam.config.cams import CamSettings
from braincam.errors import ConfigError
from braincam.pipeline import run as run_mod

#: A non-default, valid value for every evaluation option (YAML spelling).
OPTIONS = {
    "split": "val", "methods": ["gradcam", "layercam"], "threshold": 0.3, "tolerance": 4.0,
    "noise_std": 0.5, "strengths": [0.5, 1.0], "n_random": 24, "shift": [3, 2],
    "deletion_steps": 7, "faithfulness_baseline": "mean",
    "max_images": 32, "sanity_images": 3, "regions": False, "atlas": "AAL3", "batch_size": 8,
    "rim_mm": 6.0, "shortcut_margin": 0.05, "layer": ["features.0", "head.conv"], "fusion": "mean",
    "checks": ["localization", "sanity", "shortcut"], "sanity_cascade": "blocks",
}  # fmt: skip


def test_the_option_list_covers_every_field() -> None:
    assert set(OPTIONS) == set(CamSettings.model_fields)
    assert set(CamEvalConfig.model_fields) == set(OPTIONS) | {"seed"}
    assert set(CamsConfig.model_fields) == set(OPTIONS) | {"enabled"}
    defaults = json.loads(json.dumps(CamEvalConfig().model_dump()))
    assert [k for k, v in OPTIONS.items() if defaults[k] == v] == []


def test_every_cams_option_reaches_evaluate_cams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import braincam.pipeline.evaluate_cams

    seen: list = []
    monkeypatch.setattr(
        braincam.pipeline.evaluate_cams,
        "evaluate_cams",
        lambda run_dir, settings, progress: seen.append((run_dir, settings)),
    )
    path = tmp_path / "exp.yaml"
    data = {"models": ["m"], "synth": {}, "train": {"seed": 11}, "cams": OPTIONS}
    path.write_text(yaml.safe_dump(data))
    run_mod._evaluate_heatmaps(load_config(path), [tmp_path / "r1", tmp_path / "r2"], False)
    assert [r for r, _ in seen] == [tmp_path / "r1", tmp_path / "r2"]
    settings = seen[0][1]
    assert type(settings) is CamEvalConfig
    assert (settings.tolerance, settings.shift, settings.deletion_steps) == (4.0, (3, 2), 7)
    assert json.loads(json.dumps(settings.model_dump())) == {**OPTIONS, "seed": 11}


def test_cams_and_evaluate_cams_share_one_set_of_constraints() -> None:
    for key, value, message in (
        ("threshold", 1.5, "threshold: must be < 1, got 1.5"),
        ("tolerance", -1.0, "tolerance: must be >= 0, got -1"),
        ("deletion_steps", 0, "deletion_steps: must be >= 1, got 0"),
        ("noise_std", -0.1, "noise_std: must be >= 0, got -0.1"),
        ("n_random", 19, "n_random: must be >= 20, got 19"),
        ("strengths", [], "strengths: strengths must be increasing values in (0, 1], got []"),
        ("strengths", [0.5, 0.25], "strengths: strengths must be increasing values in (0, 1]"),
        ("strengths", [0.5, 1.5], "strengths: strengths must be increasing values in (0, 1]"),
        ("atlas", "Harvard", "atlas: Input should be 'AAL' or 'AAL3'"),
        ("methods", ["magic"], "methods: unknown CAM method(s) ['magic']"),
    ):
        with pytest.raises(ConfigError) as yaml_err:
            parse_config({"models": ["m"], "synth": {}, "cams": {key: value}})
        with pytest.raises(ConfigError) as step_err:
            CamEvalConfig(**{key: value})
        assert f"cams.{message}" in str(yaml_err.value) and message in str(step_err.value)
    with pytest.raises(ConfigError, match=r"cams\.seed: unknown key"):  # the seed is train.seed
        parse_config({"models": ["m"], "synth": {}, "cams": {"seed": 1}})


def test_step_settings_keep_their_bytes() -> None:
    """The ``config`` written to cam_eval/summary.json and heatmaps/meta.json (pre-pydantic)."""
    assert json.dumps(CamEvalConfig().model_dump()) == (
        '{"split": "test", "methods": ["cam", "gradcam", "gradcampp"], "threshold": 0.2, '
        '"tolerance": null, "noise_std": 0.05, "strengths": [0.25, 0.5, 0.75, 1.0], '
        '"n_random": 20, "shift": null, "deletion_steps": 20, '
        '"faithfulness_baseline": "blur", "max_images": 256, "sanity_images": 16, "rim_mm": '
        '10.0, "shortcut_margin": 0.02, "regions": true, "checks": ["localization", '
        '"lesion_hits", "localization_effects", "perturbation", "faithfulness", "sanity", '
        '"shortcut", "consistency", "regions"], "sanity_cascade": "layers", "atlas": "AAL", '
        '"batch_size": 64, "layer": null, "fusion": "layercam", "seed": 0}'
    )
    assert json.dumps(ExplainConfig().model_dump()) == (
        '{"methods": ["cam", "gradcam", "gradcampp"], "split": "test", "target": "predicted", '
        '"layer": null, "batch_size": 16, "overlays": 12, "nifti": true, "fusion": "layercam"}'
    )
    assert ExplainConfig().fingerprint() == "a2a542fc713403c1"
    other = ExplainConfig(methods=("cam",), split="val", layer="x")
    assert other.fingerprint() == "c9bc21455bb42669"


def test_demo_can_still_assign_methods() -> None:
    cfg = parse_config({"models": ["m"], "synth": {}})
    cfg.cams.methods = ["gradcam"]
    assert cfg.cams.eval_config(seed=0).methods == ("gradcam",)
    with pytest.raises(ConfigError, match=r"methods: unknown CAM method"):
        cfg.cams.methods = ["magic"]


def test_evaluate_cams_command_sets_every_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import braincam.pipeline.evaluate_cams
    from braincam.cli import app

    seen: list = []

    shown: list[bool] = []

    def fake(run_dir, settings, progress):
        seen.append(settings)
        shown.append(progress)
        return {"seconds": {}}

    monkeypatch.setattr(braincam.pipeline.evaluate_cams, "evaluate_cams", fake)
    args = ["evaluate-cams", str(tmp_path), "--methods", "gradcam,layercam", "--split", "val",
            "--threshold", "0.3", "--tolerance", "4", "--noise-std", "0.5", "--strengths", "0.5,1",
            "--n-random", "24", "--shift", "3,2",
            "--deletion-steps", "7", "--faithfulness-baseline", "mean", "--max-images", "32",
            "--sanity-images", "3", "--no-regions", "--atlas", "AAL3", "--batch-size", "8",
            "--rim-mm", "6", "--shortcut-margin", "0.05",
            "--layer", "features.0,head.conv", "--fusion", "mean",
            "--checks", "sanity, shortcut,localization", "--sanity-cascade", "blocks",
            "--seed", "11"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(json.dumps(seen[0].model_dump())) == {**OPTIONS, "seed": 11}
    assert CliRunner().invoke(app, [*args, "--no-progress"]).exit_code == 0
    assert shown == [True, False]  # progress bars by default, --no-progress hides them
    bad = CliRunner().invoke(app, ["evaluate-cams", str(tmp_path), "--shift", "3,x"])
    assert isinstance(bad.exception, ConfigError) and "shift.1" in str(bad.exception)


def test_the_papers_20_percent_box_threshold_at_every_layer(tmp_path, monkeypatch) -> None:
    """The dMRI study's box rule keeps pixels ≥ 20 % of each map's max: the default of every
    function that takes a threshold, of the step's config, of the experiment file's ``cams``
    section (and what it hands the step), and of ``braincam evaluate-cams``."""
    import inspect

    from typer.testing import CliRunner

    from braincam.cli import app
    from braincam.metrics import boxes, localization, perturbation
    from braincam.pipeline import evaluate_cams as step

    functions = [
        boxes.threshold_regions,
        boxes.bounding_boxes,
        localization.iou_threshold,
        localization.iou_box,
        localization.localization_table,
        perturbation.perturbation_check,
    ]
    for fn in functions:
        assert inspect.signature(fn).parameters["threshold"].default == 0.2, fn.__qualname__
    assert CamEvalConfig().threshold == 0.2
    assert CamSettings.model_fields["threshold"].default == 0.2
    cams = parse_config({"models": ["m"], "synth": {}}).cams
    assert cams.threshold == 0.2
    assert cams.eval_config(seed=0).threshold == 0.2
    seen: list[CamEvalConfig] = []

    def fake_run(run_dir, config, progress=True):
        seen.append(config)
        return {"seconds": {}}

    monkeypatch.setattr(step, "evaluate_cams", fake_run)
    result = CliRunner().invoke(app, ["evaluate-cams", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [c.threshold for c in seen] == [0.2]
    result = CliRunner().invoke(app, ["evaluate-cams", str(tmp_path), "--threshold", "0.35"])
    assert result.exit_code == 0, result.output
    assert [c.threshold for c in seen] == [0.2, 0.35]


def test_layer_lists_are_checked_and_one_name_is_that_name() -> None:
    assert ExplainConfig(layer=("x",)).layer == "x"
    assert ExplainConfig(layer=("x",)).fingerprint() == ExplainConfig(layer="x").fingerprint()
    # the fusion rule changes nothing for one layer, and the maps of several layers
    assert (
        ExplainConfig(layer="x", fusion="mean").fingerprint()
        == ExplainConfig(layer="x").fingerprint()
    )
    two = ExplainConfig(layer=("x", "y"))
    assert two.layer == ("x", "y") and two.fingerprint() != ExplainConfig(layer="x").fingerprint()
    assert two.fingerprint() != ExplainConfig(layer=("x", "y"), fusion="mean").fingerprint()
    for bad, message in (
        (["x", "x"], "named twice"),
        ([], "give layer names"),
        (["x", ""], "give layer names"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({"models": ["m"], "synth": {}, "cams": {"layer": bad}})
    with pytest.raises(ConfigError, match="fusion"):
        CamEvalConfig(fusion="max")


def test_explain_command_takes_several_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import braincam.pipeline.explain
    from braincam.cli import app

    seen: list = []

    class Done:
        computed = ()
        out_dir = tmp_path

    def fake(run_dir, config, store_path=None, device="cpu"):
        seen.append(config)
        return Done()

    monkeypatch.setattr(braincam.pipeline.explain, "explain_run", fake)
    args = ["explain", str(tmp_path), "--layer", "a.b, c", "--fusion", "mean"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (seen[0].layer, seen[0].fusion) == (("a.b", "c"), "mean")
    CliRunner().invoke(app, ["explain", str(tmp_path), "--layer", "a.b"])
    assert (seen[1].layer, seen[1].fusion) == ("a.b", "layercam")


def test_checks_default_to_every_family_and_regions_is_their_alias() -> None:
    from braincam.pipeline.evaluate_cams import FAMILIES

    assert CamEvalConfig().checks == tuple(FAMILIES)  # the default runs everything, in order
    assert CamEvalConfig().sanity_cascade == "layers"
    no_regions = CamEvalConfig(regions=False)
    assert no_regions.checks == tuple(f for f in FAMILIES if f != "regions")
    # checks alone decide regions; the order is evaluate-cams' whatever the order given
    two = CamEvalConfig(checks=("sanity", "localization"))
    assert (two.checks, two.regions) == (("localization", "sanity"), False)
    assert CamEvalConfig(checks=("regions", "localization")).regions is True
    yaml_cams = parse_config(
        {"models": ["m"], "synth": {}, "cams": {"checks": ["sanity", "localization"]}}
    ).cams
    assert yaml_cams.checks == ["localization", "sanity"] and yaml_cams.regions is False
    assert yaml_cams.eval_config(seed=0).checks == ("localization", "sanity")
    # both spellings agreeing are accepted, contradicting ones are an error naming both
    assert CamEvalConfig(regions=False, checks=("localization",)).checks == ("localization",)
    for regions, checks, word in (
        (False, ("regions",), "lists"),
        (True, ("sanity",), "leaves out"),
    ):
        with pytest.raises(ConfigError, match=f"regions is {regions} but checks {word} 'regions'"):
            CamEvalConfig(regions=regions, checks=checks)
        with pytest.raises(ConfigError, match=r"cams: regions is .*give one of them"):
            parse_config(
                {"models": ["m"], "synth": {}, "cams": {"regions": regions, "checks": list(checks)}}
            )
    with pytest.raises(ConfigError, match="named twice"):
        CamEvalConfig(checks=("sanity", "sanity"))
    with pytest.raises(ConfigError, match=r"checks\.0"):
        CamEvalConfig(checks=("saliency",))
    with pytest.raises(ConfigError, match="sanity_cascade"):
        CamEvalConfig(sanity_cascade="stages")
    # the setting's words are the metric's (config cannot import metrics: checked here)
    from typing import get_args

    from braincam.metrics.sanity import CASCADES
    from braincam.summary_schema import SanityCascade

    assert get_args(SanityCascade) == CASCADES == ("layers", "blocks", "full")


def test_evaluate_cams_command_checks_and_no_regions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import braincam.pipeline.evaluate_cams
    from braincam.cli import app

    seen: list = []
    monkeypatch.setattr(
        braincam.pipeline.evaluate_cams,
        "evaluate_cams",
        lambda run_dir, settings, progress: seen.append(settings) or {"seconds": {}},
    )
    runner = CliRunner()
    assert runner.invoke(app, ["evaluate-cams", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["evaluate-cams", str(tmp_path), "--no-regions"]).exit_code == 0
    args = ["evaluate-cams", str(tmp_path), "--checks", "localization,regions"]
    assert runner.invoke(app, args).exit_code == 0
    assert [s.checks for s in seen][1:] == [
        tuple(c for c in CamEvalConfig().checks if c != "regions"),
        ("localization", "regions"),
    ]
    assert seen[0].checks == CamEvalConfig().checks and seen[2].regions is True
    bad = runner.invoke(app, [*args, "--no-regions"])
    assert isinstance(bad.exception, ConfigError) and "give one of them" in str(bad.exception)
