"""LM training throughput: tokens/s of one training step, today's path against the fast path, in one run.

    python benchmarks/lm_throughput.py [--widths 128 256 512] [--quants fp32 bitnet-b1.58 bitnet] [--repeats 7]

Each cell is a decoder of 4 layers at the given d_model (n_head = d_model / 64, SwiGLU, byte vocabulary)
trained on batches of 16 x 128 tokens with the LM recipe's AdamW and clipping, through
`bitscale.train.lm.train_step`, the function `train_lm` calls. Three paths, timed in turn (A B C A B C ...)
so that machine noise hits them alike; the median of the repeats is reported:

- eager     today's CPU path: eager PyTorch, fp32 (`autocast = "auto"` on a CPU, no compile)
- compiled  decoder blocks under torch.compile, fp32: the same numbers up to float summation order
- fast      compiled blocks and bf16 autocast (`autocast = "bf16"`, `compile = true` in a sweep file)

Before the timed repeats each path runs 3 steps (the first compiles; its time is printed separately).
Target (issue 15): bitnet-b1.58 at d_model 256 >= 2x eager tokens/s on the fast path; fp32 at least as
fast as eager.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from bitscale.models.decoder import Decoder, DecoderConfig
from bitscale.train.config import TrainConfig
from bitscale.train.lm import LM_TRAIN_DEFAULTS, decay_groups, train_step
from bitscale.train.optimizers import make_optimizer
from bitscale.train.speed import autocast_context, compile_blocks

PATHS = {"eager": (False, "auto"), "compiled": (True, "auto"), "fast": (True, "bf16")}
BATCH, BLOCK, LAYERS = 16, 128, 4


class Cell:
    """One model and optimizer on one path, with a fixed batch."""

    def __init__(self, width: int, quant: str, compiled: bool, autocast: str) -> None:
        cfg = DecoderConfig(n_layer=LAYERS, d_model=width, n_head=max(1, width // 64), block_size=BLOCK, quant=quant)
        self.model = Decoder(cfg, seed=0)
        if compiled:
            compile_blocks(self.model)
        self.opt = make_optimizer(decay_groups(self.model), TrainConfig(**LM_TRAIN_DEFAULTS))
        self.autocast = autocast_context(autocast, torch.device("cpu"))
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (BATCH, BLOCK), generator=gen)
        self.y = torch.randint(0, 256, (BATCH, BLOCK), generator=gen)

    def step(self) -> float:
        start = time.perf_counter()
        train_step(self.model, self.model, self.opt, self.x, self.y, self.autocast, 1.0)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--quants", nargs="+", default=["fp32", "bitnet-b1.58", "bitnet"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    tokens = BATCH * BLOCK
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"one training step of a {LAYERS}-layer decoder, batch {BATCH} x {BLOCK} tokens, median of {args.repeats}")
    print(f"{'d_model':>7} {'quant':>13} | {'eager tok/s':>11} {'compiled':>9} {'fast':>9} | "
          f"{'compiled/eager':>14} {'fast/eager':>10} | first step (compile) s")
    ratios: dict[tuple[int, str], float] = {}
    for width in args.widths:
        for quant in args.quants:
            cells = {name: Cell(width, quant, *setting) for name, setting in PATHS.items()}
            first = {}
            for name, cell in cells.items():
                first[name] = cell.step()
                cell.step(), cell.step()
            times: dict[str, list[float]] = {name: [] for name in cells}
            for _ in range(args.repeats):
                for name, cell in cells.items():
                    times[name].append(cell.step())
            rate = {name: tokens / statistics.median(t) for name, t in times.items()}
            ratios[(width, quant)] = rate["fast"] / rate["eager"]
            print(f"{width:>7} {quant:>13} | {rate['eager']:>11,.0f} {rate['compiled']:>9,.0f} {rate['fast']:>9,.0f} | "
                  f"{rate['compiled'] / rate['eager']:>13.2f}x {rate['fast'] / rate['eager']:>9.2f}x | "
                  f"{first['compiled']:.1f} / {first['fast']:.1f}")
    if (256, "bitnet-b1.58") in ratios:
        r = ratios[(256, "bitnet-b1.58")]
        print(f"target bitnet-b1.58 d_model 256: fast >= 2x eager: {r:.2f}x -> {'met' if r >= 2 else 'MISSED'}")
    if (256, "fp32") in ratios:
        r = ratios[(256, "fp32")]
        print(f"target fp32 d_model 256: fast >= 1x eager: {r:.2f}x -> {'met' if r >= 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
