"""QAT overhead: one training step (forward + backward) of BitLinear against nn.Linear, in one process run.

    python benchmarks/qat_overhead.py [--features 1024] [--tokens 8192] [--repeats 15] [--presets bitnet-b1.58]

Both layers see the same input; each step computes the output, a scalar loss (sum) and the backward pass
into the input and the weight. Timings alternate between the layers (A B A B ...) so that machine noise
hits both alike; the median of the repeats is reported with the ratio BitLinear / nn.Linear. The first
preset is also timed with blocking off (`block_elements = None`), the path that holds Q_a(x) whole.
Target for `bitnet-b1.58` at in = out = 1024 on 8192 tokens: <= 1.05x.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn as nn

from bitscale.nn import BitLinear


def step_time(layer: nn.Module, x: torch.Tensor) -> float:
    x.grad = None
    layer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    layer(x).sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--presets", nargs="+", default=["bitnet-b1.58", "bitnet", "paper-1bit"])
    args = parser.parse_args()

    torch.manual_seed(0)
    n = args.features
    x = torch.randn(args.tokens, n, requires_grad=True)
    dense = nn.Linear(n, n, bias=False)
    layers = {"nn.Linear": dense}
    for preset in args.presets:
        layers[preset] = BitLinear.from_linear(nn.Linear(n, n, bias=False), preset)
    # The same layer without blocked activation quantization: what the blocked path buys.
    unblocked = BitLinear.from_linear(nn.Linear(n, n, bias=False), args.presets[0])
    unblocked.block_elements = None
    layers[f"{args.presets[0]} unblocked"] = unblocked

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"one training step (forward + backward), in = out = {n}, {args.tokens} tokens, median of {args.repeats}")
    for layer in layers.values():  # warm-up
        step_time(layer, x)
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(args.repeats):
        for name, layer in layers.items():
            times[name].append(step_time(layer, x))
    base = statistics.median(times["nn.Linear"])
    print(f"{'layer':<24}{'ms':>10}{'ratio vs nn.Linear':>22}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<24}{t * 1e3:>10.1f}{t / base:>22.3f}")


if __name__ == "__main__":
    main()
