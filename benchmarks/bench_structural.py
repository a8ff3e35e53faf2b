"""Benchmark the structural path: registration accuracy against the recorded transforms, N4.

Usage: .venv/bin/python benchmarks/bench_structural.py [--subjects 6] [--voxel-size 2] [--out DIR]

Synthesizes a small T1w/T2w/FLAIR cohort (``synth_anat``), then per subject:

- N4 on each contrast: coefficient of variation (std/mean) of white-matter intensity before and
  after, in the ground-truth WM (tissue label WM, eroded by one voxel, lesions excluded; for T2w
  and FLAIR the label map is moved into their space through the true transform), and time;
- the whole ``preprocess_anat`` (N4 → registration → equalization → trimming): rotation and
  translation error of the T2w→T1w and FLAIR→T1w registrations against the true transforms
  (translation measured at the brain's centre), time per step.

Prints Markdown tables (paste into BENCHMARKS.md with the command), CPU time as well as wall
time because the machine is shared.
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


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--voxel-size", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep cohort and outputs here")
    args = parser.parse_args()

    import nibabel as nib
    from scipy import ndimage as ndi

    from braincam.imaging.resample import resample_to
    from braincam.modalities.anat import preprocess as st
    from braincam.modalities.anat.ingest import ingest_anat
    from braincam.modalities.anat.n4 import n4_correct
    from braincam.synth import anat as sa

    tmp = Path(tempfile.mkdtemp(prefix="bench_structural_"))
    root = args.out or tmp
    bids, work = root / "bids", root / "work"
    config = sa.AnatSynthConfig(subjects=args.subjects, seed=args.seed, voxel_size=args.voxel_size)
    t0 = time.perf_counter()
    sa.synthesize_anat(bids, config, overwrite=True, progress=False)
    synth_s = time.perf_counter() - t0
    params = st.AnatParams()
    records = ingest_anat(bids, label="group").subjects

    n4_rows, reg_rows = [], []
    for rec in records:
        pid = rec.participant_id
        gt = sa.anat_groundtruth_paths(bids, pid)
        dseg_img = nib.load(gt["dseg"])
        dseg = np.asarray(dseg_img.dataobj)
        affine = np.asarray(dseg_img.affine)
        for contrast, path in rec.images.items():
            img = nib.load(path)
            data = np.asarray(img.dataobj, dtype=np.float32)
            labels = dseg
            if contrast != "T1w":
                # The voxel at q shows the T1w anatomy at T⁻¹(q): pull the labels through T⁻¹.
                true = sa.read_true_transform(gt[f"xfm_{contrast}"])
                labels = resample_to(dseg, affine, dseg.shape, affine, np.linalg.inv(true), order=0)
            wm = ndi.binary_erosion(labels == 3)
            c0, w0 = cpu_seconds(), time.perf_counter()
            corrected, _ = n4_correct(data, img.affine, params)
            wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0

            def cov(x: np.ndarray, mask: np.ndarray = wm) -> float:
                return float(x[mask].std() / x[mask].mean())

            n4_rows.append((pid, contrast, cov(data), cov(corrected), wall, cpu))

        truth = {m: sa.read_true_transform(p) for m, p in rec.true_xfm.items()}
        c0, w0 = cpu_seconds(), time.perf_counter()
        out = st.preprocess_anat(
            rec.t1, rec.t2, rec.flair, work, params, participant_id=pid, true_transforms=truth
        )
        wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
        reg_rows.append((pid, out.errors, out.seconds, wall, cpu, out.kept_slices))

    load = os.getloadavg()[0]
    print(
        f"cohort: {args.subjects} subjects at {args.voxel_size} mm, seed {args.seed}; "
        f"synth {synth_s:.1f} s; load average {load:.1f} (2 cores)\n"
    )
    print(
        "| contrast | WM CoV before (median) | WM CoV after N4 (median) | dropped in | "
        "N4 wall s/image (median) | N4 CPU s/image (median) |"
    )
    print("|---|---|---|---|---|---|")
    for contrast in sa.SUFFIXES:
        rows = [r for r in n4_rows if r[1] == contrast]
        before = np.median([r[2] for r in rows])
        after = np.median([r[3] for r in rows])
        drop = sum(r[3] < r[2] for r in rows)
        print(
            f"| {contrast} | {before:.4f} | {after:.4f} | {drop}/{len(rows)} | "
            f"{np.median([r[4] for r in rows]):.2f} | {np.median([r[5] for r in rows]):.2f} |"
        )
    print()
    print(
        "| moving | median rotation error (°) | max (°) | median translation error (mm) "
        "| max (mm) | median mean-displacement error (mm) |"
    )
    print("|---|---|---|---|---|---|")
    for moving in st.MOVING:
        errs = [r[1][moving] for r in reg_rows]
        rot = [e["rotation_deg"] for e in errs]
        tra = [e["translation_mm"] for e in errs]
        disp = [e["mean_displacement_mm"] for e in errs]
        print(
            f"| {moving} | {np.median(rot):.3f} | {np.max(rot):.3f} | {np.median(tra):.3f} | "
            f"{np.max(tra):.3f} | {np.median(disp):.3f} |"
        )
    print()
    steps = {k: np.median([r[2][k] for r in reg_rows]) for k in ("n4", "registration", "equalize")}
    kept = reg_rows[0][5]
    print(
        "| per subject (median) | N4 ×3 (s) | registration ×2 (s) | equalization ×3 (s) | "
        "preprocess_anat wall (s) | CPU (s) | axial slices kept |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {len(reg_rows)} subjects | {steps['n4']:.1f} | {steps['registration']:.1f} | "
        f"{steps['equalize']:.1f} | {np.median([r[3] for r in reg_rows]):.1f} | "
        f"{np.median([r[4] for r in reg_rows]):.1f} | "
        f"{kept.get('kept')}/{kept.get('total')} (sub-01) |"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MiB")
    if args.out is None:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
