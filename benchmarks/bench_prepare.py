"""Benchmark `braincam prepare` on a default synthetic cohort.

Measures: wall time and peak memory of `prepare` with --workers 1 and 2 (speed-up), peak memory
per worker, DIPY's WLS tensor fit against braincam's (``--wls-only``: time ratio, FA/MD gap),
FA agreement with DIPY run directly, FA error against the synthetic ground truth inside the
brain, and the cost/quality of median_otsu settings.

    .venv/bin/python benchmarks/bench_prepare.py --cohort /tmp/bench/cohort20 --out /tmp/bench/out

The cohort is synthesized (default SynthConfig, 20 subjects, seed 0) when missing. Results are
printed as Markdown and written to OUT/bench_prepare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

_RUNNER = """
import json, resource, sys, time
from braincam.pipeline.prepare import PrepareConfig, prepare
t = time.perf_counter()
r = prepare(sys.argv[1], sys.argv[2], PrepareConfig(label="group", workers=int(sys.argv[3]),
            force=True, progress=False))
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - t, "ok": r.ok, "main_peak_mib": u.ru_maxrss / 1024,
                  "main_cpu_s": u.ru_utime + u.ru_stime}))
"""


def run_prepare(cohort: Path, work: Path, workers: int) -> dict:
    """One `prepare` in a fresh process; wall time, peaks and the DTI step's time."""
    shutil.rmtree(work, ignore_errors=True)
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(cohort), str(work), str(workers)],
        capture_output=True,
        text=True,
        check=True,
    )
    process_wall = time.perf_counter() - t
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((work / "summary.json").read_text())["prepare"]
    peaks = [p["peak_rss_mib"] for p in summary["participants"] if p["peak_rss_mib"]]
    # Σ per-subject seconds / DTI wall: how many subjects were in flight on average (≈ workers
    # when parallelism works, whatever the machine's load).
    busy = sum(p["seconds"] or 0.0 for p in summary["participants"])
    return {
        "workers": workers,
        "process_wall_s": round(process_wall, 2),
        "prepare_wall_s": round(out["wall"], 2),
        "dti_s": summary["timing"]["dti_seconds"],
        "concurrency": round(busy / summary["timing"]["dti_seconds"], 2),
        "main_peak_mib": round(out["main_peak_mib"], 1),
        "main_cpu_s": round(out["main_cpu_s"], 1),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "worker_peak_mib": round(max(peaks), 1),
        "ok": out["ok"],
        "n_subjects": len(summary["subjects"]),
    }


def dipy_direct(dwi: Path, bval: Path, bvec: Path, mask: np.ndarray, method: str) -> np.ndarray:
    """FA from DIPY alone, with braincam's mask (the mask itself is compared separately)."""
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.reconst.dti import TensorModel

    data = nib.load(dwi).get_fdata()
    bvals, bvecs = read_bvals_bvecs(str(bval), str(bvec))
    gtab = gradient_table(bvals, bvecs=bvecs)
    return TensorModel(gtab, fit_method=method).fit(data, mask=mask).fa


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


def fa_agreement(cohort: Path, work: Path, n_subjects: int) -> dict:
    """Max |FA − DIPY direct| and median |FA − true FA| inside the brain, per subject."""
    from dipy.segment.mask import median_otsu

    rows = []
    subjects = sorted(p.name for p in (work / "derivatives/braincam").glob("sub-*"))
    for pid in subjects:
        d = work / "derivatives/braincam" / pid / "dwi"
        fa = nib.load(d / f"{pid}_model-tensor_param-fa_dwimap.nii.gz").get_fdata()
        mask = nib.load(d / f"{pid}_desc-brain_mask.nii.gz").get_fdata() > 0
        truth = cohort / "derivatives/groundtruth" / pid / "dwi"
        true_fa = nib.load(truth / f"{pid}_model-tensor_param-fa_desc-true_dwimap.nii.gz")
        true_fa = true_fa.get_fdata()
        brain = true_fa > 0
        inside = mask & brain
        row = {
            "participant_id": pid,
            "median_abs_err_vs_truth": float(np.median(np.abs(fa[inside] - true_fa[inside]))),
            "mask_dice_vs_true_brain": dice(mask, brain),
        }
        if len(rows) < n_subjects:
            raw = cohort / pid / "dwi"
            dwi, bval, bvec = (raw / f"{pid}_dwi{e}" for e in (".nii.gz", ".bval", ".bvec"))
            img = nib.load(dwi)
            data = img.get_fdata()
            bvals = np.loadtxt(bval)
            _, ref_mask = median_otsu(data[..., bvals <= 50].mean(-1), median_radius=2, numpass=1)
            ref = dipy_direct(dwi, bval, bvec, mask, "WLS")
            row["max_abs_diff_vs_dipy"] = float(np.abs(fa[mask] - ref[mask]).max())
            row["mask_identical_to_dipy"] = bool(np.array_equal(ref_mask, mask))
        rows.append(row)
    return {
        "subjects": rows,
        "median_abs_err_vs_truth": float(np.median([r["median_abs_err_vs_truth"] for r in rows])),
        "max_abs_diff_vs_dipy": max(r.get("max_abs_diff_vs_dipy", 0.0) for r in rows),
        "median_mask_dice": float(np.median([r["mask_dice_vs_true_brain"] for r in rows])),
    }


def mask_study(cohort: Path, pid: str = "sub-01") -> list[dict]:
    """median_otsu time and Dice (vs DIPY defaults and vs the true brain) for a few settings."""
    from dipy.segment.mask import median_otsu

    raw = cohort / pid / "dwi"
    data = nib.load(raw / f"{pid}_dwi.nii.gz").get_fdata()
    bvals = np.loadtxt(raw / f"{pid}_dwi.bval")
    mean_b0 = data[..., bvals <= 50].mean(-1)
    truth = cohort / "derivatives/groundtruth" / pid / "dwi"
    brain = nib.load(truth / f"{pid}_model-tensor_param-fa_desc-true_dwimap.nii.gz").get_fdata() > 0
    out, ref = [], None
    for radius, npass in ((4, 4), (3, 2), (2, 2), (2, 1), (1, 1)):
        t = time.perf_counter()
        _, mask = median_otsu(mean_b0, median_radius=radius, numpass=npass)
        seconds = time.perf_counter() - t
        ref = mask if ref is None else ref
        out.append(
            {
                "median_radius": radius,
                "numpass": npass,
                "seconds": round(seconds, 3),
                "dice_vs_dipy_default": round(dice(mask, ref), 4),
                "dice_vs_true_brain": round(dice(mask, brain), 4),
            }
        )
    return out


def wls_study(cohort: Path, pids: list[str], repeats: int) -> dict:
    """DIPY's WLS tensor fit vs braincam's normal-equation WLS on the same masked voxels.

    Alternates the two (A B A B, ``repeats`` times per subject) so machine load hits both
    alike; reports the median time ratio and the largest FA/MD difference."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel
    from dipy.segment.mask import median_otsu

    from braincam.modalities.dwi.dti import wls_fit_normal

    rows = []
    for pid in pids:
        raw = cohort / pid / "dwi"
        data = nib.load(raw / f"{pid}_dwi.nii.gz").get_fdata()
        bvals = np.loadtxt(raw / f"{pid}_dwi.bval")
        bvecs = np.loadtxt(raw / f"{pid}_dwi.bvec").T
        gtab = gradient_table(bvals, bvecs=bvecs)
        _, mask = median_otsu(data[..., gtab.b0s_mask].mean(-1), median_radius=2, numpass=1)
        times: dict[str, list[float]] = {"dipy": [], "braincam": []}
        fits = {}
        for _ in range(repeats):
            for name, method in (("dipy", "WLS"), ("braincam", wls_fit_normal)):
                t = time.perf_counter()
                fits[name] = TensorModel(gtab, fit_method=method).fit(data, mask=mask)
                times[name].append(time.perf_counter() - t)
        dipy_s, ours_s = (float(np.median(times[k])) for k in ("dipy", "braincam"))
        rows.append(
            {
                "subject": pid,
                "voxels": int(mask.sum()),
                "dipy_s": round(dipy_s, 3),
                "braincam_s": round(ours_s, 3),
                "speedup": round(dipy_s / ours_s, 2),
                "max_abs_fa_diff": float(np.abs(fits["dipy"].fa - fits["braincam"].fa).max()),
                "max_rel_md_diff": float(
                    (np.abs(fits["dipy"].md - fits["braincam"].md) / fits["dipy"].md.max()).max()
                ),
            }
        )
    return {"repeats": repeats, "load_avg_1min": os.getloadavg()[0], "subjects": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--dipy-subjects", type=int, default=3, help="subjects compared to DIPY")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-accuracy", action="store_true", help="only the timing runs")
    ap.add_argument(
        "--wls-only", action="store_true", help="only DIPY's WLS vs braincam's (3 subjects)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats per subject (WLS)")
    args = ap.parse_args()

    if not (args.cohort / "participants.tsv").exists():
        from braincam.synth.dwi import SynthConfig, synthesize

        t = time.perf_counter()
        synthesize(args.cohort, SynthConfig(subjects=args.subjects, seed=0), progress=False)
        print(f"synth: {time.perf_counter() - t:.1f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.wls_only:
        wls = wls_study(args.cohort, ["sub-01", "sub-02", "sub-03"], args.repeats)
        (args.out / "bench_wls.json").write_text(json.dumps(wls, indent=2) + "\n")
        print(f"DTI WLS fit, median of {args.repeats} (load {wls['load_avg_1min']:.1f})\n")
        print(
            "| subject | voxels | DIPY (s) | braincam (s) | speed-up | max abs ΔFA | max rel ΔMD |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in wls["subjects"]:
            print(
                f"| {r['subject']} | {r['voxels']} | {r['dipy_s']} | {r['braincam_s']} | "
                f"{r['speedup']}× | {r['max_abs_fa_diff']:.1e} | {r['max_rel_md_diff']:.1e} |"
            )
        return
    shape = nib.load(args.cohort / "sub-01/dwi/sub-01_dwi.nii.gz").shape

    runs = [run_prepare(args.cohort, args.out / f"work-w{w}", w) for w in args.workers]
    base = runs[0]
    for r in runs:
        r["speedup_prepare"] = round(base["prepare_wall_s"] / r["prepare_wall_s"], 2)
        r["speedup_dti"] = round(base["dti_s"] / r["dti_s"], 2)
    result: dict = {"dwi_shape": shape, "runs": runs}
    if not args.skip_accuracy:
        work = args.out / f"work-w{args.workers[0]}"
        result["fa"] = fa_agreement(args.cohort, work, args.dipy_subjects)
        result["mask_study"] = mask_study(args.cohort)
    (args.out / "bench_prepare.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"cohort: {args.cohort} (DWI {shape})\n")
    print(
        "| workers | prepare wall (s) | DTI step (s) | speed-up (prepare / DTI) "
        "| concurrency | main peak (MiB) | peak per worker (MiB) | main CPU (s) | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['workers']} | {r['prepare_wall_s']} | {r['dti_s']} | "
            f"{r['speedup_prepare']}× / {r['speedup_dti']}× | {r['concurrency']} | "
            f"{r['main_peak_mib']} | "
            f"{r['worker_peak_mib']} | {r['main_cpu_s']} | {r['load_avg_1min']} |"
        )
    if args.skip_accuracy:
        return
    agreement, masks = result["fa"], result["mask_study"]
    print(
        f"\nFA vs DIPY direct (max |Δ| in mask, {args.dipy_subjects} subjects): "
        f"{agreement['max_abs_diff_vs_dipy']:.2e}"
    )
    print(
        f"FA vs ground truth, median |Δ| in brain (median over subjects): "
        f"{agreement['median_abs_err_vs_truth']:.4f}; mask Dice vs true brain "
        f"{agreement['median_mask_dice']:.3f}\n"
    )
    print("| median_radius | numpass | seconds | Dice vs (4,4) | Dice vs true brain |")
    print("|---|---|---|---|---|")
    for m in masks:
        print(
            f"| {m['median_radius']} | {m['numpass']} | {m['seconds']} | "
            f"{m['dice_vs_dipy_default']} | {m['dice_vs_true_brain']} |"
        )


if __name__ == "__main__":
    main()
