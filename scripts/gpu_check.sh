#!/usr/bin/env bash
# The GPU check (parity and speed of the CUDA path), for a machine with an NVIDIA GPU, its
# driver, CUDA 13 libraries and PyTorch, but no Rust toolchain: carry gpu/ made here by
# scripts/pack_for_gpu.sh (docs/cuda.md).
#
#   bash scripts/gpu_check.sh [SEQLM]        # default SEQLM: gpu/seqlm (unpacked from gpu/seqlm.xz)
#
# Runs, in about 5 minutes on an H200 (the budget is 8):
#   0. the GPU test binaries packed in gpu/ (fused CUDA kernels vs composed vs CPU, the fixtures on
#      CUDA, the trainer on CUDA vs the CPU), if present;
#   1. the 44 committed PyTorch fixtures through `seqlm forward --device "$DEVICE" --compare`, with the
#      composed path (candle's CUDA ops) and with the fused CUDA kernels;
#   2. scripts/parity.py --random: random modules, PyTorch on the CPU as the reference, seqlm on
#      the GPU (composed, then fused; f32 within 1e-5 outputs / 1e-4 gradients);
#   3. a short `seqlm train` on the CPU and on the GPU (composed, then fused) with the same seed:
#      the perplexities of every epoch agree;
#   4. `seqlm bench --device "$DEVICE"` (composed and fused) against scripts/bench_torch.py --device "$DEVICE"
#      (cuDNN) for config (a) and the large config, printing tokens/s and ratios.
# Every part runs even if an earlier one failed; the exit status is 1 when any part failed. The
# last lines are a summary. Environment: PYTHON (default python3), PARITY_TRIALS (default 40),
# OUT (a folder for logs; default a temporary one), ITERS_A / ITERS_LARGE (timed iterations,
# default 20 / 10), WARMUP (untimed iterations, default 3), DEVICE (default cuda;
# `DEVICE=cpu PARITY_TRIALS=2 ITERS_A=2 ITERS_LARGE=1 WARMUP=0` is a dry run of this script on a
# machine without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."

# Unpack what scripts/pack_for_gpu.sh packed.
for packed in gpu/*.xz; do
    [[ -e "$packed" ]] || continue
    xz -d -k -f "$packed" && chmod +x "${packed%.xz}"
done
SEQLM=${1:-gpu/seqlm}
PYTHON=${PYTHON:-python3}
TRIALS=${PARITY_TRIALS:-40}
DEVICE=${DEVICE:-cuda}
ITERS_A=${ITERS_A:-20}
ITERS_LARGE=${ITERS_LARGE:-10}
WARMUP=${WARMUP:-3}
LOGS=${OUT:-$(mktemp -d)}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
[[ -x "$SEQLM" ]] || { echo "gpu_check: no seqlm binary at $SEQLM (build it with --features cuda, see docs/cuda.md)" >&2; exit 2; }

# The CUDA 13 libraries seqlm links (cublas, curand, cudart, nvrtc): PyTorch's wheels
# (site-packages/nvidia/cu13/lib), then the system's toolkit; libcuda comes from the driver.
CU13=$("$PYTHON" -c 'import nvidia, os; print(next(os.path.join(p, "cu13", "lib") for p in nvidia.__path__ if os.path.isdir(os.path.join(p, "cu13", "lib"))))' 2>/dev/null || true)
for lib in "$CU13" /usr/local/cuda/lib64; do
    [[ -n "$lib" && -d "$lib" ]] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$lib"
done
echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 2
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
if ! "$SEQLM" --version; then
    ldd "$SEQLM" | grep "not found"
    echo "gpu_check: seqlm cannot start (missing libraries above)" >&2
    exit 2
fi

declare -A RESULT
run_part() { # name, command...: runs it, logs to $LOGS/name.log, records PASS/FAIL
    local name=$1 start=$SECONDS
    shift
    echo "== $name"
    if "$@" 2>&1 | tee "$LOGS/$name.log"; then RESULT[$name]="PASS"; else RESULT[$name]="FAIL"; fi
    RESULT[$name]+=" ($((SECONDS - start)) s)"
}

test_binaries() { # the GPU tests packed in gpu/, each run from its crate's folder
    local ran=0 failed=0 name dir
    for name in cuda_fused cuda_training pytorch_fixtures; do
        [[ -x gpu/$name ]] || continue
        case $name in
            cuda_fused | pytorch_fixtures) dir=crates/seqmodels ;;
            cuda_training) dir=crates/train ;;
        esac
        ran=$((ran + 1))
        echo "-- $name"
        CARGO_MANIFEST_DIR=$(cd "$dir" && pwd) "gpu/$name" --test-threads=1 --nocapture 2>&1 |
            tee "$LOGS/test-$name.log" | grep -vE "^(test |running|$)" | tail -n 12
        [[ ${PIPESTATUS[0]} -eq 0 ]] || failed=$((failed + 1))
        if grep -q "skipped" "$LOGS/test-$name.log"; then
            echo "$name: a test was skipped (no GPU seen)"
            failed=$((failed + 1))
        fi
    done
    echo "test binaries: $ran run, $failed failed"
    [[ $ran -gt 0 && $failed -eq 0 ]]
}

fixtures() { # impl: every committed fixture on the GPU
    local detail="$LOGS/fixtures-$1.detail" out worst passed failed
    : >"$detail"
    for d in tests/fixtures/modules/*/; do
        if out=$("$SEQLM" forward --config "$d/module.json" --weights "$d/weights.safetensors" \
            --inputs "$d/inputs.safetensors" --out "$LOGS/fixture.safetensors" --device "$DEVICE" --impl "$1" \
            --compare "$d/expected.safetensors" 2>&1); then
            # Table rows end with: max abs error, tolerance, OK.
            worst=$(echo "$out" | awk '$NF == "OK" { print $(NF-2) }' | sort -g | tail -n 1)
            echo "ok $(basename "$d") ${worst:-0}" >>"$detail"
        else
            echo "FAIL $(basename "$d")" >>"$detail"
            echo "FAIL $d"
            echo "$out" | grep -E "FAIL|rror" | head -n 5
        fi
    done
    passed=$(grep -c "^ok" "$detail")
    failed=$(grep -c "^FAIL" "$detail")
    worst=$(awk '/^ok/ { print $3 }' "$detail" | sort -g | tail -n 1)
    echo "fixtures on $DEVICE ($1): $passed passed, $failed failed; largest error ${worst:-none}"
    [[ $failed -eq 0 && $passed -ge 44 ]]
}

train_check() { # a short training run on the CPU, then on the GPU composed and fused: same perplexities
    local args=(train --corpus tests/fixtures/lm/text.txt --hidden 64 --batch 4 --steps 9 --epochs 8 --lr 1
        --seed 3 --log-every 1 --no-progress --checkpoint-every 1000 --sample-every 0 --overwrite)
    "$SEQLM" "${args[@]}" --out "$LOGS/train-cpu" >/dev/null || return 1
    local impl failed=0
    for impl in composed fused; do
        "$SEQLM" "${args[@]}" --device "$DEVICE" --impl "$impl" --out "$LOGS/train-$impl" | tail -n 3 || return 1
        "$PYTHON" - "$LOGS/train-cpu/metrics.jsonl" "$LOGS/train-$impl/metrics.jsonl" "$impl" <<'EOF' || failed=1
import json, sys
cpu, gpu = ([json.loads(l) for l in open(p) if l.strip()] for p in sys.argv[1:3])
bad = 0
for a, b in zip(cpu, gpu):
    rel = abs(a["train_ppl"] - b["train_ppl"]) / a["train_ppl"]
    bad += rel > 1e-3
    print(f"epoch {a['epoch']}: train perplexity cpu {a['train_ppl']:.6f}, {sys.argv[3]} {b['train_ppl']:.6f} (rel. {rel:.1e})")
sys.exit(1 if bad or len(cpu) != len(gpu) or not cpu else 0)
EOF
    done
    return $failed
}

bench() { # name, args...: seqlm composed, seqlm fused, PyTorch (cuDNN); one JSON line each, then ratios
    local name=$1
    shift
    for impl in composed fused; do
        "$SEQLM" bench --device "$DEVICE" --impl "$impl" --json "$@" | tee -a "$LOGS/bench-$name.jsonl" || return 1
    done
    "$PYTHON" scripts/bench_torch.py --device "$DEVICE" --json "$@" | tee -a "$LOGS/bench-$name.jsonl" || return 1
    "$PYTHON" - "$LOGS/bench-$name.jsonl" "$name" <<'EOF'
import json, sys
runs = {r["impl"]: r for r in map(json.loads, open(sys.argv[1]))}
torch = runs["torch"]
for impl in ("composed", "fused"):
    r = runs[impl]
    print(f"{sys.argv[2]} {impl:>8}: train {r['train_tokens_per_s']:>10.0f} tok/s ({r['train_tokens_per_s'] / torch['train_tokens_per_s']:.2f}x torch), "
          f"infer {r['infer_tokens_per_s']:>10.0f} tok/s ({r['infer_tokens_per_s'] / torch['infer_tokens_per_s']:.2f}x torch)")
print(f"{sys.argv[2]}    torch: train {torch['train_tokens_per_s']:>10.0f} tok/s, infer {torch['infer_tokens_per_s']:>10.0f} tok/s ({torch['device']}, cuDNN on CUDA)")
EOF
}

if [[ $DEVICE != cpu ]]; then run_part tests test_binaries; fi
run_part fixtures-composed fixtures composed
run_part fixtures-fused fixtures fused
run_part parity-composed "$PYTHON" scripts/parity.py --random "$TRIALS" --seed 7 --seqlm "$SEQLM" --device "$DEVICE" --impl composed
run_part parity-fused "$PYTHON" scripts/parity.py --random "$TRIALS" --seed 8 --seqlm "$SEQLM" --device "$DEVICE" --impl fused
run_part train-cpu-vs-cuda train_check
run_part bench-a bench a --arch lstm --vocab 28 --embed 28 --hidden 256 --layers 1 --batch 32 --steps 35 --iters "$ITERS_A" --warmup "$WARMUP"
run_part bench-large bench large --arch lstm --vocab 10000 --embed 512 --hidden 1024 --layers 2 --batch 64 \
    --steps 100 --iters "$ITERS_LARGE" --warmup "$WARMUP"

echo "== summary (logs in $LOGS)"
status=0
for part in tests fixtures-composed fixtures-fused parity-composed parity-fused train-cpu-vs-cuda bench-a bench-large; do
    [[ -n ${RESULT[$part]:-} ]] || continue
    echo "$part: ${RESULT[$part]}"
    [[ ${RESULT[$part]} == PASS* ]] || status=1
done
grep -h "x torch" "$LOGS"/bench-*.log 2>/dev/null
exit $status
