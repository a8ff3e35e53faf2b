"""One subject's structural preprocessing: parameters, unreadable inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from braincam.errors import ConfigError, InputError
from braincam.modalities.anat.preprocess import AnatParams, preprocess_anat
from braincam.synth import anat as sa


def test_params_validate() -> None:
    with pytest.raises(ConfigError, match="equalize"):
        AnatParams(equalize="local")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="smoothing_sigmas"):
        AnatParams(shrink_factors=(4, 2, 1), smoothing_sigmas=(1.0, 0.0))
    with pytest.raises(ConfigError, match="trim_threshold"):
        AnatParams(trim_threshold=1.5)


def test_unreadable_contrast_names_subject_and_file(bids: Path, tmp_path: Path) -> None:
    raw = sa.anat_paths(bids, "sub-01")
    bad = tmp_path / "sub-01_T2w.nii.gz"
    bad.write_bytes(raw["T2w"].read_bytes()[:300])  # truncated
    with pytest.raises(InputError, match="T2w") as info:
        preprocess_anat(raw["T1w"], bad, raw["FLAIR"], tmp_path / "work")
    assert info.value.subject == "sub-01" and info.value.path == str(bad)
