#!/usr/bin/env bash
# The prepared GPU check: one call, at most --budget seconds (default 240), most important first.
#
#   bash studies/gpu_check.sh                          # on a CUDA machine
#   bash studies/gpu_check.sh --device cpu --quick     # the CPU dry run: same stages at tiny sizes
#   bash studies/gpu_check.sh --stages targets,train   # a rerun of some stages only
#
# Stages, in order (each with its own time limit, never beyond what is left of the budget):
#   sync     tests/test_gpu.py: whole particle steps under torch.cuda.set_sync_debug_mode("error") and a
#            profiler count of host-device copies per step; FD's one copy per outer step; histogram == bincount
#   gputests the other gpu-marked tests (one training epoch on CUDA, compiled NSIPF, CUDA vs CPU checks)
#   targets  benchmark.py --tables targets,spectral: the GPU target rows (median of 3, compilation excluded
#            and reported, peak memory and "fits 80 GB" for P = 1e8) and the DCT field solve at 128^3 and
#            256^3 (the issue-21 row: the elliptic solve at 256^3 within 5 ms)
#   histogram benchmark.py --tables histogram: the deposit's sync-free histogram against bincount and the
#            other forms, spread and hot (all particles in 8 cells), P = 1e6 and 1e7 at 64^3
#   train    benchmark.py --tables train: python train.py --device cuda, shipped config, data included
# After every stage it (re)writes the summary JSON, so a run cut short still leaves what it measured:
#   docs/benchmarks/gpu_<device>_<date>.json (device, driver, torch, CUDA, commit, each stage's status, the
#   pytest summaries, the target rows, train.py's wall time); the dry run writes it under --out instead.
# Logs and benchmark results: --out (default bench/gpu_check).
set -u
DEVICE=cuda QUICK=0 OUT=bench/gpu_check BUDGET=240 STAGES=sync,gputests,targets,histogram,train JSON_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --stages) STAGES=$2; shift 2 ;;
    --json-dir) JSON_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: error: unknown argument $1" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
SUITE=gpu
[ "$QUICK" = 1 ] && SUITE=tiny
if [ -z "$JSON_DIR" ]; then
  if [ "$QUICK" = 1 ]; then JSON_DIR=$OUT; else JSON_DIR=docs/benchmarks; fi
fi
mkdir -p "$OUT" "$JSON_DIR" || { echo "gpu_check.sh: error: cannot create $OUT or $JSON_DIR" >&2; exit 2; }
export PYTHONUNBUFFERED=1
START=$SECONDS
: > "$OUT/stages.tsv"

summarise() {  # (re)write the summary JSON from stages.tsv, the logs and the benchmark results
  "$PY" - "$OUT" "$JSON_DIR" "$DEVICE" "$SUITE" "$BUDGET" <<'EOF'
import json, os, re, subprocess, sys, time
from pathlib import Path
out, json_dir, device, suite, budget = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
import torch
env = {"torch": torch.__version__, "cuda": torch.version.cuda, "requested_device": device, "suite": suite,
       "budget_s": int(budget), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
if device.startswith("cuda") and torch.cuda.is_available():
    env["device"] = torch.cuda.get_device_name(0)
    env["memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except Exception as err:  # noqa: BLE001 - the summary is written whatever is missing
        env["driver"] = f"unknown ({type(err).__name__})"
else:
    env["device"], env["driver"] = "cpu", None
try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           timeout=10).stdout.strip()
    env["commit"] = (rev.stdout.strip() + ("+dirty" if dirty else "")) or "unknown"
except Exception:  # noqa: BLE001
    env["commit"] = "unknown"
stages = {}
for line in (out / "stages.tsv").read_text().splitlines():
    name, rc, seconds, limit = line.split("\t")
    log = out / f"{name}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    status = {"0": "ok", "124": "cut short (time limit)", "137": "killed (time limit)", "skip": "skipped (budget spent)"}
    entry = {"rc": rc, "status": status.get(rc, "failed"), "seconds": int(seconds), "limit_s": int(limit)}
    summary = [l for l in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", l)]
    if summary:
        entry["pytest"] = summary[-1].strip("= ")
        entry["failures"] = [l for l in text.splitlines() if l.startswith(("FAILED", "ERROR"))][:20]
    entry["log_tail"] = text.splitlines()[-8:]
    stages[name] = entry
results = {}
for name, stage in (("targets", "targets"), ("spectral", "targets"), ("histogram", "histogram"), ("train", "train")):
    path = out / f"bench_{stage}" / "results.json"
    if path.exists():
        results[name] = json.loads(path.read_text()).get(name)
slug = re.sub(r"[^a-z0-9]+", "_", env["device"].lower()).strip("_")
target = json_dir / f"gpu_{slug}_{time.strftime('%Y-%m-%d')}.json"
tmp = target.with_suffix(".tmp")
tmp.write_text(json.dumps({**env, "stages": stages, **results}, indent=2, default=str) + "\n")
os.replace(tmp, target)
print(f"summary -> {target}")
EOF
}

stage() {  # stage NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  case ",$STAGES," in *",$name,"*) ;; *) return ;; esac
  local left=$(( BUDGET - (SECONDS - START) ))
  if [ "$left" -lt 10 ]; then
    printf '%s\tskip\t0\t0\n' "$name" >> "$OUT/stages.tsv"; echo "== $name: skipped, budget spent"; summarise; return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit} s): $*"
  local t0=$SECONDS
  timeout --signal=TERM --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( SECONDS - t0 ))" "$limit" >> "$OUT/stages.tsv"
  tail -n 4 "$OUT/$name.log"
  echo "== $name: rc=$rc after $(( SECONDS - t0 )) s"
  summarise
}

PYTEST=("$PY" -m pytest --rungpu -m gpu -q -p no:cacheprovider -rfE)
SYNC_TESTS="sync or histogram or fd_outer"
stage sync 60 "${PYTEST[@]}" tests/test_gpu.py -k "$SYNC_TESTS"
stage gputests 70 "${PYTEST[@]}" tests -k "not ($SYNC_TESTS)"
stage targets 120 "$PY" benchmark.py --suite "$SUITE" --tables targets,spectral --device "$DEVICE" --dtype float32 \
  --repeats 3 --out "$OUT/bench_targets"
HIST_PS=1000000,10000000
[ "$QUICK" = 1 ] && HIST_PS=20000
stage histogram 30 "$PY" benchmark.py --suite "$SUITE" --tables histogram --device "$DEVICE" --N2 64 --Ps "$HIST_PS" \
  --out "$OUT/bench_histogram"
stage train 150 "$PY" benchmark.py --suite "$SUITE" --tables train --device "$DEVICE" --out "$OUT/bench_train"
echo "gpu_check.sh: done in $(( SECONDS - START )) s (budget $BUDGET s)"
