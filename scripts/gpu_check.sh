#!/usr/bin/env bash
# The device check for a lent GPU, as one call (~6 min on an H100): environment, the gpu-marked tests, a
# profile of the NSIPF step at the GPU target size, then benchmark.py's gpu suite.
#   bash scripts/gpu_check.sh OUTDIR
# Writes OUTDIR/{env.txt,pytest_gpu.log,profile.txt,bench.log,results.md,results.json}. Each part has its own
# time limit; benchmark.py rewrites results.json after each table, so a run cut short still returns data.
set -u
OUT=${1:-bench/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  nproc; git rev-parse --short HEAD; git status --porcelain --untracked-files=no | head; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 75 python3 -m pytest --rungpu -m gpu -q -s -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -4
timeout 45 python3 scripts/profile_step.py --method NSIPF --N 128 --P 1000000 --device cuda --rows 12 > "$OUT/profile.txt" 2>&1
grep -E "ms/step|kernels per step" "$OUT/profile.txt"
timeout "${BENCH_LIMIT:-330}" python3 benchmark.py --suite gpu --device cuda --out "$OUT" 2>&1 | tee "$OUT/bench.log" | grep -E "^  (baseline|fast path .*(fp32|eager|default|reduce))" | cut -c1-140
echo "bench rc=${PIPESTATUS[0]}"
