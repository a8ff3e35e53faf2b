"""CAM engine speed against the plain forward pass and the reference libraries, same run.

    .venv/bin/python benchmarks/bench_cam.py            # full: batch 16, 224², ≥5 repetitions
    .venv/bin/python benchmarks/bench_cam.py --quick    # smoke run: batch 4, 2 repetitions

For each model (vgg16-gap, resnet18-gap from ``braincam.models.build_model``, or equivalent
torchvision-based stand-ins when the model zoo is not importable), one input batch is explained
by every variant: the no-grad forward, braincam's methods, pytorch-grad-cam, torch-cam and MONAI
(where installed and where they run). Every variant runs right after a no-grad forward of the same
batch, and each cell is the median over repetitions of that pair's ratio (the order of variants
rotates between repetitions), so slow phases of a shared CPU hit both sides of a ratio alike.
A 3-D CNN on a 96³ volume (batch 2) is timed the same way; failures are recorded, not hidden.
Prints one Markdown table per model as soon as it is measured (per-variant times on stderr);
``--skip`` leaves variants out (e.g. ``pgc:eigencam``, whose numpy SVD stalls on a loaded CPU).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from braincam.cam import compute_cams

OURS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam"]
#: the methods added for issue 16 (``--methods new``); the perturbation ones cost N·K forwards
NEW = ["eigengradcam", "fullgrad", "smoothgradcampp", "ablationcam", "scorecam", "sscam", "iscam"]
ALL = OURS + NEW
PGC = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "fullgrad": "FullGrad",
    "ablationcam": "AblationCAM",
    "scorecam": "ScoreCAM",
}
TORCHCAM = {
    "cam": "CAM",
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "smoothgradcampp": "SmoothGradCAMpp",
    "scorecam": "ScoreCAM",
    "sscam": "SSCAM",
    "iscam": "ISCAM",
}
#: same chunk size on every side for the perturbation methods
CHUNK = 32
MONAI = {"cam": "CAM", "gradcam": "GradCAM", "gradcampp": "GradCAMpp"}


# -- models --------------------------------------------------------------------------------------
class GapHead(nn.Module):
    """conv3x3 → ReLU → global average pooling → linear (the registry's GAP head layout)."""

    def __init__(self, cin: int, width: int, classes: int, dim: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        self.conv = conv(cin, width, 3, padding=1)
        self.relu = nn.ReLU(inplace=False)  # as the registry's CamHead (MONAI fails otherwise)
        self.pool = nn.AdaptiveAvgPool2d(1) if dim == 2 else nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class Cut(nn.Module):
    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def standin(name: str) -> nn.Module:
    """torchvision-based equivalents of the registry's vgg16-gap / resnet18-gap (random init)."""
    import torchvision

    if name == "vgg16-gap":
        feats = torchvision.models.vgg16().features[:30]  # through conv5_3 + ReLU
        feats[0] = nn.Conv2d(1, 64, 3, padding=1)
        model = Cut(feats, GapHead(512, 1024, 2))
    elif name == "resnet18-gap":
        r = torchvision.models.resnet18()
        r.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        feats = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
        model = Cut(feats, GapHead(256, 1024, 2))
    else:
        raise SystemExit(f"no stand-in for {name}")
    model.cam_layer = "head.conv"  # type: ignore[assignment]
    model.classifier_layer = "head.fc"  # type: ignore[assignment]
    return model


def build(name: str) -> tuple[nn.Module, str]:
    try:
        from braincam.models import build_model

        return build_model(name, in_channels=1, num_classes=2), "braincam.models.build_model"
    except Exception as exc:  # the model zoo may not be there yet: say so and use the stand-in
        print(f"(build_model({name!r}) unavailable: {exc!r}; using a stand-in)", file=sys.stderr)
        return standin(name), "torchvision stand-in"


def trained(run: Path, batch: int) -> tuple[nn.Module, torch.Tensor, str]:
    """A trained run's model and ``batch`` z-scored test slices of its store."""
    import numpy as np

    from braincam.data.normalization import zscore
    from braincam.data.slices import SliceStore
    from braincam.training.loading import load_trained

    model, record = load_trained(run)
    store = SliceStore.open(record["store"])
    rows = store.rows(split="test").index.to_numpy()[:batch]
    x = zscore(torch.from_numpy(np.ascontiguousarray(store.images[rows])), record)
    shape = "×".join(str(v) for v in x.shape[1:])
    return model.eval(), x, f"trained {record['model']} ({run}), {len(rows)} test slices, {shape}"


def cnn3d() -> nn.Module:
    """A small 3-D CNN: 4 conv blocks (16-32-64-128, BN, 3 max-pools), conv3x3x3/256, GAP."""
    layers: list[nn.Module] = []
    cin = 1
    for i, cout in enumerate((16, 32, 64, 128)):
        layers += [nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
        if i < 3:
            layers.append(nn.MaxPool3d(2))
        cin = cout
    model = Cut(nn.Sequential(*layers), GapHead(128, 256, 2, dim=3))
    model.cam_layer = "head.conv"  # type: ignore[assignment]
    model.classifier_layer = "head.fc"  # type: ignore[assignment]
    return model


# -- variants ----------------------------------------------------------------------------------
Variant = Callable[[], object]


def variants(model: nn.Module, x: torch.Tensor, libs: set[str]) -> dict[str, Variant]:
    layer_name: str = model.cam_layer  # type: ignore[assignment]
    fc_name: str = model.classifier_layer  # type: ignore[assignment]
    layer = model.get_submodule(layer_name)
    out: dict[str, Variant] = {}

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    out["forward"] = forward
    for m in ALL:
        kw = {"batch_size": CHUNK} if m in ("ablationcam", "scorecam", "sscam", "iscam") else {}
        out[f"ours:{m}"] = lambda m=m, kw=kw: compute_cams(model, x, m, **kw)

    if "pgc" in libs:
        import pytorch_grad_cam as pgc

        for m, cls in PGC.items():

            def run_pgc(cls: str = cls) -> object:
                layers = [] if cls == "FullGrad" else [layer]  # FullGrad takes every bias layer
                with getattr(pgc, cls)(model=model, target_layers=layers) as cam:
                    if cls in ("AblationCAM", "ScoreCAM"):
                        cam.batch_size = CHUNK
                    return cam(input_tensor=x, targets=None)

            out[f"pgc:{m}"] = run_pgc

    if "torchcam" in libs:
        import torchcam.methods as tc

        for m, cls in TORCHCAM.items():

            def run_tc(cls: str = cls, m: str = m) -> object:
                kwargs: dict[str, object] = {"fc_layer": fc_name} if m == "cam" else {}
                if m in ("scorecam", "sscam", "iscam"):
                    kwargs["batch_size"] = CHUNK
                shape = tuple(x.shape[1:])
                with getattr(tc, cls)(model, layer_name, input_shape=shape, **kwargs) as ext:
                    with torch.set_grad_enabled(m not in ("cam", "scorecam", "sscam", "iscam")):
                        scores = model(x)
                    maps = ext(class_idx=scores.argmax(1).tolist(), scores=scores)[0]
                # torch-cam stops at feature resolution: upsample like the others do
                mode = "bilinear" if x.ndim == 4 else "trilinear"
                return F.interpolate(maps.unsqueeze(1), x.shape[2:], mode=mode)

            out[f"torchcam:{m}"] = run_tc

    if "monai" in libs:
        from monai.visualize import class_activation_maps as mc

        for m, cls in MONAI.items():
            # MONAI never removes its hooks and flips in-place flags: give it its own copy.
            own = copy.deepcopy(model)
            args = (own, layer_name, fc_name) if m == "cam" else (own, layer_name)
            obj = getattr(mc, cls)(*args)
            out[f"monai:{m}"] = lambda obj=obj: obj(x)
    return out


def measure(
    named: dict[str, Variant], reps: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, str]]:
    """Time every variant ``reps`` times (after one warm-up), each right after its own forward.

    Returns per-variant times, per-variant *paired ratios* (variant time / the forward timed
    just before it) and failures. Why paired: on a shared virtual CPU the speed of the same
    batch drifts by ±30 % over a minute; a variant and the forward next to it see the same
    phase, so their ratio is far steadier than a ratio of two medians taken minutes apart.
    """
    times: dict[str, list[float]] = {k: [] for k in named}
    ratios: dict[str, list[float]] = {k: [] for k in named if k != "forward"}
    failed: dict[str, str] = {}
    keys = [k for k in named if k != "forward"]

    def timed(key: str) -> float | None:
        start = time.perf_counter()
        try:
            named[key]()
        except Exception as exc:  # a reference library failing is a result, not a crash
            failed[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:70]}"
            return None
        return time.perf_counter() - start

    for rep in range(reps + 1):  # repetition 0 is a warm-up
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in order:
            if key in failed:
                continue
            fwd = timed("forward")
            took = timed(key)
            if fwd is None or took is None:
                continue
            if rep:
                times["forward"].append(fwd)
                times[key].append(took)
                ratios[key].append(took / fwd)
            print(f"  rep {rep} {key}: {took:.2f} s (forward {fwd:.2f} s)", file=sys.stderr)
    return times, ratios, failed


def table(
    title: str,
    times: dict[str, list[float]],
    ratios: dict[str, list[float]],
    failed: dict[str, str],
) -> list[str]:
    fwd = statistics.median(times["forward"])
    med = {k: statistics.median(v) for k, v in ratios.items() if v}
    lines = [
        f"**{title}** — forward (no grad) median {fwd:.3f} s over {len(times['forward'])} runs; "
        "cells: median over repetitions of (variant time / the forward timed just before it)",
        "",
        "| method | braincam ×fwd | pytorch-grad-cam ×fwd | speed-up vs pgc | torch-cam ×fwd "
        "| speed-up vs torch-cam | MONAI ×fwd |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(key: str) -> str:
        if key in failed:
            return f"fails ({failed[key]})"
        return f"{med[key]:.2f}" if key in med else "—"

    def speed(lib: str, m: str) -> str:
        if f"{lib}:{m}" in med and f"ours:{m}" in med:
            return f"{med[f'{lib}:{m}'] / med[f'ours:{m}']:.2f}×"
        return "—"

    for m in [m for m in ALL if any(k.endswith(f":{m}") for k in times)]:
        row = [m, cell(f"ours:{m}"), cell(f"pgc:{m}"), speed("pgc", m)]
        row += [cell(f"torchcam:{m}"), speed("torchcam", m), cell(f"monai:{m}")]
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def available_libs() -> set[str]:
    libs = set()
    for key, mod in (("pgc", "pytorch_grad_cam"), ("torchcam", "torchcam"), ("monai", "monai")):
        try:
            __import__(mod)
            libs.add(key)
        except ImportError:
            print(f"({mod} not installed: skipped)", file=sys.stderr)
    return libs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4, 2 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument("--models", default="resnet18-gap,3d,vgg16-gap", help="'3d': the 3-D CNN")
    parser.add_argument("--skip", default="", help="variants to leave out, e.g. pgc:eigencam")
    parser.add_argument(
        "--methods",
        default=",".join(OURS),
        help="methods to time (default: the original seven; 'new': issue 16's; 'all')",
    )
    parser.add_argument("--size", type=int, default=224, help="2-D input size")
    parser.add_argument("--batch", type=int, default=None, help="batch (default 16, quick 4)")
    parser.add_argument("--no-3d", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--run",
        type=Path,
        action="append",
        help="a trained run directory: its model on the first --batch test slices of its store "
        "(repeatable; trained networks have dead channels, random ones few)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps = args.reps or (2 if args.quick else 5)
    batch = args.batch or (4 if args.quick else 16)
    libs = available_libs()
    skip = {s for s in args.skip.split(",") if s}

    named_sets = {"new": NEW, "all": ALL}
    methods = {n for m in args.methods.split(",") if m for n in named_sets.get(m, [m])}

    def pick(named: dict[str, Variant]) -> dict[str, Variant]:
        return {
            k: v
            for k, v in named.items()
            if k not in skip and (k == "forward" or k.split(":")[1] in methods)
        }

    def emit(lines: list[str]) -> None:  # each table as soon as it is measured
        print("\n".join(lines), flush=True)

    emit(
        [
            f"`{' '.join(['.venv/bin/python', *sys.argv])}` — torch {torch.__version__}, "
            f"{args.threads} threads, CPU, {reps} repetitions (+1 warm-up), medians"
            + (f"; skipped: {', '.join(sorted(skip))}" if skip else "")
            + (f"; methods: {', '.join(sorted(methods))}" if methods != set(OURS) else ""),
            "",
        ]
    )
    for run in args.run or []:
        model, x, title = trained(run, batch)
        print(title, file=sys.stderr)
        times, ratios, failed = measure(pick(variants(model, x, libs)), reps)
        emit(table(title, times, ratios, failed))
    for name in [m for m in args.models.split(",") if m and not args.run]:
        if name == "3d":
            if args.no_3d:
                continue
            model, size = cnn3d().eval(), (48 if args.quick else 96)
            x = torch.randn(2, 1, size, size, size)
            title = f"3-D CNN (bench stand-in), batch 2, 1×{size}³"
        else:
            model, source = build(name)
            model.eval()
            x = torch.randn(batch, 1, args.size, args.size)
            title = f"{name}, batch {batch}, 1×{args.size}×{args.size} ({source})"
        print(title, file=sys.stderr)
        times, ratios, failed = measure(pick(variants(model, x, libs)), reps)
        emit(table(title, times, ratios, failed))


if __name__ == "__main__":
    main()
