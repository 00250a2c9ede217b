"""Sweep throughput: the paper's width sweep, run by run against the batched engine, in one process run.

    python benchmarks/sweep_throughput.py [--widths 16 32 ... 2048] [--seeds 8] [--steps 500] [--quick]

The sweep is the demo's (`bitscale.demo`): TwoLayerNet on `sines` with d = 16 inputs on the sphere,
n_train = 256, n_test = 1024, full-batch gradient descent with lr = 1.0 and cosine decay, `paper-1bit` and
`fp32` at every width, `--seeds` seeds each. Per width, the runs are timed two ways, one after the other:

- serial: every run through `bitscale.train.run(config)`, one after another;
- batched: `group_runs` over the width's configs, then `train_batched` per group (here one group per width:
  the 2 x seeds runs differ only in seed and quantizer).

The table reports both times, their ratio, and the largest |final loss difference| between the two paths
(train and test losses): the correctness check, 0 when the batched runs are bit for bit the solo ones.
Torch keeps its default thread count. Target: batched >= 10x serial over the whole sweep.

Where the time goes: at small widths a solo step is mostly per-operation overhead, which batching shares
between the runs of a group. At large widths both paths are bound by the same arithmetic, two products
of n_train x width x d multiply-adds per run and step (the batched path runs the solo BLAS kernels, which
keeps it bit for bit equal), so the ratio falls towards the elementwise and bookkeeping work saved.
The `products` column times those two products alone, R x steps times, beside the two paths: serial
time divided by it bounds the ratio that any batched engine, exact or not, could reach at that width.
The bound is tight at large widths, where each product is big enough to run near the machine's
arithmetic rate, and loose at small ones, where a single product per step is mostly call overhead.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from bitscale.sweep.batched import group_runs, train_batched
from bitscale.train import ModelSpec, RunConfig, TaskSpec, TrainConfig, run

PRECISIONS = ("paper-1bit", "fp32")


def sweep_configs(width: int, seeds: int, steps: int) -> list[RunConfig]:
    task = TaskSpec(function="sines", d=16, n_train=256, n_test=1024, input_dist="sphere")
    return [
        RunConfig(
            model=ModelSpec(width=width, quant=quant),
            task=task,
            train=TrainConfig(lr=1.0, steps=steps, schedule="cosine", seed=seed, eval_every=steps),
        )
        for seed in range(seeds)
        for quant in PRECISIONS
    ]


def time_serial(configs: list[RunConfig]) -> tuple[float, list]:
    start = time.perf_counter()
    results = [run(config)[2] for config in configs]
    return time.perf_counter() - start, results


def time_batched(configs: list[RunConfig]) -> tuple[float, list]:
    start = time.perf_counter()
    results: list = [None] * len(configs)
    for group in group_runs(configs):
        for i, result in zip(group, train_batched([configs[i] for i in group])):
            results[i] = result
    return time.perf_counter() - start, results


def time_products(width: int, runs: int, steps: int) -> float:
    """Seconds for only the two products every training step of every run must compute: the hidden
    pre-activations X W^T and the weight gradient G^T X (n_train x width x d multiply-adds each), with
    no quantizer, nonlinearity, loss, optimizer or bookkeeping. No engine, batched or not, can beat it,
    so serial time / this time bounds the ratio any batched engine could reach at this width."""
    x = torch.randn(256, 16)
    w = torch.randn(width, 16)
    h = torch.empty(256, width)
    g = torch.randn(256, width)
    dw_t = torch.empty(16, width)
    start = time.perf_counter()
    for _ in range(runs * steps):
        torch.mm(x, w.t(), out=h)
        torch.mm(x.t(), g, out=dw_t)  # (G^T X)^T = X^T G: the faster kernel for these shapes
    return time.perf_counter() - start


def max_difference(a: list, b: list) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        for u, v in ((x.final_train_loss, y.final_train_loss), (x.final_test_loss, y.final_test_loss)):
            if math.isnan(u) and math.isnan(v):
                continue
            worst = max(worst, abs(u - v))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per (width, precision)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="a tiny sweep (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.widths, args.seeds, args.steps = [16, 64], 2, 30

    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}")
    sizes = f"{len(args.widths)} widths x {len(PRECISIONS)} precisions x {args.seeds} seeds"
    print(f"TwoLayerNet width sweep: {sizes}, {args.steps} full-batch steps")
    # Warm-up, untimed: first calls pay for lazy initialization in torch.
    warm = sweep_configs(32, 1, 5)
    time_serial(warm)
    time_batched(warm)

    header = f"{'width':>6}{'runs':>6}{'serial s':>11}{'batched s':>11}{'ratio':>8}{'products s':>12}{'bound':>8}{'max |dloss|':>14}"
    print(header)
    total_serial = total_batched = total_products = 0.0
    total_runs, worst = 0, 0.0
    for width in args.widths:
        configs = sweep_configs(width, args.seeds, args.steps)
        t_serial, serial = time_serial(configs)
        t_batched, batched = time_batched(configs)
        t_products = time_products(width, len(configs), args.steps)
        diff = max_difference(serial, batched)
        total_serial, total_batched = total_serial + t_serial, total_batched + t_batched
        total_products += t_products
        total_runs, worst = total_runs + len(configs), max(worst, diff)
        ratio, bound = t_serial / t_batched, t_serial / t_products
        print(
            f"{width:>6}{len(configs):>6}{t_serial:>11.2f}{t_batched:>11.2f}{ratio:>8.1f}"
            f"{t_products:>12.2f}{bound:>8.1f}{diff:>14.2e}"
        )
    print(
        f"{'all':>6}{total_runs:>6}{total_serial:>11.2f}{total_batched:>11.2f}{total_serial / total_batched:>8.1f}"
        f"{total_products:>12.2f}{total_serial / total_products:>8.1f}{worst:>14.2e}"
    )
    print("ratio = serial / batched; bound = serial / products: the most any batched engine could reach")


if __name__ == "__main__":
    main()
