#!/usr/bin/env bash
# Second device check: profiles of one step, then benchmark.py's fast-path tables (CUDA graphs fixed).
set -u
OUT=${1:-bench/gpu2}; mkdir -p "$OUT"; export PYTHONUNBUFFERED=1
for spec in "NSIPF 128 1000000" "SIPF-spline 32 20000" "SIPF-trilinear 64 10000000" "NSIPF 64 20000"; do
  set -- $spec
  timeout 45 python3 scripts/profile_step.py --method $1 --N $2 --P $3 --device cuda --rows 12 > "$OUT/profile_$1_$2_$3.txt" 2>&1
  grep -E "ms/step|kernels per step" "$OUT/profile_$1_$2_$3.txt"
done
timeout "${BENCH_LIMIT:-200}" python3 benchmark.py --suite gpu --device cuda --tables fast_path --out "$OUT" 2>&1 | tee "$OUT/bench.log" | grep "^  fast path" | cut -c1-150
