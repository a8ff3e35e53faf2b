"""``braincam demo``: from nothing to a report, on the embedded synthetic cohort.

synthesize the default cohort → prepare → train the fast model set → explain with CAM,
Grad-CAM and Grad-CAM++ → evaluate the heatmaps → ``OUT/report.html`` and ``OUT/summary.json``.
Every step skips what is already complete, so re-running resumes an interrupted demo.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from braincam.summary_schema import update_summary

#: The experiment config the demo runs (a small CPU-sized version of the dMRI study).
DEMO_CONFIG = "fast-cpu.yaml"


def demo_config_path() -> Path:
    """The bundled fast CPU config (``configs/fast-cpu.yaml`` in a source checkout)."""
    from importlib import resources

    packaged = resources.files("braincam") / "configs" / DEMO_CONFIG
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "configs" / DEMO_CONFIG


def run_demo(
    out: str | Path,
    *,
    config: str | Path | None = None,
    methods: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Run the whole pipeline into ``out``; return the report's path.

    ``methods`` overrides the config's CAM methods (default: the config's).
    """
    from braincam.config import load_config
    from braincam.pipeline.run import run_experiment

    start = time.perf_counter()
    out = Path(out)
    cfg = load_config(config or demo_config_path())
    if methods is not None:
        cfg.cams.methods = list(methods)
    result = run_experiment(cfg, out=out, progress=progress)
    report = result["report"]
    update_summary(
        out,
        "demo",
        {
            "report": report.name,
            "runs": [Path(r).name for r in result["runs"]],
            "methods": list(cfg.cams.methods),
            "seconds": round(time.perf_counter() - start, 1),
        },
    )
    return report
