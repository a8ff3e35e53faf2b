"""The strict base of every config model: unknown keys anywhere in the tree, one error format."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from braincam.config import (
    AnatSynthConfig,
    DTIParams,
    ExperimentConfig,
    PrepareConfig,
    SynthConfig,
    parse_config,
)
from braincam.config.base import _models_in
from braincam.errors import ConfigError


def _sections(model: type[BaseModel], path: tuple, data: dict) -> list[tuple[str, dict]]:
    """Every model reachable in the tree as (dotted path, minimal data holding it).

    ``path`` is where ``model`` sits in ``data``; tuples of models are entered at index 0 and
    the ``synth`` union under each ``kind``.
    """
    found = [(".".join(str(p) for p in path), data)]
    for name, field in model.model_fields.items():
        for sub in _models_in(field.annotation):
            value: Any = {}
            if "kind" in sub.model_fields:
                value = {"kind": sub.model_fields["kind"].default}
            where: tuple = (*path, name)
            if typing.get_origin(_strip(field.annotation)) is tuple:
                value, where = [dict(value) for _ in range(3)], (*where, 0)
            found += _sections(sub, where, _put(data, (*path, name), value))
    return found


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _put(data: dict, path: tuple, value: Any) -> dict:
    out = json.loads(json.dumps(data))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _get(data: dict, path: str) -> Any:
    node: Any = data
    for key in filter(None, path.split(".")):
        node = node[int(key) if isinstance(node, list) else key]
    return node


ROOT = {"models": ["smallcnn-gap"], "bids": "/data/bids"}
SECTIONS = _sections(ExperimentConfig, (), ROOT)


def test_the_tree_walk_reaches_every_section() -> None:
    paths = {p for p, _ in SECTIONS}
    assert {
        "",
        "synth",
        "prepare",
        "train",
        "train.augment.affine",
        "train.augment.bias_field",
        "train.checkpoint",
        "synth.head",
        "cams",
        "report",
    } <= paths
    assert "synth.effects.0" in paths  # the structural generator's per-group effects
    kinds = [d["synth"]["kind"] for p, d in SECTIONS if p == "synth"]
    assert kinds == ["dwi", "anat"] and len(SECTIONS) == 21


@pytest.mark.parametrize(("path", "data"), SECTIONS, ids=[p or "<root>" for p, _ in SECTIONS])
def test_unknown_key_anywhere_is_rejected_with_its_path(path: str, data: dict) -> None:
    parse_config(data)  # the minimal tree holding this section is valid
    bad = json.loads(json.dumps(data))
    _get(bad, path)["bogus_key"] = 1
    key = f"{path}.bogus_key" if path else "bogus_key"
    with pytest.raises(ConfigError, match=rf"^{key}: unknown key \(valid keys: .+\), got 1$"):
        parse_config(bad)


def test_models_built_in_python_raise_config_error_with_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"^subjects: must be >= 2, got 1$"):
        SynthConfig(subjects=1)
    with pytest.raises(ConfigError, match=r"^effects\.1\.lesion: unknown key"):
        AnatSynthConfig(effects=({}, {"lesion": 3}, {}))
    with pytest.raises(ConfigError, match=r"fit_method: must be one of WLS, OLS, NLLS, RESTORE"):
        DTIParams(fit_method="magic")
    cfg = SynthConfig()
    with pytest.raises(ConfigError, match=r"^subjects: must be >= 2, got 0$"):
        cfg.subjects = 0  # assignments are validated too
    with pytest.raises(ConfigError, match="frozen"):
        DTIParams().numpass = 3  # type: ignore[misc]  # cache-key inputs cannot change


def test_replace_is_a_validated_copy() -> None:
    cfg = SynthConfig(subjects=4)
    assert cfg.replace(seed=3) == SynthConfig(subjects=4, seed=3) and cfg.seed == 0
    with pytest.raises(ConfigError, match="subjects"):
        cfg.replace(subjects=1)
    assert DTIParams().replace(fit_method="ols").fit_method == "OLS"
    cfg.validate()  # a built model is valid


def test_numbers_keep_their_type_for_stamps_and_cache_keys() -> None:
    # json.dumps(2) != json.dumps(2.0): an integer given stays an integer (as in the dataclasses)
    assert json.dumps(SynthConfig(voxel_size=2, snr=40).model_dump()["voxel_size"]) == "2"
    assert json.dumps(SynthConfig(voxel_size=2.0).model_dump()["voxel_size"]) == "2.0"
    assert json.dumps(DTIParams(b0_threshold=50).model_dump()["b0_threshold"]) == "50"
    assert PrepareConfig(voxel_size=2).slice_spec().to_dict()["voxel_size"] == 2


def test_every_error_is_listed_once_with_its_path() -> None:
    data = {**ROOT, "prepare": {"size": 4, "workers": 0}, "train": {"epochs": 0}}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    parts = str(err.value).split("; ")
    assert parts == [
        "prepare.workers: must be >= 1, got 0",
        "prepare.size: must be >= 8, got 4",
        "train.epochs: must be >= 1, got 0",
    ]
