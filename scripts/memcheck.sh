#!/usr/bin/env bash
# The fused-kernel tests on small sizes under valgrind memcheck: every cell kind, both
# directions, with and without lengths and initial states, forward and backward, through the
# vectorised engine (AVX2 + FMA: valgrind does not run AVX-512) and the generic one.
# Exits non-zero on any memcheck error (invalid reads or writes, uses of uninitialised values).
#
#   bash scripts/memcheck.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

tests=(fused_avx2_f32 fused_generic_f32)
args=(); for t in "${tests[@]}"; do args+=(--test "$t"); done
build=$(cargo test -p seqmodels "${args[@]}" --no-run 2>&1) || { echo "$build" >&2; exit 1; }

status=0
for t in "${tests[@]}"; do
    bin=$(grep -o "target/[^ ]*/deps/${t}-[0-9a-f]*" <<<"$build" | head -n 1)
    [ -n "$bin" ] || { echo "no test binary found for $t" >&2; exit 1; }
    echo "== $t under memcheck ($bin)"
    # Two pool threads, as on the 2-core machines; leaks are not errors here (candle's thread
    # pool lives as long as the process).
    log=$(mktemp)
    RAYON_NUM_THREADS=2 valgrind --tool=memcheck --error-exitcode=99 --track-origins=yes \
        --leak-check=no "$bin" --test-threads=1 >"$log" 2>&1 && rc=0 || rc=$?
    grep -E "ERROR SUMMARY|test result|skipped" "$log" || tail -n 20 "$log"
    rm -f "$log"
    [ "$rc" -eq 0 ] || { echo "memcheck: $t exited with $rc" >&2; status=1; }
done
exit $status
