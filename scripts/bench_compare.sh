#!/usr/bin/env bash
# Compare `seqlm bench` (ours) with scripts/bench_torch.py (PyTorch) on the same arguments.
#
#   scripts/bench_compare.sh [bench args...]          throughput: ROUNDS rounds, alternating
#   scripts/bench_compare.sh --memory [bench args...] peak RSS of one run of each (/usr/bin/time -v)
#
# Bench args are those of `seqlm bench` and bench_torch.py (--arch --vocab --embed --hidden --layers
# --batch --steps --iters --warmup --seed --lr --threads --precision --skip-training; --impl goes to
# seqlm only, bench_torch.py ignores it).  Without args:
#   throughput: config (a), the d2l character model:
#     --arch lstm --vocab 28 --embed 28 --hidden 256 --layers 1 --batch 32 --steps 35 --iters 20
#   --memory:   config (b), the classic word-level model:
#     --arch lstm --vocab 10000 --embed 200 --hidden 200 --layers 2 --batch 20 --steps 20 --iters 20
#
# Throughput mode runs seqlm then PyTorch, ROUNDS times (env, default 5), each run a fresh process
# printing one JSON line, and prints every run's line, then the median over rounds of train and
# infer tokens/s of each side and the ratios ours/PyTorch (> 1: ours is faster).  Memory mode runs
# each side once under /usr/bin/time -v and prints "Maximum resident set size" (peak RSS) and the
# ratio; the peak of a run is its training phase (inference keeps no graph on either side).  For
# reference it also prints the peak RSS of `python -c 'import torch'` alone (the libraries).
#
# Environment:
#   ROUNDS   rounds of the throughput mode (default 5)
#   PYTHON   the Python with torch (default /work/venv/bin/python)
#   SEQLM    the seqlm binary (default target/release/seqlm; built with
#            `cargo build --release -p seqmodels-train --bin seqlm` when missing)
#   Threads: each side uses its default (all physical cores: torch.get_num_threads(), candle's
#   RAYON_NUM_THREADS or physical cores); both report the count in "threads".  Pass --threads N
#   to pin both.
#
# BLAS: this PyTorch is built with MKL (torch.__config__.show(): BLAS_INFO=mkl); numpy, if loaded,
# may bring OpenBLAS.  OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on this machine (for other
# tools) and can slow numpy/torch, so both are unset for the PyTorch runs.  seqlm uses the `gemm`
# crate and its own kernels, and is run with the environment as it is.
#
# Needs: python3 (for the JSON and the medians), /usr/bin/time for --memory (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
PYTHON="${PYTHON:-/work/venv/bin/python}"
SEQLM="${SEQLM:-target/release/seqlm}"

memory=0
if [[ "${1:-}" == "--memory" ]]; then
  memory=1
  shift
fi
if [[ $# -eq 0 ]]; then
  if [[ $memory -eq 1 ]]; then
    set -- --arch lstm --vocab 10000 --embed 200 --hidden 200 --layers 2 --batch 20 --steps 20 --iters 20
  else
    set -- --arch lstm --vocab 28 --embed 28 --hidden 256 --layers 1 --batch 32 --steps 35 --iters 20
  fi
fi
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "bench_compare.sh: ROUNDS must be a positive integer, found '$ROUNDS'" >&2
  exit 2
fi

if [[ ! -x "$SEQLM" ]]; then
  echo "== building $SEQLM" >&2
  cargo build --release -p seqmodels-train --bin seqlm >&2
fi

run_ours() { "$SEQLM" bench "$@" --json; }
run_torch() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PYTHON" scripts/bench_torch.py "$@" --json; }

echo "== args: $*"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $memory -eq 1 ]]; then
  if [[ ! -x /usr/bin/time ]]; then
    echo "bench_compare.sh: --memory needs /usr/bin/time (apt-get install time)" >&2
    exit 2
  fi
  peak() { # peak RSS in KiB of the command "$@"; its stdout goes to stderr
    local log
    log="$(mktemp)"
    /usr/bin/time -v -o "$log" "$@" >&2
    sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$log"
    rm -f "$log"
  }
  ours_kib="$(peak "$SEQLM" bench "$@" --json)"
  torch_kib="$(peak env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PYTHON" scripts/bench_torch.py "$@" --json)"
  import_kib="$(peak env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PYTHON" -c 'import torch')"
  "$PYTHON" - "$ours_kib" "$torch_kib" "$import_kib" <<'EOF'
import sys
ours, torch, base = (int(a) for a in sys.argv[1:4])
print(f"peak RSS: seqlm {ours / 1024:.1f} MiB, torch {torch / 1024:.1f} MiB, ours/PyTorch {ours / torch:.3f}")
print(f"(for reference: `import torch` alone peaks at {base / 1024:.1f} MiB; "
      f"torch run minus that: {(torch - base) / 1024:.1f} MiB)")
EOF
  exit 0
fi

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  ours="$(run_ours "$@")"
  echo "round $round seqlm: $ours"
  echo "ours $ours" >>"$results"
  torch="$(run_torch "$@")"
  echo "round $round torch: $torch"
  echo "torch $torch" >>"$results"
done

"$PYTHON" - "$results" <<'EOF'
import json
import statistics
import sys

runs = {"ours": [], "torch": []}
with open(sys.argv[1]) as f:
    for line in f:
        side, text = line.split(" ", 1)
        runs[side].append(json.loads(text))

def med(side, key):
    values = [r[key] for r in runs[side] if r.get(key) is not None]
    return statistics.median(values) if values else None

def show(value, width, digits):
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"

n = len(runs["ours"])
precision = runs["ours"][0].get("precision", "f32")
print(f"== medians over {n} round(s) (threads: seqlm {runs['ours'][0]['threads']}, torch {runs['torch'][0]['threads']}; "
      f"inference precision {precision})")
print(f"{'':8}{'train tokens/s':>16}{'infer tokens/s':>16}{'train GFLOP/s':>15}{'infer GFLOP/s':>15}")
for side, name in (("ours", "seqlm"), ("torch", "torch")):
    print(f"{name:8}{show(med(side, 'train_tokens_per_s'), 16, 0)}{show(med(side, 'infer_tokens_per_s'), 16, 0)}"
          f"{show(med(side, 'train_gflops_per_s'), 15, 1)}{show(med(side, 'infer_gflops_per_s'), 15, 1)}")
ratios = []
for phase in ("train", "infer"):
    ours, torch = med("ours", f"{phase}_tokens_per_s"), med("torch", f"{phase}_tokens_per_s")
    if ours is not None and torch is not None:
        ratios.append(f"{phase} {ours / torch:.3f}x")
print(f"ratio ours/PyTorch: {', '.join(ratios)}")
EOF
