"""The modality seam: the registry, the one name for structural MRI, the protocol."""

from __future__ import annotations

import pytest

from braincam.errors import ConfigError
from braincam.modalities import _MODALITIES as REGISTRY
from braincam.modalities import Modality, get_modality, modality_names, register_modality
from builders.modality import TOY


def test_registry_names_and_lookup() -> None:
    assert modality_names()[:2] == ("dwi", "anat")
    dwi, anat = get_modality("dwi"), get_modality("anat")
    assert (dwi.name, dwi.channels) == ("dwi", ("FA",))
    assert (anat.name, anat.channels) == ("anat", ("T1w", "T2w", "FLAIR"))
    assert get_modality("dwi") is dwi  # one object per modality


def test_both_modalities_implement_the_protocol() -> None:
    for name in ("dwi", "anat"):
        assert isinstance(get_modality(name), Modality)
    assert isinstance(TOY, Modality)
    assert not isinstance(object(), Modality)


def test_unknown_modality_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="modality must be dwi or anat, got 'pet'"):
        get_modality("pet")


def test_structural_is_a_deprecated_alias_of_anat() -> None:
    with pytest.warns(FutureWarning, match="'structural' is deprecated; use 'anat'"):
        assert get_modality("structural").name == "anat"
    said: list[str] = []
    assert get_modality("structural", warn=said.append).name == "anat"
    assert said == ["modality 'structural' is deprecated; use 'anat' (same data)"]


def test_prepare_config_takes_the_alias_and_stores_the_name() -> None:
    from braincam.pipeline.prepare import PrepareConfig

    with pytest.warns(FutureWarning, match="deprecated"):
        config = PrepareConfig(modality="structural")
    assert config.modality == "anat" and config.to_dict()["modality"] == "anat"
    with pytest.raises(ConfigError, match="joblib workers only"):
        PrepareConfig(modality="anat", dask_scheduler="tcp://127.0.0.1:9")


def test_register_a_modality(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("braincam.modalities._MODALITIES", dict(REGISTRY))  # restored after
    register_modality("toy", TOY)
    assert get_modality("toy") is TOY and "toy" in modality_names()
    register_modality("toy2", "builders.modality:TOY")  # imported on first use
    assert get_modality("toy2") is TOY


@pytest.mark.parametrize(
    "module", ["braincam.modalities.dwi.modality", "braincam.modalities.anat.modality"]
)
def test_a_modality_imports_first_in_a_fresh_process(module: str) -> None:
    """A joblib worker unpickles a modality before anything else of braincam is imported: the
    import must not reach the registry half-way through (it did once, via a config default)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
