"""`summary(model)`: parameters, bits per weight, memory and multiply-accumulates, per layer and in total.

For each module that owns parameters or buffers directly:
- parameters: its own parameter count;
- bits/weight: for a BitLinear, the storage bits of its quantized weight from its QuantConfig (code bits
  plus scale overhead, `QuantConfig.bits_per_weight`); 32 for everything held in full precision;
- memory: all of its parameters at fp32 (4 bytes), at bf16 (2 bytes), and "packed" = quantized weights
  at their bits per weight, everything else (biases, norms, embeddings, fp layers) at bf16;
- MACs per token: in_features * out_features for every (Bit)Linear, keyed by precision
  "weight x activation" (e.g. "ternary x int8"); other modules' arithmetic is not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch.nn as nn

from .bitlinear import BitLinear


@dataclass
class LayerSummary:
    name: str
    kind: str
    params: int
    bits_per_weight: float  # of the layer's main weight (32 when it is not quantized)
    bytes_fp32: int
    bytes_bf16: int
    bytes_packed: float
    macs: int  # per token
    precision: str  # "weight x activation"


@dataclass
class ModelSummary:
    layers: list[LayerSummary]
    macs_by_precision: dict[str, int] = field(default_factory=dict)

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
    def bits_per_weight(self) -> float:
        """Average storage bits per parameter of the packed model."""
        return 8 * self.bytes_packed / max(self.params, 1)

    @property
    def macs(self) -> int:
        return sum(self.macs_by_precision.values())

    def __str__(self) -> str:
        head = f"{'layer':<28}{'kind':<12}{'params':>12}{'bits/w':>8}{'fp32':>11}{'bf16':>11}{'packed':>11}{'MACs/tok':>12}  precision"
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(
                f"{r.name[:27]:<28}{r.kind[:11]:<12}{r.params:>12,}{r.bits_per_weight:>8.3f}{_size(r.bytes_fp32):>11}"
                f"{_size(r.bytes_bf16):>11}{_size(r.bytes_packed):>11}{r.macs:>12,}  {r.precision}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'total':<40}{self.params:>12,}{self.bits_per_weight:>8.3f}{_size(self.bytes_fp32):>11}"
            f"{_size(self.bytes_bf16):>11}{_size(self.bytes_packed):>11}{self.macs:>12,}"
        )
        for precision, macs in sorted(self.macs_by_precision.items()):
            lines.append(f"  MACs/token at {precision}: {macs:,}")
        return "\n".join(lines)


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def summary(model: nn.Module) -> ModelSummary:
    """Per-layer and total size and arithmetic of `model` (see the module docstring for definitions)."""
    layers: list[LayerSummary] = []
    macs: Counter[str] = Counter()
    seen: set[int] = set()  # tied parameters are counted once
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if not own:
            continue
        n = sum(p.numel() for p in own)
        bits, packed_bits, layer_macs, precision = 32.0, 16.0 * n, 0, ""
        if isinstance(module, nn.Linear):
            layer_macs = module.in_features * module.out_features
            config = module.config if isinstance(module, BitLinear) else None
            precision = f"{config.weight} x {config.act}" if config else "fp32 x fp32"
            macs[precision] += layer_macs
            if config is not None and config.weight != "fp32" and any(p is module.weight for p in own):
                bits = config.bits_per_weight(tuple(module.weight.shape))
                packed_bits = bits * module.weight.numel() + 16.0 * (n - module.weight.numel())
        layers.append(
            LayerSummary(
                name=name or "(model)",
                kind=type(module).__name__,
                params=n,
                bits_per_weight=bits,
                bytes_fp32=4 * n,
                bytes_bf16=2 * n,
                bytes_packed=packed_bits / 8,
                macs=layer_macs,
                precision=precision,
            )
        )
    return ModelSummary(layers, dict(macs))
