"""`summary(model, example_input=None)`: parameters, bits per weight, memory and multiply-accumulates, per
layer and in total.

For each module that owns parameters or buffers directly:
- parameters: its own parameter count;
- two bits-per-weight figures of the layer's main weight (both from its QuantConfig; 32 for everything held
  in full precision):
  - P, precision bits (`QuantConfig.precision_bits`): information bits, log2 of the code levels (ternary
    log2(3) = 1.585, sign / binary 1), no scale share; the scaling laws' precision variable;
  - storage bits per weight (`QuantConfig.storage_bits_per_weight`): what is stored, from the packed format
    (`bitscale.kernels.formats.bits_per_weight`: ternary-b3 1.6 bits plus float32 scales), the very
    figure `bitscale pack` writes and the store records;
- memory: all of its parameters at fp32 (4 bytes), at bf16 (2 bytes), and "packed" = quantized weights
  at their storage bits per weight, everything else (biases, norms, embeddings, fp layers) at bf16;
- MACs, keyed by precision "weight x activation" (e.g. "ternary x int8"); other modules' arithmetic is
  not counted:
  - per token for every (Bit)Linear: in_features * out_features (`macs_by_precision`, `macs`);
  - for every (Bit)Conv1d / 2d / 3d (`conv_macs_by_precision`, `conv_macs`): a convolution's MACs depend on
    its input's size, so without an example input they are counted per output position,
    out_channels * in_channels / groups * prod(kernel_size); with `example_input` (a batch), they are
    counted per sample: the output positions of every call the forward makes (prod of the output's
    spatial dims, hooks on the conv layers) times the MACs per position. `LayerSummary.macs_per` and
    `ModelSummary.conv_macs_per` say which ("token", "output position" or "sample").
  The weight of a conv layer counts as the 2-D matrix (out_channels, in_channels / groups * prod(kernel))
  its codes pack to, for its storage bits per weight.

In total, `precision_bits` and `storage_bits_per_weight` are weighted over the quantized matrices (as
`bitscale.sweep.accounting` does), and `packed_bits_per_param` is the whole packed model's bits over all
of its parameters.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .bitconv import BIT_CONVS
from .bitlinear import BitLinear

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
MACS_PER_ABBREVIATION = {"token": "tok", "output position": "pos", "sample": "smp"}


@dataclass
class LayerSummary:
    name: str
    kind: str
    params: int
    precision_bits: float  # P of the layer's main weight (32 when it is not quantized)
    storage_bits_per_weight: float  # stored bits per weight of the main weight, scales included (32 if not quantized)
    bytes_fp32: int
    bytes_bf16: int
    bytes_packed: float
    macs: int  # per `macs_per`: per token (linear), per output position or per sample (conv)
    precision: str  # "weight x activation"
    quantized_weights: int = 0  # elements of the quantized main weight (0 when it is not quantized)
    macs_per: str = "token"  # "token" (linear layers), "output position" or "sample" (conv layers)


@dataclass
class ModelSummary:
    layers: list[LayerSummary]
    macs_by_precision: dict[str, int] = field(default_factory=dict)  # linear layers, per token
    conv_macs_by_precision: dict[str, int] = field(default_factory=dict)  # conv layers, per `conv_macs_per`
    conv_macs_per: str = "output position"  # or "sample", when counted from an example input

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def bytes_fp32(self) -> int:
        return sum(layer.bytes_fp32 for layer in self.layers)

    @property
    def bytes_bf16(self) -> int:
        return sum(layer.bytes_bf16 for layer in self.layers)

    @property
    def bytes_packed(self) -> float:
        return sum(layer.bytes_packed for layer in self.layers)

    @property
    def quantized_weights(self) -> int:
        """Weights of the quantized matrices."""
        return sum(layer.quantized_weights for layer in self.layers)

    def _over_quantized(self, attr: str) -> float:
        n = self.quantized_weights
        if n == 0:
            return 32.0
        values = {getattr(layer, attr) for layer in self.layers if layer.quantized_weights}
        if len(values) == 1:  # one figure for every quantized matrix: exactly that one, no rounding
            return values.pop()
        return sum(getattr(layer, attr) * layer.quantized_weights for layer in self.layers) / n

    @property
    def precision_bits(self) -> float:
        """P weighted over the quantized matrices (32 when nothing is quantized)."""
        return self._over_quantized("precision_bits")

    @property
    def storage_bits_per_weight(self) -> float:
        """Storage bits per weight weighted over the quantized matrices, scales included (32 when nothing
        is quantized): what `bitscale pack` reports for the packed layers."""
        return self._over_quantized("storage_bits_per_weight")

    @property
    def packed_bits_per_param(self) -> float:
        """The packed model's bits (quantized weights stored, everything else bf16) per parameter."""
        return 8 * self.bytes_packed / max(self.params, 1)

    @property
    def macs(self) -> int:
        """MACs per token of the linear layers."""
        return sum(self.macs_by_precision.values())

    @property
    def conv_macs(self) -> int:
        """MACs of the conv layers, per `conv_macs_per` (output position, or sample)."""
        return sum(self.conv_macs_by_precision.values())

    def __str__(self) -> str:
        head = (f"{'layer':<28}{'kind':<12}{'params':>12}{'P':>7}{'stored':>8}{'fp32':>11}{'bf16':>11}{'packed':>11}"
                f"{'MACs':>14} {'per':<3}  precision")
        lines = [head, "-" * len(head)]
        for r in self.layers:
            per = MACS_PER_ABBREVIATION.get(r.macs_per, r.macs_per) if r.macs else ""
            lines.append(
                f"{r.name[:27]:<28}{r.kind[:11]:<12}{r.params:>12,}{r.precision_bits:>7.3f}{r.storage_bits_per_weight:>8.3f}"
                f"{_size(r.bytes_fp32):>11}{_size(r.bytes_bf16):>11}{_size(r.bytes_packed):>11}{r.macs:>14,} {per:<3}  {r.precision}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'total':<40}{self.params:>12,}{'':>15}{_size(self.bytes_fp32):>11}"
            f"{_size(self.bytes_bf16):>11}{_size(self.bytes_packed):>11}"
            + (f"{self.macs:>14,} tok" if not self.conv_macs else "")  # one unit, or the lines below
        )
        lines.append("P: precision bits per weight (log2 of the code levels); stored: storage bits per weight (packed "
                     "format, scales included); MACs per tok (token), pos (output position) or smp (sample)")
        if self.quantized_weights:
            lines.append(
                f"quantized matrices: {self.quantized_weights:,} weights at P = {self.precision_bits:.3f} bits, stored at "
                f"{self.storage_bits_per_weight:.3f} bits/weight; whole model packed: {self.packed_bits_per_param:.3f} "
                "bits/param"
            )
        for precision, macs in sorted(self.macs_by_precision.items()):
            lines.append(f"  MACs/token at {precision}: {macs:,}")
        for precision, macs in sorted(self.conv_macs_by_precision.items()):
            lines.append(f"  conv MACs/{self.conv_macs_per} at {precision}: {macs:,}")
        return "\n".join(lines)


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def _conv_positions(model: nn.Module, example_input) -> dict[int, int]:
    """id(conv layer) -> output positions per sample over one forward of `example_input` (summed over the
    layer's calls), counted by forward hooks; the model runs in eval mode under no_grad, its modes restored."""
    positions: Counter[int] = Counter()

    def hook(module, args, output):
        spatial = module.weight.dim() - 2
        positions[id(module)] += math.prod(output.shape[-spatial:])

    convs = {id(m): m for m in model.modules() if isinstance(m, CONVS)}
    handles = [m.register_forward_hook(hook) for m in convs.values()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return dict(positions)


def summary(model: nn.Module, example_input=None) -> ModelSummary:
    """Per-layer and total size and arithmetic of `model` (see the module docstring for definitions).

    `example_input`: a batch for `model` (a tensor, or a tuple of positional arguments). When given, conv
    layers' MACs are counted per sample from one forward pass over it; otherwise per output position.
    """
    layers: list[LayerSummary] = []
    macs: Counter[str] = Counter()
    conv_macs: Counter[str] = Counter()
    positions = None if example_input is None else _conv_positions(model, example_input)
    conv_per = "output position" if positions is None else "sample"
    seen: set[int] = set()  # tied parameters are counted once
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if not own:
            continue
        n = sum(p.numel() for p in own)
        precision_bits = storage_bits = 32.0
        packed_bits, layer_macs, precision, quantized, macs_per = 16.0 * n, 0, "", 0, "token"
        config, matrix = None, None
        if isinstance(module, nn.Linear):
            layer_macs = module.in_features * module.out_features
            config = module.config if isinstance(module, BitLinear) else None
            precision = f"{config.weight} x {config.act}" if config else "fp32 x fp32"
            macs[precision] += layer_macs
            matrix = tuple(module.weight.shape)
        elif isinstance(module, CONVS):
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            layer_macs = module.out_channels * fan_in  # per output position
            if positions is not None:
                layer_macs *= positions.get(id(module), 0)
            macs_per = conv_per
            config = module.config if isinstance(module, BIT_CONVS) else None
            precision = f"{config.weight} x {config.act}" if config else "fp32 x fp32"
            conv_macs[precision] += layer_macs
            matrix = (module.out_channels, fan_in)  # the 2-D matrix its codes pack to
        if config is not None and config.weight != "fp32" and any(p is module.weight for p in own):
            quantized = module.weight.numel()
            precision_bits = config.precision_bits
            storage_bits = config.storage_bits_per_weight(matrix)
            packed_bits = storage_bits * quantized + 16.0 * (n - quantized)
        layers.append(
            LayerSummary(
                name=name or "(model)",
                kind=type(module).__name__,
                params=n,
                precision_bits=precision_bits,
                storage_bits_per_weight=storage_bits,
                bytes_fp32=4 * n,
                bytes_bf16=2 * n,
                bytes_packed=packed_bits / 8,
                macs=layer_macs,
                precision=precision,
                quantized_weights=quantized,
                macs_per=macs_per,
            )
        )
    return ModelSummary(layers, dict(macs), dict(conv_macs), conv_per)
