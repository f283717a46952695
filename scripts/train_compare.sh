#!/usr/bin/env bash
# End-to-end training speed: `seqlm train` against the PyTorch training loop with the same recipe
# (`scripts/torch_lm.py train`), alternating, and `seqlm bench` on the same shape, so that the
# trainer's overhead over the kernels shows.
#
#   scripts/train_compare.sh [train args...]
#
# Train args are those of `seqlm train` that torch_lm.py also takes (--corpus --tokenizer --clean
# --max-tokens --model --layers --hidden --embed --batch --steps --epochs --lr --clip --sampling
# --seed ...). Without args: Zaremba's small recipe on the words of Tiny Shakespeare (shape (b) of
# BENCHMARKS.md with the corpus's own vocabulary):
#   --corpus tinyshakespeare --tokenizer word --clean d2l --max-tokens all --model lstm --layers 2
#   --embed 200 --hidden 200 --batch 20 --steps 20 --lr 20 --clip 0.25 --sampling sequential --epochs 1
#
# Each side trains ROUNDS times (env, default 2), each a fresh process writing its run directory
# under a temporary folder; the tokens/s of a run is that of its last epoch in metrics.jsonl (the
# time of the training steps: validation is not counted on either side). Each round also runs
# `seqlm bench --iters 20` on the same shape (its vocabulary read from the first run's checkpoint)
# right after seqlm train. Prints every round, the medians, the ratio seqlm / PyTorch, and the ratio
# train / bench (of the medians, and of each round: the machine's speed drifts between rounds).
#
# Environment: ROUNDS, PYTHON (the Python with torch; default /work/venv/bin/python), SEQLM (default
# target/release/seqlm, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-2}"
PYTHON="${PYTHON:-/work/venv/bin/python}"
SEQLM="${SEQLM:-target/release/seqlm}"

if [[ $# -eq 0 ]]; then
  set -- --corpus tinyshakespeare --tokenizer word --clean d2l --max-tokens all --model lstm --layers 2 \
    --embed 200 --hidden 200 --batch 20 --steps 20 --lr 20 --clip 0.25 --sampling sequential --epochs 1
fi
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "train_compare.sh: ROUNDS must be a positive integer, found '$ROUNDS'" >&2
  exit 2
fi
if [[ ! -x "$SEQLM" ]]; then
  echo "== building $SEQLM" >&2
  cargo build --release -p seqmodels-train --bin seqlm >&2
fi

# The value of option $1 among the train args (empty when absent).
arg() {
  local want="$1"; shift
  while [[ $# -gt 0 ]]; do
    if [[ "$1" == "$want" && $# -ge 2 ]]; then echo "$2"; return; fi
    shift
  done
}

# tokens/s of the last epoch of a run directory's metrics.jsonl.
last_rate() { tail -n 1 "$1/metrics.jsonl" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["tokens_per_s"]))'; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# `seqlm train`'s defaults where the args leave a value out.
or_default() { local v; v="$(arg "$1" "${@:3}")"; echo "${v:-$2}"; }

echo "== args: $*"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
ours=(); theirs=(); benches=()
for r in $(seq 1 "$ROUNDS"); do
  "$SEQLM" train "$@" --out "$work/seqlm-$r" --no-progress >"$work/seqlm-$r.log" 2>&1 \
    || { cat "$work/seqlm-$r.log" >&2; exit 1; }
  ours+=("$(last_rate "$work/seqlm-$r")")
  if [[ $r -eq 1 ]]; then
    # The bench on the same shape: the model's vocabulary from the first run's checkpoint.
    vocab="$("$PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["tokens"]))' "$work/seqlm-1/checkpoint/vocab.json")"
    bench=("$SEQLM" bench --arch "$(or_default --model lstm "$@")" --vocab "$vocab" --embed "$(or_default --embed 0 "$@")"
      --hidden "$(or_default --hidden 256 "$@")" --layers "$(or_default --layers 1 "$@")"
      --batch "$(or_default --batch 32 "$@")" --steps "$(or_default --steps 35 "$@")" --lr "$(or_default --lr 1 "$@")"
      --iters 20 --json)
    echo "== bench, run in every round after seqlm train: ${bench[*]}"
  fi
  benches+=("$("${bench[@]}" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["train_tokens_per_s"]))')")
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PYTHON" scripts/torch_lm.py train "$@" --out "$work/torch-$r" \
    >"$work/torch-$r.log" 2>&1 || { cat "$work/torch-$r.log" >&2; exit 1; }
  theirs+=("$(last_rate "$work/torch-$r")")
  echo "round $r: seqlm train ${ours[-1]} tok/s, seqlm bench ${benches[-1]} tok/s, PyTorch loop ${theirs[-1]} tok/s"
done

"$PYTHON" - "${benches[*]}" "${ours[*]}" "${theirs[*]}" <<'EOF'
import statistics, sys
benches, ours, theirs = ([float(v) for v in arg.split()] for arg in sys.argv[1:4])
o, t, b = statistics.median(ours), statistics.median(theirs), statistics.median(benches)
per_round = ", ".join(f"{x / y:.2f}" for x, y in zip(ours, benches))
print(f"median: seqlm train {o:,.0f} tok/s, PyTorch loop {t:,.0f} tok/s, ratio {o / t:.2f}x")
print(f"seqlm bench on the same shape: median {b:,.0f} tok/s; seqlm train / bench = {o / b:.2f} (rounds: {per_round})")
EOF
