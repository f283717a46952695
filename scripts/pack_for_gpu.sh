#!/usr/bin/env bash
# Builds the `cuda` feature here (no GPU needed) and packs what scripts/gpu_check.sh runs on a GPU
# machine without Rust into gpu/ (ignored by git): seqlm and the three GPU test binaries, each
# stripped and xz-compressed (about 9 MB each; unpacked they are 50-65 MB, over what the device
# tool carries). Needs scripts/setup_cuda_build.sh once. See docs/cuda.md.
#
#   bash scripts/pack_for_gpu.sh        # ~12 min cold, ~3 min after a change in our crates
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_FILE=${SEQMODELS_CUDA_HOME:-$HOME/.cache/seqmodels/cuda-13.0}/env.sh
[[ -f "$ENV_FILE" ]] || { echo "pack_for_gpu: run scripts/setup_cuda_build.sh first ($ENV_FILE missing)" >&2; exit 1; }
# shellcheck disable=SC1090
source "$ENV_FILE"
export CARGO_TARGET_DIR=target/cuda
cargo build --release --features cuda -p seqmodels-train --bin seqlm
# The test binaries' paths, from cargo's JSON messages.
tests=$(cargo test --release --features cuda --workspace --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("cuda_fused", "cuda_training", "pytorch_fixtures"):
        print(m["target"]["name"], m["executable"])')
mkdir -p gpu
rm -f gpu/*
pack() { # name, binary
    strip -o "gpu/$1" "$2"
    xz -T0 -6 -f "gpu/$1"
    echo "gpu/$1.xz: $(du -h "gpu/$1.xz" | cut -f1)"
}
pack seqlm "$CARGO_TARGET_DIR/release/seqlm"
while read -r name path; do
    [[ -n "$name" ]] && pack "$name" "$path"
done <<<"$tests"
echo "carry gpu/ and run: bash scripts/gpu_check.sh"
