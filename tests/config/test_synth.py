"""The ``synth`` section: every generator option can be set from YAML and reaches the generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from braincam.config import AnatSynthConfig, SynthConfig, dump_config, load_config, parse_config
from braincam.errors import ConfigError
from braincam.pipeline import run as run_mod

#: A non-default, valid value for every option of each generator (YAML spelling).
DWI = {
    "subjects": 7, "seed": 3, "voxel_size": 3.0, "snr": 25.0, "directions": 12, "b0_volumes": 2,
    "bvalue": 800.0, "effect_size": 0.3, "effect_region": "sphere:0,20,10,12",
    "global_fa_change": -0.1, "global_md_change": 0.2, "atrophy": 0.05, "young_ages": [9, 14],
    "old_ages": [30, 70], "rotation_deg": 4.0, "translation_mm": 3.0, "scale_range": 0.05,
    "warp_mm": 3.0, "warp_smoothness_mm": 12.0, "fa_subject_sd": 0.02, "orientation": "RAS",
}  # fmt: skip
EFFECT = {"lesions": 5, "periventricular": 0.5, "radius_mm": [1.0, 3.0], "atrophy": 0.01,
          "ventricle_enlargement": 0.2, "ages": [30, 40]}  # fmt: skip
ANAT = {
    "subjects": 9, "seed": 4, "voxel_size": 3.0, "groups": ["hc", "rr", "sp"],
    "effects": [EFFECT, {**EFFECT, "lesions": 8}, {**EFFECT, "lesions": 12}], "snr": 30.0,
    "bias_strength": 0.1, "misregistration_deg": 2.0, "misregistration_mm": 1.0,
    "rotation_deg": 4.0, "translation_mm": 3.0, "scale_range": 0.05, "warp_mm": 3.0,
    "warp_smoothness_mm": 12.0, "orientation": "RAS",
    "head": {"enabled": True, "gap_mm": 1.0, "skull_mm": 4.0, "scalp_mm": 6.0, "shortcut_mm": 2.0},
}  # fmt: skip


def test_the_option_lists_cover_every_field() -> None:
    assert set(DWI) == set(SynthConfig.model_fields)
    assert set(ANAT) == set(AnatSynthConfig.model_fields)
    for options, model in ((DWI, SynthConfig), (ANAT, AnatSynthConfig)):
        defaults = json.loads(json.dumps(model().model_dump()))
        for name, value in options.items():  # none is a default: each one is really set
            assert defaults[name] != value, name


@pytest.mark.parametrize(
    ("kind", "options", "module", "function"),
    [
        ("dwi", DWI, "braincam.synth.dwi", "synthesize"),
        ("anat", ANAT, "braincam.synth.anat", "synthesize_anat"),
    ],
)
def test_every_synth_option_reaches_the_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind, options, module, function
) -> None:
    import importlib

    seen: list = []

    def fake(out, config, *, overwrite, progress, workers):
        seen.append((config, workers))
        (Path(out) / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
        (Path(out) / "dataset_description.json").write_text("{}")

    monkeypatch.setattr(importlib.import_module(module), function, fake)
    data = {"models": ["smallcnn-gap"], "synth": {"kind": kind, **options, "workers": 3}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    run_mod._ensure_bids(cfg, tmp_path / "out", progress=False)
    ((config, workers),) = seen
    assert workers == 3
    assert type(config) is (SynthConfig if kind == "dwi" else AnatSynthConfig)
    assert json.loads(json.dumps(config.model_dump())) == options  # no kind, no workers
    stamp = json.loads((tmp_path / "out" / ".synth-params.json").read_text())
    assert stamp == options
    run_mod._ensure_bids(cfg, tmp_path / "out", progress=False)  # the stamp matches: skipped
    assert len(seen) == 1
    again = parse_config(yaml.safe_load(dump_config(cfg)))  # the saved config.yaml reloads
    assert again.synth == cfg.synth


def test_kind_defaults_to_dwi_and_unknown_kinds_are_refused() -> None:
    cfg = parse_config({"models": ["m"], "synth": {}})
    assert cfg.synth.kind == "dwi" and cfg.synth.workers == 1
    assert run_mod._synth_config(cfg) == SynthConfig()
    with pytest.raises(ConfigError, match=r"^synth\.kind: must be one of 'dwi', 'anat'"):
        parse_config({"models": ["m"], "synth": {"kind": "pet"}})
    with pytest.raises(ConfigError, match=r"^synth\.groups: unknown key"):  # a structural option
        parse_config({"models": ["m"], "synth": {"groups": ["a", "b", "c"]}})
    with pytest.raises(ConfigError, match=r"^synth\.workers: must be >= 1, got 0$"):
        parse_config({"models": ["m"], "synth": {"workers": 0}})


def test_shared_constraints_read_the_same_for_both_generators() -> None:
    for kind in ("dwi", "anat"):
        for key, value, message in (
            ("voxel_size", 9.0, "must be <= 8"),
            ("snr", 0, "must be > 0"),
            ("warp_mm", 7.0, "warp_mm must be in [0, 0.4 × warp_smoothness_mm]"),
            ("orientation", "LPS", "Input should be 'LAS' or 'RAS'"),
        ):
            with pytest.raises(ConfigError, match=r"^synth[.:]") as err:
                parse_config({"models": ["m"], "synth": {"kind": kind, key: value}})
            assert message in str(err.value), (kind, key)


def test_structural_effects_are_checked_by_group_name() -> None:
    bad = {"models": ["m"], "synth": {"kind": "anat", "effects": [{}, {"lesions": 500}, {}]}}
    with pytest.raises(ConfigError, match=r"synth: effects\[rrms\]\.lesions must be in \[0, 200\]"):
        parse_config(bad)
    with pytest.raises(ConfigError, match=r"synth\.effects: Tuple should have at most 3 items"):
        parse_config({"models": ["m"], "synth": {"kind": "anat", "effects": [{}] * 4}})


def test_old_structural_kind_is_read_as_anat_with_a_deprecation() -> None:
    with pytest.warns(FutureWarning, match="'structural' is deprecated; use 'anat'"):
        cfg = parse_config({"models": ["m"], "synth": {"kind": "structural", "subjects": 4}})
    assert cfg.synth.kind == "anat" and cfg.synth.subjects == 4


def test_the_anat_section_can_ask_for_lesions_only() -> None:
    """``synth: {kind: anat, lesion_only: true}`` gives the generator the CLI's --lesion-only
    config (no atrophy, no ventricle change, the same lesions); false leaves the effects."""
    from braincam.config.synth import AnatSynthConfig, AnatSynthSection

    only = AnatSynthSection(subjects=12, lesion_only=True).generator_config()
    assert only == AnatSynthConfig(subjects=12).lesions_only()
    assert all(e.atrophy == 0 and e.ventricle_enlargement == 0 for e in only.effects)
    both = AnatSynthSection(subjects=12).generator_config()
    assert both == AnatSynthConfig(subjects=12)
    assert any(e.atrophy > 0 for e in both.effects)  # the control: the default differs
    assert [e.lesions for e in only.effects] == [e.lesions for e in both.effects]
