"""Packed kernels: ternary / binary / XNOR CPU kernels against torch fp32 and bf16 F.linear, in one process run.

    python benchmarks/packed_kernels.py [--shapes 4096x4096,...] [--batches 1,64] [--repeat 7] [--json out.json]

Runs `bitscale.kernels.bench` (the same code as `bitscale bench kernels`): numba's first-call cost, the
machine's streaming-read bandwidth (1 GiB), then every shape (out x in) x batch x kernel, interleaved,
median of the repeats. Prints the table, then the targets, each a ratio measured side by side in this run:

- ternary x int8 GEMV 16384x16384, batch 1: >= 70% of the measured bandwidth, >= 10x fp32, >= 5x bf16;
- ternary x int8 GEMM, batch 64: >= 1.5x fp32 (every shape).
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from bitscale.kernels import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4096x4096,4096x11008,11008x4096,16384x16384")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()

    console = Console(width=120)
    result = bench.run_benchmark(bench.parse_shapes(args.shapes), bench.parse_batches(args.batches), args.repeat)
    info = result.machine
    console.print(bench.machine_line(info), highlight=False)
    console.print(bench.render_table(result))

    def row(shape: str, batch: int, kernel: str = "ternary-int8"):
        return next((r for r in result.rows if r.shape == shape and r.batch == batch and r.kernel == kernel), None)

    checks = []
    gemv = row("16384x16384", 1)
    if gemv is not None:
        checks += [
            ("ternary GEMV 16384x16384 >= 70% of bandwidth", gemv.fraction_of_bandwidth, 0.70, f"{100 * gemv.fraction_of_bandwidth:.0f}%"),
            ("ternary GEMV 16384x16384 >= 10x fp32", gemv.speedup_vs_fp32, 10.0, f"{gemv.speedup_vs_fp32:.1f}x"),
            ("ternary GEMV 16384x16384 >= 5x bf16", gemv.speedup_vs_bf16, 5.0, f"{gemv.speedup_vs_bf16:.1f}x"),
        ]
    for r in result.rows:
        if r.kernel == "ternary-int8" and r.batch == 64:
            checks.append((f"ternary GEMM {r.shape} batch 64 >= 1.5x fp32", r.speedup_vs_fp32, 1.5, f"{r.speedup_vs_fp32:.1f}x"))
    console.print("targets:")
    for name, value, target, shown in checks:
        console.print(f"  {'met    ' if value >= target else 'NOT MET'}  {name}: {shown}", highlight=False)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "bandwidth": vars(result.bandwidth), "first_call_s": result.first_call_s,
                       "rows": bench.rows_as_dicts(result)}, f, indent=2)


if __name__ == "__main__":
    main()
