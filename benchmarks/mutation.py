"""Mutation testing of braincam's core, one module at a time (``make mutation``; issue 19).

For each module below, mutmut (3.x) mutates that one file and runs only the tests chosen for it
(the ``tests`` list: the module's own tests and the tests that exercise it through its callers),
in a scratch copy of ``src/`` and ``tests/`` under ``--out`` so the working tree is never
touched. One worker per module (``--max-children 1``) and ``nice``: the machine is shared.

    .venv/bin/python benchmarks/mutation.py                   # every module
    .venv/bin/python benchmarks/mutation.py io summary_schema # some of them
    .venv/bin/python benchmarks/mutation.py --list            # the module names

Prints, and writes to ``--out/scores.tsv``, one row per module: mutants, killed, survived,
timeouts, no tests, seconds. The names of the survivors are in ``--out/<module>/survivors.txt``
(see one with ``cd <out>/<module> && mutmut show <name>``). Mutants argued equivalent are listed
in docs/testing.md; the score in BENCHMARKS.md is killed / (mutants - equivalent).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module name -> (the file mutated, the tests run against its mutants[, extra pytest args]);
#: ordered fastest first. Tests that train a model (the session's ``tiny_run``) are left out:
#: each mutant would retrain it.
MODULES: dict[str, tuple[str, list[str], list[str]]] = {
    "io": ("src/braincam/io.py", ["tests/test_io.py", "tests/cli/test_basics.py"], []),
    "data.splits": ("src/braincam/data/splits.py", ["tests/data/test_splits.py"], []),
    "summary_schema": (
        "src/braincam/summary_schema.py",
        ["tests/test_summary_schema.py"],
        ["-k", "not cam_evaluation and not whole_summary"],
    ),
    "cam.postprocess": ("src/braincam/cam/postprocess.py", ["tests/cam/test_postprocess.py"], []),
    "cam.fusion": ("src/braincam/cam/fusion.py", ["tests/cam/test_fusion.py"], []),
    "cam.layout": ("src/braincam/cam/layout.py", ["tests/cam/test_layout.py"], []),
    "data.slice_build": (
        "src/braincam/data/slice_build.py",
        ["tests/data/test_slice_build.py"],
        [],
    ),
    "data.slices": ("src/braincam/data/slices.py", ["tests/data/test_slices.py"], []),
    "metrics.faithfulness": (
        "src/braincam/metrics/faithfulness.py",
        ["tests/metrics/test_faithfulness.py"],
        [],
    ),
    "metrics.localization": (
        "src/braincam/metrics/localization.py",
        ["tests/metrics/test_localization.py"],
        [],
    ),
    "metrics.sanity": ("src/braincam/metrics/sanity.py", ["tests/metrics/test_sanity.py"], []),
    "metrics.perturbation": (
        "src/braincam/metrics/perturbation.py",
        ["tests/metrics/test_perturbation.py"],
        [],
    ),
    # the methods package (split by kind after the scores in BENCHMARKS.md were measured on the
    # single methods.py): mutmut's only_mutate takes globs
    "cam.methods": (
        "src/braincam/cam/methods/*.py",
        [
            "tests/cam/test_methods.py",
            "tests/cam/test_new_methods.py",
            "tests/cam/test_fusion.py",
            "tests/cam/test_api.py",  # CAM's classifier errors
            "tests/cam/test_errors.py",  # CAM's head warnings
        ],
        [],
    ),
}

#: module -> a ``-k`` expression deselecting slow tests in the first pass: every mutant runs the
#: other tests, and only the survivors are run again against the whole selection (in
#: ``<out>/<module>.full``). For tests whose fixture trains a model: one training per mutant made
#: ``metrics.sanity`` take over an hour on the shared machine.
FIRST_PASS_DESELECT: dict[str, str] = {
    "metrics.sanity": "not gradcam_changes_under and not targets_default_to",
    # every method through each view and real ViT/Swin models: 26 min for 171 of 280 mutants
    "cam.layout": "not views_give and not swin and not vit and not anisotropic",
}

_MUTMUT_SECTION = """
[tool.mutmut]
source_paths = ["src"]
only_mutate = [{only}]
pytest_add_cli_args = ["-p", "no:randomly", "-q", "-m", "not slow"{extra}]
pytest_add_cli_args_test_selection = [{tests}]
also_copy = ["docs"]
# a shared machine: a mutant is a timeout only when it runs a minute past its tests' own time
timeout_constant = 60.0
# torch is not fork-safe once its thread pool has run: fork workers from a clean server
process_isolation = "forkserver"
# Not mutated: the statements that build an error or a warning (their wording and the details
# they carry are prose for the user; the tests check them with `match=`); the conditions that
# raise them are mutated. See docs/testing.md.
do_not_mutate_patterns = ['raise \\w+(Error|Exception|Warning)\\(', 'warnings\\.warn\\(']
"""


def _prepare(name: str, out: Path, first_pass: bool = True) -> Path:
    path, tests, extra = MODULES[name]
    if first_pass and name in FIRST_PASS_DESELECT:
        extra = [*extra, "-k", FIRST_PASS_DESELECT[name]]
    work = out / (name if first_pass else f"{name}.full")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", work / "docs")
    quoted = ", ".join(json.dumps(t) for t in tests)
    text = (ROOT / "pyproject.toml").read_text()
    more = "".join(f", {json.dumps(a)}" for a in extra)
    text += _MUTMUT_SECTION.format(only=json.dumps(path), tests=quoted, extra=more)
    (work / "pyproject.toml").write_text(text)
    return work


def _mutmut(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mutmut")
    # one thread: no intra-op pool to deadlock a forked worker, and the machine is shared
    env = {**os.environ, "PYTHONPATH": str(work / "src"), "OMP_NUM_THREADS": "1"}
    env["MKL_NUM_THREADS"] = "1"
    env.pop("CI", None)  # a missing reference library skips here; `make test` is the gate
    return subprocess.run(
        ["nice", "-n", "10", str(exe), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _survivors(work: Path) -> list[str]:
    listing = _mutmut(work, "results").stdout
    return [m.group(1) for m in re.finditer(r"^\s*(\S+): (survived|no tests)", listing, re.M)]


def run_module(name: str, out: Path) -> dict[str, object]:
    work = _prepare(name, out)
    t0 = time.perf_counter()
    proc = _mutmut(work, "run", "--max-children", "1")
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    _mutmut(work, "export-cicd-stats")
    stats_file = work / "mutants" / "mutmut-cicd-stats.json"
    if not stats_file.exists():
        raise SystemExit(f"{name}: mutmut failed, see {work / 'run.log'}")
    stats = json.loads(stats_file.read_text())
    survivors = _survivors(work)
    killed, survived = stats.get("killed", 0), stats.get("survived", 0)
    if name in FIRST_PASS_DESELECT and survivors:
        # the first pass left out the slow tests: its survivors meet the whole selection
        full = _prepare(name, out, first_pass=False)
        proc = _mutmut(full, "run", "--max-children", "1", *survivors)
        (full / "run.log").write_text(proc.stdout + proc.stderr)
        still = set(_survivors(full))
        rechecked = [s for s in survivors if s not in still]
        killed, survived = killed + len(rechecked), survived - len(rechecked)
        survivors = [s for s in survivors if s in still]
    seconds = time.perf_counter() - t0
    (work / "survivors.txt").write_text("".join(f"{s}\n" for s in survivors))
    return {
        "module": name,
        "mutants": stats.get("total", 0),
        "killed": killed,
        "survived": survived,
        "timeout": stats.get("timeout", 0),
        "no_tests": stats.get("no_tests", 0),
        "seconds": round(seconds),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("modules", nargs="*", help="module names (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "mutation-out")
    ap.add_argument("--list", action="store_true", help="list the module names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(MODULES))
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; see --list")
    rows = []
    cols = ["module", "mutants", "killed", "survived", "timeout", "no_tests", "seconds"]
    args.out.mkdir(parents=True, exist_ok=True)
    scores = args.out / "scores.tsv"
    if not scores.exists():
        scores.write_text("\t".join(cols) + "\n")
    for name in args.modules or list(MODULES):
        row = run_module(name, args.out)
        rows.append(row)
        line = "\t".join(str(row[c]) for c in cols)
        print(line, flush=True)
        with scores.open("a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
