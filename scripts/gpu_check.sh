#!/usr/bin/env bash
# The device check run on a lent GPU (one call, ~5 min): the gpu-marked tests, then benchmark.py's gpu suite.
#   bash scripts/gpu_check.sh OUTDIR
# Writes OUTDIR/{env.txt,pytest_gpu.log,bench.log,results.md,results.json}; each part has its own time limit
# so that the benchmark's partial results.json (rewritten after each table) comes back even if it runs long.
set -u
OUT=${1:-bench/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  nproc; git rev-parse --short HEAD; git status --porcelain --untracked-files=no | head; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 75 python3 -m pytest --rungpu -m gpu -q -s -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -15
timeout "${BENCH_LIMIT:-250}" python3 benchmark.py --suite gpu --device cuda --out "$OUT" 2>&1 | tee "$OUT/bench.log" | grep -v "^  " | tail -5
echo "bench rc=${PIPESTATUS[0]}"
