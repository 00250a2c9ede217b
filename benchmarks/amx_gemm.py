"""The packed GEMM through AMX int8 tiles against the VNNI kernels and torch bf16, side by side in one run.

    python benchmarks/amx_gemm.py [--shapes 4096x4096 4096x11008 16384x16384] [--batch 64] [--repeats 8]

For each shape (out x in), a ternary `prepare_linear` layer runs on float32 x of `--batch` rows twice,
once with the AMX tiles (`bitscale.kernels.amx`, used from 32 rows up where the CPU has AMX-INT8) and
once with them switched off (the VNNI GEMM), interleaved with torch bf16 `F.linear` on the same shape.
It prints the minimum over the repeats (the first repeat untimed) and the ratios. Both packed paths give
the same exact integers (tests/kernels/test_amx.py); without AMX it says so and exits 0.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from bitscale.kernels import amx, prepare_weights
from bitscale.kernels.ops import prepare_linear


def measure(out_f: int, in_f: int, batch: int, repeats: int) -> dict[str, float]:
    codes = torch.randint(-1, 2, (out_f, in_f), dtype=torch.int8)
    layer = prepare_linear(prepare_weights(codes, "ternary"), torch.tensor(0.02))
    x = torch.randn(batch, in_f)
    xb, wb = x.bfloat16(), torch.randn(out_f, in_f, dtype=torch.bfloat16)
    on = amx.function_for
    times: dict[str, list[float]] = {"amx": [], "vnni": [], "bf16": []}
    try:
        for _ in range(repeats + 1):
            for name in times:
                amx.function_for = (lambda rows: 0) if name == "vnni" else on
                start = time.perf_counter()
                if name == "bf16":
                    F.linear(xb, wb)
                else:
                    layer(x)
                times[name].append(time.perf_counter() - start)
    finally:
        amx.function_for = on
    return {name: 1e3 * min(ts[1:]) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["4096x4096", "4096x11008", "16384x16384"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()
    if amx.address() == 0:
        print("no AMX-INT8 on this host (or switched off): nothing to compare")
        return
    print(f"amx_gemm: batch {args.batch}, ternary, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"min of {args.repeats} interleaved repeats")
    print(f"{'shape':<14}{'amx ms':>9}{'vnni ms':>9}{'bf16 ms':>9}{'vnni/amx':>10}{'bf16/amx':>10}")
    for shape in args.shapes:
        out_f, in_f = (int(v) for v in shape.split("x"))
        t = measure(out_f, in_f, args.batch, args.repeats)
        print(f"{shape:<14}{t['amx']:>9.2f}{t['vnni']:>9.2f}{t['bf16']:>9.2f}"
              f"{t['vnni'] / t['amx']:>9.2f}x{t['bf16'] / t['amx']:>9.2f}x")


if __name__ == "__main__":
    main()
