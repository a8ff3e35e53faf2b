"""`braincam demo` finds its bundled config (packaged, or configs/ of a source checkout)."""

from __future__ import annotations

from braincam.config import load_config
from braincam.pipeline.demo import DEMO_CONFIG, demo_config_path


def test_demo_config_is_found_and_loads() -> None:
    path = demo_config_path()
    assert path.name == DEMO_CONFIG and path.is_file()
    assert load_config(path).models
