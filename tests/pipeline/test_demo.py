"""`braincam demo` finds its bundled config from a source checkout."""

from __future__ import annotations

from braincam.pipeline.demo import DEMO_CONFIG, demo_config_path


def test_demo_config_is_found() -> None:
    path = demo_config_path()
    assert path.name == DEMO_CONFIG
    assert path.is_file(), path
