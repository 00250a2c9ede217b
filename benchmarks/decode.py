"""End-to-end decoding: prefill and decode tokens/s and resident memory of a random ternary decoder,
packed against torch fp32 and bf16, in one run.

    python benchmarks/decode.py [--shape small|2b4t] [--prompt 128] [--new 128] [--threads 2] [--repeats 3]
                                [--variants fp32 bf16 packed] [--busy] [--head int8|fp32] [--json out.json]

Runs `bitscale.models.decode_bench` (the same code as `bitscale bench decode`; its docstring says what each
variant is): every variant in its own process, interleaved `--repeats` times, medians reported. `--busy`
keeps one core busy with another process throughout. Target (issue 18): packed decode >= 8x fp32 and
>= 4x bf16 at the 2b4t shape.
"""

from __future__ import annotations

import argparse

from bitscale.atomic import atomic_write_json
from bitscale.models import decode_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(decode_bench.SHAPES), default="small")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="processes per variant, interleaved; medians reported")
    parser.add_argument("--variants", nargs="+", choices=decode_bench.VARIANTS, default=list(decode_bench.VARIANTS))
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process throughout")
    parser.add_argument("--head", choices=decode_bench.HEADS, default="int8", help="the packed variant's head")
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = parser.parse_args()
    result = decode_bench.run_benchmark(args.shape, args.prompt, args.new, args.threads, args.repeats,
                                        tuple(args.variants), args.busy, args.head, on_run=lambda v: print(f"  {v} done", flush=True))
    print(decode_bench.render(result))
    if args.shape == "2b4t" and set(result["packed_over"]) == {"fp32", "bf16"}:
        over = result["packed_over"]
        print(f"target: packed decode >= 8x fp32: {over['fp32']['decode']:.2f}x "
              f"({'met' if over['fp32']['decode'] >= 8 else 'not met'}); >= 4x bf16: {over['bf16']['decode']:.2f}x "
              f"({'met' if over['bf16']['decode'] >= 4 else 'not met'})")
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
