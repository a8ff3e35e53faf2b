#!/usr/bin/env bash
# Run both full study configs on a GPU and record images/s, time per epoch and peak GPU memory.
#
#   benchmarks/gpu_study.sh [--out DIR] [--precision bf16-mixed|16-mixed|32-true]
#                           [--no-channels-last] [--tiny]
#
# Each config is copied with train.precision / train.channels_last set (bf16-mixed and
# channels_last by default), run with `braincam run`, and every run's RUN/throughput.tsv is
# summarized into DIR/gpu_study.tsv (printed as Markdown for BENCHMARKS.md).
# --tiny: the same path on the CPU with a shrunk synthetic cohort and tinycnn-gap (a smoke test;
# its figures say nothing about a GPU). Environment: PYTHON (default: python), BRAINCAM
# (default: braincam).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="gpu-study-out"
precision="bf16-mixed"
layout=()
tiny=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --precision) precision="$2"; shift 2 ;;
    --no-channels-last) layout=(--no-channels-last); shift ;;
    --tiny|--dry-run) tiny=(--tiny); shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_study.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-python}"
braincam="${BRAINCAM:-braincam}"

mkdir -p "$out"
dirs=()
for study in dmri-age-6models ms-subtypes-3class; do
  cfg="$out/$study.yaml"
  "$python" "$here/gpu_study.py" config "$root/configs/$study.yaml" "$cfg" \
    --precision "$precision" "${layout[@]}" "${tiny[@]}"
  "$braincam" run "$cfg" --out "$out/$study" --no-progress
  dirs+=("$out/$study")
done
"$python" "$here/gpu_study.py" report "${dirs[@]}" --tsv "$out/gpu_study.tsv"
