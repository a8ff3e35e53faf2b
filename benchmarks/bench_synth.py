"""Benchmark `braincam synth`: wall/CPU time, peak memory and size of a default cohort.

Usage: .venv/bin/python benchmarks/bench_synth.py [--subjects 20] [--voxel-size 2.5] [--out DIR]
Prints one Markdown table row per run (paste into BENCHMARKS.md with the command).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--voxel-size", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the cohort here")
    parser.add_argument("--fa-check", action="store_true", help="DIPY FA vs true FA (1 subject)")
    args = parser.parse_args()

    from braincam.synth.dwi import SynthConfig, groundtruth_paths, synthesize

    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    out = args.out or tmp / "bids"
    config = SynthConfig(subjects=args.subjects, seed=args.seed, voxel_size=args.voxel_size)

    def cpu_seconds() -> float:  # this process and its finished worker processes
        me, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    synthesize(out, config, progress=False, workers=args.workers)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    load = os.getloadavg()[0]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(
        "| subjects | voxel (mm) | workers | wall (s) | CPU (s) | CPU s/subject "
        "| peak RSS main (MiB) | size (MB) | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    # joblib's worker processes outlive the call, so their CPU time is not counted here.
    cpu_txt = f"{cpu:.1f} | {cpu / args.subjects:.2f}" if args.workers == 1 else "n/a | n/a"
    print(
        f"| {args.subjects} | {args.voxel_size} | {args.workers} | {wall:.1f} | {cpu_txt} | "
        f"{peak_mib:.0f} | {size_mb:.0f} | {load:.1f} |"
    )
    if args.fa_check:
        import nibabel as nib
        from dipy.core.gradients import gradient_table
        from dipy.reconst.dti import TensorModel

        base = out / "sub-01" / "dwi" / "sub-01_dwi"
        data = nib.load(f"{base}.nii.gz").get_fdata()
        gtab = gradient_table(np.loadtxt(f"{base}.bval"), bvecs=np.loadtxt(f"{base}.bvec").T)
        true_fa = nib.load(groundtruth_paths(out, "sub-01")["true_fa"]).get_fdata()
        brain = true_fa > 0.1
        fit = TensorModel(gtab, fit_method="WLS").fit(data, mask=brain)
        err = np.abs(fit.fa[brain] - true_fa[brain])
        print(
            f"DIPY WLS FA vs true FA (sub-01, FA>0.1): median |err| {np.median(err):.4f}, "
            f"95th pct {np.percentile(err, 95):.4f}"
        )
    if args.out is None:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
