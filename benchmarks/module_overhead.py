"""The cost around the kernel: a PackedBitLinear forward against the bare int8 kernel call, in one run.

    python benchmarks/module_overhead.py [--shapes 4096x4096 11008x4096] [--repeats 300] [--run 10] [--threads 2]

For each shape (out x in), batch 1 (a decode GEMV) with ternary-b3 weights and int8 activations:

- kernel  `bitscale.kernels.cpu.int8_matmul` on activation codes already quantized and padded
- module  `PackedBitLinear(x)` on a float32 input: activation quantization, padding, the kernel, the
          scales and the output tensor, everything a decoder pays per projection

Then a whole decode step: a random packed decoder (`--decoder`, default d_model 1024 x 8 layers, 16
heads, SwiGLU 2816, byte vocabulary, W8A8 head, 128 cached positions) through `Decoder.step` (the numba
engine of `bitscale.models.fast_decode`: norms, RoPE, attention, SwiGLU, head and sampling's argmax), against its
projections alone: every block's seven bare kernel calls on pre-quantized codes, back to back. The step /
kernels ratio is what a decode step pays beyond its block GEMVs: the head, the attention's read of the
fp32 KV cache (8 MB at this size and position, a third of the weights' 26 MB), the vector work and the
calls around them.

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


def measure_step(n_layer: int, d_model: int, repeats: int) -> tuple[float, float]:
    """(kernels ms, step ms): the bare kernels of one decode step back to back, and the step itself."""
    from bitscale.models.decoder import Decoder, DecoderConfig
    from bitscale.nn import pack, quantize_
    from bitscale.nn.packed import packed_layers

    cfg = DecoderConfig(vocab_size=256, n_layer=n_layer, n_head=d_model // 64, d_model=d_model, block_size=256,
                        quant="bitnet-b1.58")
    model = Decoder(cfg, seed=0).eval()
    # The head W8A8, as `bitscale bench decode` runs it: a torch F.linear head would wake torch's thread
    # pool on every step, and its spinning workers would stall the next step's numba regions.
    quantize_(model, {"weight": "int8", "act": "int8", "granularity": "channel"}, filter_fn=lambda m, n: n == "head")
    model = pack(model)
    calls = []
    for layer in packed_layers(model).values():
        if layer.out_features == cfg.vocab_size:
            continue  # the head is not a block projection
        w = layer.prepare().kernel_weights
        x = torch.randn(1, w.in_features)
        padded = layout.pad_activations(quantize_activations_int8(x, layer.config.eps)[0], w.kind).numpy()
        calls.append((w.packed.numpy(), padded, layout.BITS[w.kind]))
    kernels, steps = [], []
    with torch.no_grad():
        cache = model.new_cache(1)
        model.step(torch.zeros(1, 128, dtype=torch.long), cache)  # 128 cached positions
        token = torch.zeros(1, 1, dtype=torch.long)
        for i in range(repeats + 3):
            start = time.perf_counter()
            for weights, padded, bits in calls:
                cpu.int8_matmul(weights, padded, bits)
            elapsed_kernels = time.perf_counter() - start
            cache.length = 128  # every step at the same position
            start = time.perf_counter()
            model.step(token, cache)[:, -1].argmax(-1)
            elapsed_step = time.perf_counter() - start
            if i >= 3:  # warm-up: compilation, the thread chooser's first probes
                kernels.append(elapsed_kernels)
                steps.append(elapsed_step)
    return 1e3 * statistics.median(kernels), 1e3 * statistics.median(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["4096x4096", "11008x4096"])
    parser.add_argument("--repeats", type=int, default=300, help="timed calls of each")
    parser.add_argument("--run", type=int, default=10, help="calls of one kind in a row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decoder", default="8x1024", help="LAYERSxD_MODEL of the decode-step comparison")
    parser.add_argument("--steps", type=int, default=30, help="timed decode steps")
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
    n_layer, d_model = (int(v) for v in args.decoder.lower().split("x"))
    kernels, step = measure_step(n_layer, d_model, args.steps)
    print(f"decode step, {n_layer} layers x d_model {d_model}, position 128, median of {args.steps}: "
          f"bare kernels {kernels:.3f} ms, step {step:.3f} ms, step / kernels {step / kernels:.2f}x")


if __name__ == "__main__":
    main()
