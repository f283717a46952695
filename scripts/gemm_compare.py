"""The crate's GEMM (`examples/gemm_shapes.rs`) against torch.matmul (MKL, its default threads)
on the large products of the benchmark table, alternating rounds, medians, GFLOP/s and the ratio.

    cargo build --release -p seqmodels --example gemm_shapes
    python scripts/gemm_compare.py [--rounds 3]

Each shape is dst (m x n) = lhs (m x k) rhs (k x n), with the operands stored as the crate's
kernels store them (as is or transposed): torch gets the same layouts through transposed views.
"""

import argparse
import json
import statistics
import subprocess
import time

import torch

BINARY = "target/release/examples/gemm_shapes"
# The same shapes and storage as examples/gemm_shapes.rs: (name, m, k, n, lhs transposed, rhs transposed).
SHAPES = [
    ("(a) dW_hh", 1024, 1120, 256, True, False),
    ("(b) decoder", 400, 200, 10000, False, True),
    ("(b) decoder dx", 400, 10000, 200, False, False),
    ("(b) decoder dW", 10000, 400, 200, True, False),
    ("medium step dh", 20, 2600, 650, False, False),
    ("medium input projection", 700, 650, 2600, False, True),
    ("large step", 64, 1024, 4096, False, True),
    ("large decoder", 2240, 1024, 10000, False, True),
    ("large decoder dW", 10000, 2240, 1024, True, False),
]


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
    ours = {name: [] for name, *_ in SHAPES}
    theirs = {name: [] for name, *_ in SHAPES}
    for _ in range(args.rounds):
        lines = subprocess.run([BINARY], check=True, capture_output=True, text=True).stdout.splitlines()
        for line in lines:
            row = json.loads(line)
            ours[row["shape"]].append(row["gflops"])
        for name, m, k, n, lhs_t, rhs_t in SHAPES:
            theirs[name].append(torch_gflops(m, k, n, lhs_t, rhs_t))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} alternating rounds, medians")
    print("| product | m x k x n | seqmodels GFLOP/s | torch.matmul GFLOP/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for name, m, k, n, *_ in SHAPES:
        a, b = statistics.median(ours[name]), statistics.median(theirs[name])
        print(f"| {name} | {m} x {k} x {n} | {a:.0f} | {b:.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
