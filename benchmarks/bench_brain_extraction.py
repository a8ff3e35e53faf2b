"""Benchmark brain extraction on a real head: Dice against a reference brain, seconds per method.

Usage: .venv/bin/python benchmarks/bench_brain_extraction.py [--runs 3] [--deformable-runs 1]
       [--voxel-sizes 1,2,3,4]

The real head is Debian's ``mricron-data`` (``apt-get install mricron-data``): the Colin-27 T1w
with skull ``/usr/share/mricron/templates/ch2.nii.gz`` and its brain-extracted version
``ch2bet.nii.gz`` (the reference: its nonzero voxels). Methods:

- ``otsu-head``: today's structural mask for a T1w (Otsu foreground, largest component, filled);
- ``affine``: MNI152 affine registration, the template's brain mask carried back (no refinement);
- ``affine+refine``: the same, refined on the subject's intensities (the default);
- ``bspline+refine``: a B-spline stage after the affine, then refined (``--deformable-runs``).

Also at coarser grids (``--voxel-sizes``; the scan and the reference smoothed and resampled, the
reference at ≥ 0.5 of a voxel) and with the head moved in its header (15°/-10°/8°, 12/-25/30 mm,
axes permuted and flipped: no interpolation). Prints Markdown tables: median wall seconds over
``--runs`` runs (the template cache warm: a first call in a process also loads nilearn and the
template, reported separately) and CPU seconds, because the machine is shared.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

MRICRON = Path("/usr/share/mricron/templates")


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def coarse(img, ref: np.ndarray, mm: float):
    """The scan and the reference on an ``mm`` grid (anti-aliased; reference by majority)."""
    import nibabel as nib
    from scipy import ndimage as ndi

    sigma = np.sqrt(max(mm**2 - 1.0, 0.0)) / 2.355
    data = np.asarray(img.dataobj, dtype=np.float32)
    d = ndi.zoom(ndi.gaussian_filter(data, sigma), 1.0 / mm, order=1)
    r = ndi.zoom(ndi.gaussian_filter(ref.astype(np.float32), sigma), 1.0 / mm, order=1) >= 0.5
    affine = img.affine.copy()
    affine[:3, :3] *= mm
    return nib.Nifti1Image(d, affine), r


def moved(img, ref: np.ndarray):
    """The head rotated and shifted through its header, axes permuted and one flipped."""
    import nibabel as nib
    from scipy.spatial.transform import Rotation

    motion = np.eye(4)
    motion[:3, :3] = Rotation.from_euler("xyz", (15, -10, 8), degrees=True).as_matrix()
    motion[:3, 3] = (12, -25, 30)
    perm = (2, 0, 1)
    data = np.transpose(np.asarray(img.dataobj), perm)
    r = np.transpose(ref, perm)
    affine = img.affine[:, [*perm, 3]].copy()
    data, r = np.flip(data, 1), np.flip(r, 1)
    affine[:, 3] += affine[:, 1] * (data.shape[1] - 1)
    affine[:, 1] *= -1
    return nib.Nifti1Image(np.ascontiguousarray(data), motion @ affine), np.ascontiguousarray(r)


def measure(fn, runs: int) -> tuple[object, float, float]:
    """Result of the last run, median wall seconds, median CPU seconds."""
    walls, cpus, out = [], [], None
    for _ in range(runs):
        c0, t0 = cpu_seconds(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return out, statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deformable-runs", type=int, default=1, help="0 skips the B-spline")
    parser.add_argument("--voxel-sizes", default="1,2,3,4")
    args = parser.parse_args()

    import nibabel as nib

    from braincam.modalities.anat import brain_extraction as be

    t1_path, ref_path = MRICRON / "ch2.nii.gz", MRICRON / "ch2bet.nii.gz"
    if not (t1_path.is_file() and ref_path.is_file()):
        sys.exit("mricron-data is not installed: apt-get install -y mricron-data")
    t1 = nib.load(t1_path)
    ref = np.asarray(nib.load(ref_path).dataobj) > 0

    c0, t0 = cpu_seconds(), time.perf_counter()
    be._template(be.BrainExtractionParams().work_mm, be.BrainExtractionParams().metric_margin_mm)
    load_s, load_cpu = time.perf_counter() - t0, cpu_seconds() - c0

    methods = {
        "otsu-head": (lambda im: be.head_mask(im), args.runs),
        "affine": (
            lambda im: be.extract_brain(im, params=be.BrainExtractionParams(refine=False)),
            args.runs,
        ),
        "affine+refine": (lambda im: be.extract_brain(im), args.runs),
        "bspline+refine": (
            lambda im: be.extract_brain(im, params=be.BrainExtractionParams(deformable=True)),
            args.deformable_runs,
        ),
    }
    print(f"Real head: {t1_path} {t1.shape} {tuple(float(z) for z in t1.header.get_zooms())}")
    print(f"reference {ref_path}: {int(ref.sum())} voxels; runs per method: {args.runs}")
    print(f"nilearn + MNI152 template preparation, once per process: {load_s:.1f} s wall,")
    print(f"{load_cpu:.1f} s CPU")
    print()
    print("| method | Dice | quality | mask mL | wall s (median) | CPU s (median) |")
    print("|---|---|---|---|---|---|")
    for name, (fn, runs) in methods.items():
        if runs < 1:
            continue
        out, wall, cpu = measure(lambda fn=fn: fn(t1), runs)
        mask = out if isinstance(out, np.ndarray) else out.mask_array
        quality = "" if isinstance(out, np.ndarray) else f"{out.quality:.3f}"
        ml = mask.sum() * float(np.prod(t1.header.get_zooms()[:3])) / 1000.0
        dice = be.dice(mask, ref)
        print(f"| {name} | {dice:.4f} | {quality} | {ml:.0f} | {wall:.1f} | {cpu:.1f} |")
    print()

    cases = [(f"{mm:g} mm", *coarse(t1, ref, mm)) for mm in map(float, args.voxel_sizes.split(","))]
    cases = [c for c in cases if c[0] != "1 mm"]
    cases.append(("1 mm, moved in header", *moved(t1, ref)))
    print("| grid | Dice otsu-head | Dice affine | Dice affine+refine | wall s | CPU s |")
    print("|---|---|---|---|---|---|")
    for label, img, truth in cases:
        otsu = be.dice(be.head_mask(img), truth)
        carried = be.extract_brain(img, params=be.BrainExtractionParams(refine=False))
        out, wall, cpu = measure(lambda img=img: be.extract_brain(img), 1)
        print(
            f"| {label} {img.shape} | {otsu:.4f} | {be.dice(carried.mask_array, truth):.4f} "
            f"| {be.dice(out.mask_array, truth):.4f} | {wall:.1f} | {cpu:.1f} |"
        )


if __name__ == "__main__":
    main()
