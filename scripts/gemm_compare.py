"""The crate's GEMM (`examples/gemm_shapes.rs`) against torch.matmul (MKL, its default threads)
on the large products of the benchmark table, alternating rounds, medians, GFLOP/s and the ratio.

    cargo build --release -p seqmodels --example gemm_shapes
    python scripts/gemm_compare.py [--rounds 3]

The shapes come from the binary: dst (m x n) = lhs (m x k) rhs (k x n), with the operands stored
as the crate's kernels store them (as is or transposed); torch gets the same layouts through
transposed views.
"""

import argparse
import json
import statistics
import subprocess
import time

import torch

BINARY = "target/release/examples/gemm_shapes"


def torch_gflops(m, k, n, lhs_t, rhs_t):
    """Median GFLOP/s of torch.matmul over at least 5 runs and 0.3 s, after one warm-up."""
    a = torch.randn(k, m).t() if lhs_t else torch.randn(m, k)
    b = torch.randn(n, k).t() if rhs_t else torch.randn(k, n)
    out = torch.empty(m, n)
    times = []
    start = time.perf_counter()
    while len(times) < 6 or time.perf_counter() - start < 0.3:
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * m * n * k / statistics.median(times[1:]) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # The shapes and storage orders are the binary's (one JSON line each).
    shapes, ours, theirs = [], {}, {}
    for _ in range(args.rounds):
        lines = subprocess.run([BINARY], check=True, capture_output=True, text=True).stdout.splitlines()
        for line in lines:
            row = json.loads(line)
            if row["shape"] not in ours:
                shapes.append(row)
                ours[row["shape"]], theirs[row["shape"]] = [], []
            ours[row["shape"]].append(row["gflops"])
        for s in shapes:
            theirs[s["shape"]].append(torch_gflops(s["m"], s["k"], s["n"], s["lhs_transposed"], s["rhs_transposed"]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} alternating rounds, medians")
    print("| product | m x k x n | seqmodels GFLOP/s | torch.matmul GFLOP/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for s in shapes:
        a, b = statistics.median(ours[s["shape"]]), statistics.median(theirs[s["shape"]])
        print(f"| {s['shape']} | {s['m']} x {s['k']} x {s['n']} | {a:.0f} | {b:.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
