"""Conv QAT overhead: one training step (forward + backward) of BitConv2d / BitConv1d against nn.Conv2d /
nn.Conv1d, in one process run.

    python benchmarks/conv_qat.py [--repeats 21] [--batch 64] [--presets bitnet-b1.58 ...] [--quick]

Shapes (fp32, bias-free, padding keeps the size):
- 2-D: 64 -> 64 channels, 3x3 kernel, padding 1, 32x32 inputs, batch 64;
- 1-D: 64 -> 64 channels, kernel 5, padding 2, length 1024, batch 64.

Each step computes the output, a scalar loss (sum) and the backward pass into the input and the weight.
Per shape, the layers are timed in rounds, one step of each per round in a shuffled order (seeded), so
that machine noise and the allocator's state left by the previous step hit them alike. Reported: each
layer's median step time, and the ratio BitConv / nn.Conv as the median over rounds of the round's own
ratio (the two steps of a round run side by side, so a slow stretch of the machine cancels out). The
`fp32` BitConv runs nn.Conv's own code: read its ratio as the noise gauge. The first preset is also
timed with the buffered path off (`buffer_elements = None`): Q_a(x) then is a fresh tensor every step,
saved for the backward pass. `--quick` runs 3 repeats on a quarter of the batch (a smoke test, not a
measurement). Target for `bitnet-b1.58` (ternary weights, int8 activations per position) in 2-D: <= 1.2x.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics

import torch
import torch.nn as nn

from bitscale.nn import BitConv1d, BitConv2d
from qat_overhead import step_time  # one training step's wall time, the same timer as the linear benchmark


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo, as lscpu shows it), else platform's processor or machine."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compare(title: str, dense: nn.Module, bit_cls, presets: list[str], x: torch.Tensor, repeats: int) -> None:
    layers = {type(dense).__name__: dense}

    def twin(preset):
        return bit_cls.from_conv(type(dense)(dense.in_channels, dense.out_channels, dense.kernel_size,
                                             padding=dense.padding, bias=False), preset)

    for preset in presets:
        layers[preset] = twin(preset)
    # The first preset without the buffered path: Q_a(x) a fresh tensor saved for the backward pass.
    unbuffered = layers[f"{presets[0]} unbuffered"] = twin(presets[0])
    unbuffered.buffer_elements = None
    for layer in layers.values():  # warm-up
        step_time(layer, x)
    times: dict[str, list[float]] = {name: [] for name in layers}
    order, shuffle = list(layers), random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name in order:
            times[name].append(step_time(layers[name], x))
    base = times[type(dense).__name__]
    print(f"\n{title}, median of {repeats}")
    print(f"{'layer':<24}{'ms':>10}{'ratio vs nn.Conv':>20}")
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, base))
        print(f"{name:<24}{statistics.median(ts) * 1e3:>10.1f}{ratio:>20.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--presets", nargs="+", default=["bitnet-b1.58", "bitnet", "xnor", "fp32"])
    parser.add_argument("--quick", action="store_true", help="3 repeats at a quarter of the batch (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.batch = 3, max(1, args.batch // 4)

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
    print("one training step (forward + backward) of a bias-free convolution, fp32")
    x2 = torch.randn(args.batch, 64, 32, 32, requires_grad=True)
    compare(f"2-D: 64 -> 64 channels, 3x3, padding 1, 32x32, batch {args.batch}",
            nn.Conv2d(64, 64, 3, padding=1, bias=False), BitConv2d, args.presets, x2, args.repeats)
    x1 = torch.randn(args.batch, 64, 1024, requires_grad=True)
    compare(f"1-D: 64 -> 64 channels, kernel 5, padding 2, length 1024, batch {args.batch}",
            nn.Conv1d(64, 64, 5, padding=2, bias=False), BitConv1d, args.presets, x1, args.repeats)


if __name__ == "__main__":
    main()
