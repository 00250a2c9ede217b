"""End-to-end decoding benchmark: prefill and decode tokens/s and resident memory of a random ternary
decoder, packed against torch fp32 and bf16, in one run (`bitscale bench decode`, benchmarks/decode.py).

Shapes: `tiny` (d_model 128, 2 layers: a smoke test of the harness), `small` (d_model 1024, 8 layers, 16 heads, SwiGLU 2816, byte vocabulary) and `2b4t`, BitNet b1.58
2B4T's (hidden 2560, FFN 6912, 30 layers, 20 heads, vocabulary 128,256; SwiGLU where 2B4T gates ReLU^2,
the same three FFN matrices). Variants, each built from the same seed:

- fp32    the dequantized weights Q(W) in fp32 through F.linear (`bitscale.nn.quantize.dequantize_`, in
          place: `dequantized_copy` would hold the 2b4t shape's 10 GB twice)
- bf16    the same cast to bfloat16
- packed  `bitscale.nn.pack`: ternary-b3 weights, int8 activations; a decode step runs every block in one
          numba call (`bitscale.models.fast_decode`). The head is quantized W8A8 (int8 codes per output
          row, int8 activations; `head="int8"`, the default, as llama.cpp's 8-bit output tensors) or kept
          in fp32 (`head="fp32"`); the embedding stays fp32 (one row is read per token)

Every variant runs in its own process, so that its resident memory is its own, and the processes are
interleaved (fp32, bf16, packed, fp32, ...) `repeats` times; the medians are reported. Each prefills the
prompt in one `Decoder.step` and then decodes greedily, one token per step, with the KV cache. `busy`
runs a process that spins on one core for the whole benchmark: the case of a laptop that is never idle.
The packed process builds the fp32 model first and packs it, so its VmRSS still holds what the allocator
kept of the fp32 weights: an upper bound on its own footprint.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

SHAPES = {
    "tiny": dict(vocab_size=256, n_layer=2, n_head=2, d_model=128, d_ff=352),  # a smoke test of the harness
    "small": dict(vocab_size=256, n_layer=8, n_head=16, d_model=1024, d_ff=2816),
    "2b4t": dict(vocab_size=128256, n_layer=30, n_head=20, d_model=2560, d_ff=6912),
}
VARIANTS = ("fp32", "bf16", "packed")
HEADS = ("int8", "fp32")  # the packed variant's output head
_BYTES_PER_PARAM = {"fp32": 4, "bf16": 6, "packed": 4}  # the fp32 model is built first in every variant


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def n_params(shape: str) -> int:
    """Parameters of the shape's Decoder (untied embedding and head, SwiGLU)."""
    s = SHAPES[shape]
    d, f, n = s["d_model"], s["d_ff"], s["n_layer"]
    return 2 * s["vocab_size"] * d + n * (4 * d * d + 3 * d * f + 6 * d + f) + d  # norms: a gain per BitLinear input


def memory_needed(shape: str, variant: str) -> int:
    """Bytes a variant's process needs at its peak (the fp32 build, plus the bf16 copy for bf16)."""
    return _BYTES_PER_PARAM[variant] * n_params(shape)


def run_variant(shape: str, variant: str, prompt: int, new: int, threads: int, head: str = "int8") -> dict:
    """Build the shape as `variant`, prefill `prompt` tokens and decode `new` greedily; timings and memory."""
    import torch

    from ..nn import pack, quantize_
    from ..nn.quantize import dequantize_
    from ..nn.packed import packed_layers
    from . import fast_decode
    from .decoder import Decoder, DecoderConfig

    torch.set_num_threads(threads)
    cfg = DecoderConfig(**SHAPES[shape], block_size=prompt + new, quant="bitnet-b1.58", tie_weights=False)
    model = Decoder(cfg, seed=0).eval()
    if variant == "packed":
        if head == "int8":
            w8a8 = {"weight": "int8", "act": "int8", "granularity": "channel"}
            quantize_(model, w8a8, filter_fn=lambda module, name: name == "head")
        model = pack(model)
        for layer in packed_layers(model).values():
            layer.prepare()
    else:
        model = dequantize_(model)  # in place: a copy would hold the 2b4t shape's 10 GB twice
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
    engine = variant == "packed" and fast_decode.unfit_reason(model) is None
    return {"variant": variant, "prefill_tok_s": prompt / prefill, "decode_tok_s": new / decode,
            "rss_bytes": _rss_bytes(), "engine": engine}


def _spinner() -> subprocess.Popen:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_benchmark(shape: str, prompt: int, new: int, threads: int, repeats: int, variants=VARIANTS,
                  busy: bool = False, head: str = "int8", on_run: "Callable[[str], None] | None" = None) -> dict:
    """Run every variant `repeats` times, interleaved, each in a fresh process; medians per variant."""
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    spinner = _spinner() if busy else None
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for _ in range(repeats):
            for variant in variants:
                done = subprocess.run(
                    [sys.executable, "-m", "bitscale.models.decode_bench", shape, variant, str(prompt), str(new),
                     str(threads), head],
                    capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    raise RuntimeError(f"the {variant} run failed: {last}")
                runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
                if on_run is not None:
                    on_run(variant)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    rows = {v: {key: statistics.median(r[key] for r in rs) for key in ("prefill_tok_s", "decode_tok_s", "rss_bytes")}
            for v, rs in runs.items()}
    for v, rs in runs.items():
        rows[v]["engine"] = all(r["engine"] for r in rs)
    ratios = {}
    if "packed" in rows:
        p = rows["packed"]
        for base in ("fp32", "bf16"):
            if base in rows:
                b = rows[base]
                ratios[base] = {"prefill": p["prefill_tok_s"] / b["prefill_tok_s"],
                                "decode": p["decode_tok_s"] / b["decode_tok_s"],
                                "memory": p["rss_bytes"] / b["rss_bytes"]}
    return {"shape": shape, "config": SHAPES[shape], "prompt": prompt, "new": new, "threads": threads,
            "repeats": repeats, "busy": busy, "head": head, "rows": rows, "packed_over": ratios}


def render(result: dict) -> str:
    """The result as the plain-text table the benchmark prints."""
    lines = [f"decode benchmark: shape {result['shape']} {result['config']}, prompt {result['prompt']}, "
             f"new {result['new']}, {result['threads']} threads"
             + (", one core kept busy by another process" if result["busy"] else "")
             + f", packed head {result['head']}"
             + f"; medians of {result['repeats']} interleaved runs per variant",
             f"{'variant':<8}{'prefill tok/s':>15}{'decode tok/s':>14}{'VmRSS MiB':>11}"]
    for variant, r in result["rows"].items():
        lines.append(f"{variant:<8}{r['prefill_tok_s']:>15.1f}{r['decode_tok_s']:>14.2f}{r['rss_bytes'] / 2**20:>11.0f}")
    for base, q in result["packed_over"].items():
        lines.append(f"packed / {base}: prefill {q['prefill']:.2f}x, decode {q['decode']:.2f}x, memory {q['memory']:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":  # one variant's process: python -m bitscale.models.decode_bench SHAPE VARIANT PROMPT NEW THREADS HEAD
    shape_arg, variant_arg, prompt_arg, new_arg, threads_arg = sys.argv[1:6]
    head_arg = sys.argv[6] if len(sys.argv) > 6 else "int8"
    print(json.dumps(run_variant(shape_arg, variant_arg, int(prompt_arg), int(new_arg), int(threads_arg), head_arg)))
