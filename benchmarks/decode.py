"""End-to-end decoding: prefill and decode tokens/s and resident memory of a random ternary decoder,
packed against torch fp32 and bf16, in one run.

    python benchmarks/decode.py [--shape small|2b4t] [--prompt 128] [--new 128] [--threads 2] [--repeats 3]

Shapes: `small` (d_model 1024, 8 layers, 16 heads, SwiGLU 2816, byte vocabulary) and `2b4t`, BitNet b1.58
2B4T's (hidden 2560, FFN 6912, 30 layers, 20 heads, vocabulary 128,256; SwiGLU where 2B4T gates ReLU^2).
Each variant runs in its own process, so that its resident memory is its own; the processes are
interleaved (fp32, bf16, packed, fp32, ...) `--repeats` times and the medians are reported:

- fp32   the dequantized weights Q(W) in fp32, F.linear (`bitscale.nn.quantize.dequantized_copy`)
- bf16   the same in bfloat16
- packed `bitscale.nn.pack`: ternary-b3 weights, int8 activations, the numba kernels

All three decode with the same KV cache loop (`Decoder.step`): one step for the prompt (prefill), then one
token per step, greedy. Reported: prefill tokens/s, decode tokens/s, VmRSS after decoding and the ratios
of the packed model to each baseline. The packed variant builds the fp32 model first and packs it, so its
VmRSS still holds what the allocator kept of the fp32 weights: an upper bound on its own footprint. Target (issue 18): packed decode >= 8x fp32 and >= 4x bf16 at 2b4t.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

SHAPES = {
    "small": dict(vocab_size=256, n_layer=8, n_head=16, d_model=1024, d_ff=2816),
    "2b4t": dict(vocab_size=128256, n_layer=30, n_head=20, d_model=2560, d_ff=6912),
}
VARIANTS = ("fp32", "bf16", "packed")


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run_variant(shape: str, variant: str, prompt: int, new: int, threads: int) -> dict:
    """Build the shape as `variant`, prefill `prompt` tokens and decode `new`; timings and memory."""
    import torch

    from bitscale.models.decoder import Decoder, DecoderConfig
    from bitscale.nn import BitLinear, pack, quantize_
    from bitscale.nn.packed import packed_layers

    torch.set_num_threads(threads)
    cfg = DecoderConfig(**SHAPES[shape], block_size=prompt + new, quant="bitnet-b1.58", tie_weights=False)
    model = Decoder(cfg, seed=0).eval()
    if variant == "packed":
        model = pack(model)
        for layer in packed_layers(model).values():
            layer.prepare()
    else:
        # nn.quantize.dequantized_copy in place: a copy would hold the 2b4t shape's ~10 GB twice.
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, BitLinear):
                    layer.weight.copy_(layer.quantized_weight())
        model = quantize_(model, "fp32").eval()
        if variant == "bf16":
            model = model.to(torch.bfloat16)
    ids = torch.randint(0, cfg.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.step(ids[:, :8], model.new_cache(1))  # first-call costs (kernel compilation, pools) untimed
        cache = model.new_cache(1)
        start = time.perf_counter()
        logits = model.step(ids, cache)
        prefill = time.perf_counter() - start
        token = logits[:, -1:].float().argmax(-1)
        start = time.perf_counter()
        for _ in range(new):
            token = model.step(token, cache)[:, -1:].float().argmax(-1)
        decode = time.perf_counter() - start
    return {"variant": variant, "prefill_tok_s": prompt / prefill, "decode_tok_s": new / decode,
            "rss_bytes": _rss_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="small")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="processes per variant, interleaved; medians reported")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.shape, args.variant, args.prompt, args.new, args.threads)))
        return
    print(f"decode benchmark: shape {args.shape} {SHAPES[args.shape]}, prompt {args.prompt}, new {args.new}, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}")
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for _ in range(args.repeats):  # interleaved (fp32 bf16 packed fp32 ...): noise hits the variants alike
        for variant in args.variants:
            out = subprocess.run([sys.executable, __file__, "--shape", args.shape, "--prompt", str(args.prompt),
                                  "--new", str(args.new), "--threads", str(args.threads), "--variant", variant],
                                 capture_output=True, text=True, check=True)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = {v: {key: statistics.median(r[key] for r in rs) for key in rs[0] if key != "variant"}
            for v, rs in runs.items()}
    print(f"medians of {args.repeats} interleaved runs per variant")
    print(f"{'variant':<8}{'prefill tok/s':>15}{'decode tok/s':>14}{'RSS MiB':>10}")
    for variant, r in rows.items():
        print(f"{variant:<8}{r['prefill_tok_s']:>15.1f}{r['decode_tok_s']:>14.2f}{r['rss_bytes'] / 2**20:>10.0f}")
    p = rows.get("packed")
    for base in ("fp32", "bf16") if p else ():
        if base not in rows:
            continue
        b = rows[base]
        print(f"packed / {base}: prefill {p['prefill_tok_s'] / b['prefill_tok_s']:.2f}x, decode "
              f"{p['decode_tok_s'] / b['decode_tok_s']:.2f}x, memory {p['rss_bytes'] / b['rss_bytes']:.2f}x")


if __name__ == "__main__":
    main()
