"""The cost around the kernel: a PackedBitLinear forward against the bare int8 kernel call, in one run.

    python benchmarks/module_overhead.py [--shapes 4096x4096 11008x4096] [--repeats 300] [--run 10] [--threads 2]

For each shape (out x in), batch 1 (a decode GEMV) with ternary-b3 weights and int8 activations:

- kernel  `bitscale.kernels.cpu.int8_matmul` on activation codes already quantized and padded
- module  `PackedBitLinear(x)` on a float32 input: activation quantization, padding, the kernel, the
          scales and the output tensor, everything a decoder pays per projection

The two are timed in alternating runs of `--run` calls each (kernel x run, module x run, kernel x run,
...), as a decoder calls its projections back to back, and the medians of the per-call times compared.
(Alternating single calls measures something else: each call then pays for the other's allocations and
thread wake-ups.) Target (issue 18): module / kernel <= 1.15 at 4096 x 4096.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bitscale.kernels import cpu, layout
from bitscale.kernels.ops import quantize_activations_int8
from bitscale.nn import BitLinear, PackedBitLinear


def measure(out_features: int, in_features: int, repeats: int, run: int) -> tuple[float, float]:
    """(kernel ms, module ms), medians over `repeats` calls of each in alternating runs of `run` calls."""
    layer = BitLinear(in_features, out_features, bias=False, quant="bitnet-b1.58")
    packed = PackedBitLinear.from_bitlinear(layer).prepare()
    w = packed.kernel_weights
    x = torch.randn(1, in_features)
    codes, _ = quantize_activations_int8(x, packed.config.eps)
    padded = layout.pad_activations(codes, w.kind).numpy()
    weights, bits = w.packed.numpy(), layout.BITS[w.kind]
    kernel, module = [], []
    with torch.no_grad():
        for _ in range(10):  # warm-up: compilation, pools, caches
            cpu.int8_matmul(weights, padded, bits)
            packed(x)
        for _ in range(max(1, repeats // run)):
            for _ in range(run):
                start = time.perf_counter()
                cpu.int8_matmul(weights, padded, bits)
                kernel.append(time.perf_counter() - start)
            for _ in range(run):
                start = time.perf_counter()
                packed(x)
                module.append(time.perf_counter() - start)
    return 1e3 * statistics.median(kernel), 1e3 * statistics.median(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["4096x4096", "11008x4096"])
    parser.add_argument("--repeats", type=int, default=300, help="timed calls of each")
    parser.add_argument("--run", type=int, default=10, help="calls of one kind in a row")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"module overhead: batch 1, ternary-b3, int8 activations, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, median of {args.repeats} calls each "
          f"in alternating runs of {args.run}")
    print(f"{'shape':<12}{'kernel ms':>11}{'module ms':>11}{'module / kernel':>17}")
    for shape in args.shapes:
        out_features, in_features = (int(v) for v in shape.lower().split("x"))
        kernel, module = measure(out_features, in_features, args.repeats, args.run)
        print(f"{shape:<12}{kernel:>11.3f}{module:>11.3f}{module / kernel:>16.2f}x")


if __name__ == "__main__":
    main()
