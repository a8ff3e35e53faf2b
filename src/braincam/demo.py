"""``braincam demo``: from nothing to a report, on the embedded synthetic cohort.

synthesize the default cohort → prepare → train the fast model set → explain with CAM,
Grad-CAM and Grad-CAM++ → evaluate the heatmaps → ``OUT/report.html`` and ``OUT/summary.json``.
Every step skips what is already complete, so re-running resumes an interrupted demo.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from braincam.explain import DEFAULT_METHODS
from braincam.io import update_summary

#: The experiment config the demo runs (a small CPU-sized version of the dMRI study).
DEMO_CONFIG = "fast-cpu.yaml"


def demo_config_path() -> Path:
    """The bundled fast CPU config (``configs/fast-cpu.yaml`` in a source checkout)."""
    from importlib import resources

    packaged = resources.files("braincam") / "configs" / DEMO_CONFIG
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "configs" / DEMO_CONFIG


def run_demo(
    out: str | Path,
    *,
    config: str | Path | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    progress: bool = True,
) -> Path:
    """Run the whole pipeline into ``out``; return the report's path."""
    from braincam.evaluate.cams import CamEvalConfig, evaluate_cams
    from braincam.report.build import build_report
    from braincam.run import run_experiment

    start = time.perf_counter()
    out = Path(out)
    result = run_experiment(config or demo_config_path(), out=out, progress=progress)
    for run in result["runs"]:
        evaluate_cams(run, CamEvalConfig(methods=tuple(methods)), progress=progress)
    report = build_report(out)
    update_summary(
        out,
        "demo",
        {
            "report": report.name,
            "runs": [Path(r).name for r in result["runs"]],
            "methods": list(methods),
            "seconds": round(time.perf_counter() - start, 1),
        },
    )
    return report
