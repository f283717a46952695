#!/usr/bin/env bash
# Compare `seqlm bench` (ours) with scripts/bench_torch.py (PyTorch) on the same arguments.
#
#   scripts/bench_compare.sh [bench args...]          throughput: ROUNDS rounds, alternating
#   scripts/bench_compare.sh --memory [bench args...] peak RSS of one run of each (/usr/bin/time -v)
#   scripts/bench_compare.sh --table [--only NAME[,NAME...]] [bench args...]
#                                                     the table of BENCHMARKS.md's configurations
#
# Bench args are those of `seqlm bench` and bench_torch.py (--arch --vocab --embed --hidden --layers
# --batch --steps --iters --warmup --seed --lr --threads --precision --lengths --skip-training; --impl
# goes to seqlm only, bench_torch.py ignores it).  Without args:
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
# Table mode runs each configuration below ROUNDS times (seqlm then PyTorch, alternating; all rounds
# of a row before the next row), with the given bench args appended to every run (e.g. --threads 2),
# then prints one markdown table: medians of train and infer tokens/s of each side, the ratios
# ours/PyTorch, and each side's median nominal GFLOP/s (the "*_gflops_per_s" of the JSON lines: the
# same flops_per_token formula in both programs) as a percentage of the machine's f32 FMA peak.  The
# peak is measured once first by `crates/seqmodels/examples/fma_peak.rs` (independent FMA chains on
# as many threads as seqlm uses, or --threads N), printed with lscpu's CPU model at the top.
#   name          arguments (--arch --vocab --embed --hidden --layers --batch --steps)  timing
#   (a) LSTM      lstm 28 28 256 1 32 35                                              --iters 20
#   (a) GRU       gru 28 28 256 1 32 35                                               --iters 20
#   (b) words     lstm 10000 200 200 2 20 20                                          --iters 20
#   medium        lstm 10000 650 650 2 20 35                                          --iters 10 --warmup 2
#   large         lstm 10000 512 1024 2 64 35                                         --iters 10 --warmup 2
#   stream H256   lstm 28 28 256 1 1 64                                               --iters 20
#   stream H1024  lstm 10000 512 1024 2 1 64                                          --iters 10 --warmup 2
#   lengths       lstm 10000 200 200 2 20 20 --lengths random                         --iters 20
# --only runs the named rows only (comma-separated, as named above: --only "(a) LSTM,lengths").
#
# Environment:
#   ROUNDS   rounds of the throughput and table modes (default 5)
#   ITERS, WARMUP  table mode: replace every row's timing by --iters ITERS --warmup WARMUP (default 1),
#            for quick checks (ITERS=2 WARMUP=1 ROUNDS=1 scripts/bench_compare.sh --table --only lengths)
#   PYTHON   the Python with torch (default /work/venv/bin/python)
#   SEQLM    the seqlm binary (default $CARGO_TARGET_DIR/release/seqlm, else target/release/seqlm;
#            built with `cargo build --release -p seqmodels-train --bin seqlm` when missing)
#   FMA_PEAK the fma_peak program (default release/examples/fma_peak in the same target directory;
#            built with `cargo build --release -p seqmodels --example fma_peak` when missing)
#   Threads: each side uses its default (all physical cores: torch.get_num_threads(), candle's
#   RAYON_NUM_THREADS or physical cores); both report the count in "threads".  Pass --threads N
#   to pin both.
#
# BLAS: this PyTorch is built with MKL (torch.__config__.show(): BLAS_INFO=mkl); numpy, if loaded,
# may bring OpenBLAS.  OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on this machine (for other
# tools) and can slow numpy/torch, so both are unset for the PyTorch runs.  seqlm uses the `gemm`
# crate and its own kernels, and is run with the environment as it is.
#
# Needs: python3 (for the JSON and the medians), /usr/bin/time for --memory (apt-get install time),
# lscpu for --table.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
PYTHON="${PYTHON:-/work/venv/bin/python}"
SEQLM="${SEQLM:-${CARGO_TARGET_DIR:-target}/release/seqlm}"
FMA_PEAK="${FMA_PEAK:-${CARGO_TARGET_DIR:-target}/release/examples/fma_peak}"

memory=0
table=0
if [[ "${1:-}" == "--memory" ]]; then
  memory=1
  shift
elif [[ "${1:-}" == "--table" ]]; then
  table=1
  shift
fi
if [[ $# -eq 0 && $table -eq 0 ]]; then
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

if [[ $table -eq 1 ]]; then
  # name|arguments (--arch --vocab --embed --hidden --layers --batch --steps [more])|timing
  rows=(
    "(a) LSTM|lstm 28 28 256 1 32 35|--iters 20"
    "(a) GRU|gru 28 28 256 1 32 35|--iters 20"
    "(b) words|lstm 10000 200 200 2 20 20|--iters 20"
    "medium|lstm 10000 650 650 2 20 35|--iters 10 --warmup 2"
    "large|lstm 10000 512 1024 2 64 35|--iters 10 --warmup 2"
    "stream H256|lstm 28 28 256 1 1 64|--iters 20"
    "stream H1024|lstm 10000 512 1024 2 1 64|--iters 10 --warmup 2"
    "lengths|lstm 10000 200 200 2 20 20 --lengths random|--iters 20"
  )
  only=""
  extra=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --only)
        if [[ $# -lt 2 ]]; then
          echo "bench_compare.sh: --only needs NAME[,NAME...]" >&2
          exit 2
        fi
        only="$2"
        shift 2
        ;;
      *)
        extra+=("$1")
        shift
        ;;
    esac
  done
  selected=()
  if [[ -z "$only" ]]; then
    selected=("${rows[@]}")
  else
    IFS=',' read -ra wanted <<<"$only"
    for name in "${wanted[@]}"; do
      found=""
      for row in "${rows[@]}"; do
        if [[ "${row%%|*}" == "$name" ]]; then found="$row"; fi
      done
      if [[ -z "$found" ]]; then
        names="$(printf '%s, ' "${rows[@]%%|*}")"
        echo "bench_compare.sh: --only: no row named '$name' (rows: ${names%, })" >&2
        exit 2
      fi
      selected+=("$found")
    done
  fi
  if [[ -n "${ITERS:-}" ]] && ! [[ "$ITERS" =~ ^[1-9][0-9]*$ && "${WARMUP:-1}" =~ ^[0-9]+$ ]]; then
    echo "bench_compare.sh: ITERS must be a positive integer and WARMUP a non-negative one" >&2
    exit 2
  fi
  if [[ ! -x "$FMA_PEAK" ]]; then
    echo "== building $FMA_PEAK" >&2
    cargo build --release -p seqmodels --example fma_peak >&2
  fi
  peak_args=()
  for ((i = 0; i + 1 < ${#extra[@]}; i++)); do
    if [[ "${extra[$i]}" == "--threads" ]]; then
      peak_args=(--threads "${extra[$((i + 1))]}")
    fi
  done
  field() { lscpu | sed -n "s/^$1:[[:space:]]*//p" | head -1; }
  echo "== CPU: $(field 'Model name') (family $(field 'CPU family'), model $(field 'Model')), $(nproc) CPUs;" \
    "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  peak="$("$FMA_PEAK" "${peak_args[@]}")"
  echo "== f32 FMA peak: $peak"
  results="$(mktemp)"
  trap 'rm -f "$results"' EXIT
  for index in "${!selected[@]}"; do
    IFS='|' read -r name shown timing <<<"${selected[$index]}"
    read -ra words <<<"$shown"
    args=(--arch "${words[0]}" --vocab "${words[1]}" --embed "${words[2]}" --hidden "${words[3]}"
      --layers "${words[4]}" --batch "${words[5]}" --steps "${words[6]}" "${words[@]:7}")
    if [[ -n "${ITERS:-}" ]]; then
      timing="--iters $ITERS --warmup ${WARMUP:-1}"
    fi
    read -ra timing_args <<<"$timing"
    for round in $(seq 1 "$ROUNDS"); do
      ours="$(run_ours "${args[@]}" "${timing_args[@]}" "${extra[@]}")"
      echo "$name, round $round, seqlm: $ours"
      printf '%s\t%s\t%s\t%s\n' "$index" "$name|$shown" ours "$ours" >>"$results"
      torch="$(run_torch "${args[@]}" "${timing_args[@]}" "${extra[@]}")"
      echo "$name, round $round, torch: $torch"
      printf '%s\t%s\t%s\t%s\n' "$index" "$name|$shown" torch "$torch" >>"$results"
    done
  done
  "$PYTHON" - "$results" "$peak" "$ROUNDS" <<'EOF'
import json
import statistics
import sys

peak = json.loads(sys.argv[2])
rows = {}  # index -> (name, arguments, {"ours": [runs], "torch": [runs]})
with open(sys.argv[1]) as f:
    for line in f:
        index, label, side, text = line.rstrip("\n").split("\t", 3)
        name, shown = label.split("|", 1)
        rows.setdefault(int(index), (name, shown, {"ours": [], "torch": []}))[2][side].append(json.loads(text))


def med(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def tokens(value):
    return "-" if value is None else f"{value:,.0f}"


def ratio(ours, torch):
    return "-" if ours is None or torch is None else f"**{ours / torch:.2f}x**" if ours > torch else f"{ours / torch:.2f}x"


def share(gflops):
    return "-" if gflops is None else f"{100 * gflops / peak['gflops']:.0f}%"


print()
print(f"f32 FMA peak {peak['gflops']:.1f} GFLOP/s ({peak['simd']}, {peak['threads']} threads); medians over "
      f"{sys.argv[3]} round(s); % peak = nominal GFLOP/s over that peak")
print()
print("| config | arguments | seqlm train tok/s | PyTorch train tok/s | ratio | seqlm infer tok/s "
      "| PyTorch infer tok/s | ratio | seqlm train % peak | PyTorch train % peak | seqlm infer % peak "
      "| PyTorch infer % peak |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
warnings = []
for index in sorted(rows):
    name, shown, runs = rows[index]
    ours, torch = runs["ours"], runs["torch"]
    counts = ({r.get("tokens_per_iter") for r in ours}, {r.get("tokens_per_iter") for r in torch})
    if counts[0] != counts[1]:
        warnings.append(f"{name}: tokens per iteration differ (seqlm {counts[0]}, PyTorch {counts[1]})")
    cells = [name, shown]
    for phase in ("train", "infer"):
        o, t = med(ours, f"{phase}_tokens_per_s"), med(torch, f"{phase}_tokens_per_s")
        cells += [tokens(o), tokens(t), ratio(o, t)]
    for phase in ("train", "infer"):
        cells += [share(med(ours, f"{phase}_gflops_per_s")), share(med(torch, f"{phase}_gflops_per_s"))]
    print("| " + " | ".join(cells) + " |")
for warning in warnings:
    print(f"warning: {warning}")
EOF
  exit 0
fi

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
lengths, tokens = runs["ours"][0].get("lengths", "full"), runs["ours"][0].get("tokens_per_iter")
print(f"== medians over {n} round(s) (threads: seqlm {runs['ours'][0]['threads']}, torch {runs['torch'][0]['threads']}; "
      f"inference precision {precision}; {lengths} lengths, {tokens} tokens per iteration)")
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
