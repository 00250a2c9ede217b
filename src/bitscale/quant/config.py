"""The quantization registry: `QuantConfig` and its named presets.

Every layer, config file, results row and report names a scheme by one of the preset names below, or
spells out a `QuantConfig`. Bits per weight are derived from the config, never written down by hand, as two
named figures: `precision_bits` (P, information bits: log2 of the code levels, ternary log2(3)) and
`storage_bits_per_weight(shape)` (what is stored: the packed format's bits, scales included, ternary 1.6).

| preset         | weights                                  | activations                  | source              |
|----------------|------------------------------------------|------------------------------|---------------------|
| `fp32`         | full precision                           | full precision               | the twin            |
| `paper-1bit`   | sign(W) in {-1, +1}, no scale            | full precision               | Daliri et al. 2024  |
| `bitnet`       | sign(W - mean W) * mean|W|, per tensor   | int8 per token               | BitNet, 2310.11453  |
| `bitnet-b1.58` | absmean ternary, per tensor              | int8 per token               | BitNet b1.58, 2402.17764 |
| `xnor`         | sign(W) * mean|W| per output channel     | sign(x) * mean|x| per token  | XNOR-Net, 1603.05279 |
| `atom-w4a4`    | int4 absmax, groups of 128               | int4 groups of 128 + 128 int8 outlier channels | Atom, 2310.19102 |
"""

from __future__ import annotations

import importlib
import math
from typing import Literal, Optional

from pydantic import BaseModel, Field, model_validator

from ..limits import MAX_WIDTH, STRICT

from .activations import ACT_SCHEMES
from .ste import STE_NAMES
from .weights import GRANULARITIES, PRECISION_BITS, WEIGHT_SCHEMES

# The names are defined once, next to their implementations; Literal[tuple] spells out the same members.
WeightScheme = Literal[WEIGHT_SCHEMES]  # type: ignore[valid-type]
ActScheme = Literal[ACT_SCHEMES]  # type: ignore[valid-type]
SteRule = Literal[STE_NAMES]  # type: ignore[valid-type]

SIGN_TYPE = ("sign", "binary")


def _formats():
    # The packed formats are the one definition of what a 1-bit / ternary weight takes in storage. They
    # live in bitscale.kernels, a lower layer that quant must not import at module level (kernels imports
    # nothing from bitscale but `atomic`); importing it on first use, as nn/packed.py does, keeps the
    # layering and `import bitscale.quant` light, and leaves a single source for the storage figure.
    return importlib.import_module("bitscale.kernels.formats")


class QuantConfig(BaseModel):
    """How a layer quantizes its weights and activations, and which STE carries gradients back.

    `ste` / `act_ste` left as None pick the defaults: `clipped` for sign-type quantizers (binary weights,
    binary activations; Yin et al. 2019 show the identity STE can fail to descend for them), `identity`
    for rounding quantizers (ternary, int-k), as in the BitNet b1.58 reference code.
    """

    model_config = STRICT

    weight: WeightScheme = "fp32"
    act: ActScheme = "fp32"
    ste: Optional[SteRule] = None
    act_ste: Optional[SteRule] = None
    ste_clip: float = Field(1.0, gt=0)
    granularity: Literal[GRANULARITIES] = "tensor"  # type: ignore[valid-type]
    group_size: int = Field(128, ge=1, le=MAX_WIDTH)
    act_group_size: int = Field(128, ge=1, le=MAX_WIDTH)
    atom_outliers: int = Field(128, ge=0, le=MAX_WIDTH)
    center: bool = True
    norm: bool = False
    scale_bits: int = Field(16, ge=1, le=64)
    eps: float = Field(1e-5, gt=0, le=1.0)

    @model_validator(mode="after")
    def _fill_defaults(self) -> "QuantConfig":
        if self.ste is None:
            object.__setattr__(self, "ste", "clipped" if self.weight in SIGN_TYPE else "identity")
        if self.act_ste is None:
            object.__setattr__(self, "act_ste", "clipped" if self.act == "binary" else "identity")
        return self

    @property
    def is_full_precision(self) -> bool:
        return self.weight == "fp32" and self.act == "fp32"

    @property
    def label(self) -> str:
        """Short precision label, e.g. 'w:ternary a:int8'."""
        return f"w:{self.weight} a:{self.act}"

    def n_scales(self, shape: tuple[int, ...]) -> int:
        """Number of stored weight scales for a weight of `shape` (out, in...)."""
        if self.weight in ("fp32", "sign"):
            return 0
        if self.granularity == "tensor":
            return 1
        n_in = math.prod(shape[1:])
        groups = 1 if self.granularity == "channel" else -(-n_in // self.group_size)
        return shape[0] * groups

    @property
    def precision_bits(self) -> float:
        """P, the information bits of one weight: log2 of the scheme's code levels (`PRECISION_BITS`:
        sign / binary 1, ternary log2(3) = 1.585, int-k k, fp32 32). No scale share: this is the scaling
        laws' precision variable, not a storage figure."""
        return PRECISION_BITS[self.weight]

    @property
    def packed_format(self) -> str | None:
        """The packed storage format (`bitscale.kernels.formats`) the weight codes are stored in: `binary`
        for sign / binary, `ternary-b3` for ternary (its default), `int8` for int8, when the scales are per
        tensor or per channel; None otherwise (fp32, int2/3/4, group scales). This is the weight's storage only: whether a
        packed kernel runs the layer also depends on the activations (`bitscale.nn.packed.config_reason`)."""
        formats = _formats()
        if self.weight not in formats.DEFAULT_FORMAT or self.granularity not in formats.GRANULARITIES:
            return None
        return formats.DEFAULT_FORMAT[self.weight]

    def storage_bits_per_weight(self, shape: tuple[int, ...]) -> float:
        """Bits bitscale stores per weight of a matrix of `shape` (out, in...), scales included.

        - a weight with a packed format: exactly `bitscale.kernels.formats.bits_per_weight` (the packed
          bytes with their row padding, plus the float32 scales): 1.6 + 32 / numel for a ternary matrix
          in `ternary-b3` whose rows are a multiple of 5, 1 + 32 / numel for sign / binary, 8 + 32 / numel
          for int8 per tensor;
        - ternary / binary with group scales (no packed format): the codes in the scheme's default
          format's bytes, plus `scale_bits` per group scale;
        - int2/3/4, and int8 with group scales: k bits per code plus `scale_bits` per scale (no packed format);
        - fp32: 32.
        """
        if self.weight == "fp32":
            return 32.0
        out, n_in = int(shape[0]), math.prod(shape[1:])
        formats = _formats()
        fmt = self.packed_format
        if fmt is not None:
            return formats.bits_per_weight((out, n_in), fmt, self.granularity)
        if self.weight in formats.DEFAULT_FORMAT:
            code_bits = 8 * formats.row_bytes(n_in, formats.DEFAULT_FORMAT[self.weight]) / n_in
        else:
            code_bits = PRECISION_BITS[self.weight]  # int-k: a k-bit code
        return code_bits + self.n_scales(shape) * self.scale_bits / (out * n_in)


PRESETS: dict[str, QuantConfig] = {
    "fp32": QuantConfig(),
    "paper-1bit": QuantConfig(weight="sign"),
    "bitnet": QuantConfig(weight="binary", act="int8"),
    "bitnet-b1.58": QuantConfig(weight="ternary", act="int8"),
    "xnor": QuantConfig(weight="binary", act="binary", granularity="channel", center=False),
    "atom-w4a4": QuantConfig(weight="int4", act="atom", granularity="group", group_size=128),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_config(config: "str | QuantConfig | dict | None") -> QuantConfig:
    """A preset name, a QuantConfig, a dict of QuantConfig fields (optionally with `preset` as a base),
    or None (= fp32) -> QuantConfig."""
    if config is None:
        return PRESETS["fp32"]
    if isinstance(config, QuantConfig):
        return config
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"quant: unknown preset {config!r}; expected one of {', '.join(PRESETS)}")
        return PRESETS[config]
    if isinstance(config, dict):
        fields = dict(config)
        base = fields.pop("preset", None)
        if base is not None:
            # STE defaults are re-derived from the final schemes rather than inherited from the base.
            fields = {**resolve_config(base).model_dump(exclude={"ste", "act_ste"}), **fields}
        return QuantConfig(**fields)
    raise TypeError(f"quant: expected a preset name, QuantConfig or dict, got {type(config).__name__}")


def preset_name(config: QuantConfig) -> str | None:
    """The preset name whose config equals `config`, or None."""
    for name, preset in PRESETS.items():
        if preset == config:
            return name
    return None
