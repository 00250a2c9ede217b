"""PackedBitLinear and `pack(model)`: run BitLinear layers from packed 1-bit / ternary codes.

`pack(model)` swaps, in place, every BitLinear whose config has

    weights      ternary, binary, sign or int8 codes, scaled per tensor or per output channel, and
    activations  int8 (per-token absmax: bitnet, bitnet-b1.58) or binary (xnor)

for a PackedBitLinear that holds the codes in a packed storage format (`bitscale.kernels.formats`), the
float32 scale, the layer's RMSNorm gain and bias, and computes

    y = packed_linear(RMSNorm(x), codes, scale) + b       (bitscale.kernels.ops.packed_linear)

i.e. Q_a(x) @ codes^T in integers, times the activation scale^-1 and the weight scale: the fake-quant
forward of BitLinear up to float rounding. int8 weights (a W8A8 output head, say) run through the same
int8 kernels at 8 bits per weight. Other layers are left alone: fp32 / int2-4 weights (no kernel),
full-precision, int4 or atom activations, and group-wise scales; `unpackable_reason` says why for a given
layer.

`save_packed_model(model, path)` writes a packed model to one packed file (`bitscale.kernels.packfile`);
`load_packed_model(path, skeleton)` fills a model skeleton, with the packed layers constructed directly
from their packed bytes: built on the meta device, the skeleton never allocates a full-precision weight
of a packed layer. Which skeleton a file describes is known above this layer (`bitscale.runs.load_packed`).

The kernel modules (and numba behind them) are imported on first use, not when bitscale.nn is imported.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
import torch.nn as nn
from torch import Tensor

from ..quant import QuantConfig, resolve_config
from .bitlinear import BitLinear

PACKABLE_WEIGHTS = ("ternary", "binary", "sign", "int8")
PACKABLE_ACTS = ("int8", "binary")
PACKABLE_GRANULARITIES = ("tensor", "channel")


def _ops():
    return importlib.import_module("bitscale.kernels.ops")


def _formats():
    return importlib.import_module("bitscale.kernels.formats")


def config_reason(config: QuantConfig) -> "str | None":
    """Why a BitLinear with `config` cannot be packed, or None if it can."""
    if config.weight not in PACKABLE_WEIGHTS:
        return f"weight scheme {config.weight!r} (packed kernels take ternary, binary, sign or int8 weights)"
    if config.act not in PACKABLE_ACTS:
        return f"activation scheme {config.act!r} (packed kernels take int8 or binary activations)"
    if config.granularity not in PACKABLE_GRANULARITIES:
        return f"granularity {config.granularity!r} (packed kernels take per-tensor or per-channel scales)"
    return None


def unpackable_reason(module: nn.Module) -> "str | None":
    """Why `pack` leaves `module` as it is, or None if it packs it."""
    if isinstance(module, PackedBitLinear):
        return "already packed"
    if not isinstance(module, BitLinear):
        return f"not a BitLinear ({type(module).__name__})"
    if module.weight.is_meta:
        return "weight on the meta device"
    return config_reason(module.config)


class PackedBitLinear(nn.Module):
    """A BitLinear's inference forward from packed codes.

    Buffers: `packed` (uint8, (out, row_bytes), in `format`) and `scale` (float32, () or (out,));
    `norm` (nn.RMSNorm, when the BitLinear had one) and `bias` are kept in full precision. The kernel's
    own weight layout (`kernel_weights`, a bitscale.kernels.KernelWeights) is prepared from the packed
    bytes on first use and rebuilt after a move or a state-dict load. Inference only (no gradients).
    """

    def __init__(
        self,
        packed,
        config: "str | QuantConfig | dict",
        *,
        norm_weight: Tensor | None = None,
        norm_eps: float = 1e-6,
        bias: Tensor | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.config = resolve_config(config)
        reason = config_reason(self.config)
        if reason is not None:
            raise ValueError(f"PackedBitLinear: cannot pack {reason}")
        self.out_features, self.in_features = packed.shape
        self.format = packed.format
        self.kind = packed.kind
        self.backend = backend
        self.register_buffer("packed", packed.data)
        self.register_buffer("scale", packed.scale)
        self.norm: nn.RMSNorm | None = None
        if norm_weight is not None:
            self.norm = nn.RMSNorm(self.in_features, eps=norm_eps, device="meta")
            self.norm.weight = nn.Parameter(norm_weight.detach(), requires_grad=False)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach(), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self._kernel = self._prepared = None

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_bitlinear(cls, layer: BitLinear, fmt: "str | None" = None, backend: str = "auto") -> "PackedBitLinear":
        """Quantize `layer`'s latent weight with its own config and pack the codes (format `fmt`, default
        `ternary-b3` for ternary, `binary` for binary / sign, `int8` for int8). Raises ValueError when it
        cannot be packed."""
        from ..quant import quantize_weight

        reason = unpackable_reason(layer)
        if reason is not None:
            raise ValueError(f"PackedBitLinear.from_bitlinear: cannot pack {reason}")
        c = layer.config
        with torch.no_grad():
            q = quantize_weight(layer.weight.detach().float(), c.weight, c.granularity, c.group_size, c.center, c.eps)
        packed = _formats().pack_quantized(q, fmt if fmt is not None and q.scheme == "ternary" else None)
        norm = layer.norm
        return cls(
            packed,
            c,
            norm_weight=None if norm is None else norm.weight.detach().clone(),
            norm_eps=1e-6 if norm is None or norm.eps is None else float(norm.eps),
            bias=None if layer.bias is None else layer.bias.detach().clone(),
            backend=backend,
        )

    def packed_weight(self):
        """The layer's codes as a `bitscale.kernels.formats.PackedWeight` (sharing the buffers)."""
        return _formats().PackedWeight(self.packed, (self.out_features, self.in_features), self.scale, self.format)

    # -- the kernel's weights ------------------------------------------------------------------------

    @property
    def kernel_weights(self):
        """The KernelWeights of `bitscale.kernels.ops.prepare_weights`, built once from the packed bytes."""
        if self._kernel is None:
            codes = self.packed_weight().unpack().to(self.packed.device)
            self._kernel = _ops().prepare_weights(codes, self.kind)
        return self._kernel

    def prepare(self) -> "PackedBitLinear":
        """Build the kernel weights and the prepared forward now (otherwise the first forward does)."""
        _ = self.prepared
        return self

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.scale.dtype != torch.float32:  # .half() and friends: the scale stays float32
            self.scale = self.scale.float()
        self._kernel = self._prepared = None
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._kernel = self._prepared = None

    # -- forward -------------------------------------------------------------------------------------

    @property
    def prepared(self):
        """The forward with everything but x converted once (`bitscale.kernels.ops.PreparedLinear`): the
        norm, the kernel weights, the scale and the bias; rebuilt after a move or a state-dict load."""
        if self._prepared is None:
            norm = self.norm
            self._prepared = _ops().prepare_linear(
                self.kernel_weights, self.scale, act=self.config.act, eps=self.config.eps,
                norm_weight=None if norm is None else norm.weight.detach(),
                norm_eps=1e-6 if norm is None or norm.eps is None else float(norm.eps),
                bias=None if self.bias is None else self.bias.detach(), backend=self.backend,
            )
        return self._prepared

    def forward(self, x: Tensor) -> Tensor:
        return self.prepared(x)

    @property
    def nbytes(self) -> int:
        """Stored bytes of the packed codes and scale (norm and bias not included)."""
        return self.packed.numel() + self.scale.numel() * self.scale.element_size()

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight, scales included."""
        return 8 * self.nbytes / (self.out_features * self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"format={self.format}, config={self.config.label}"
        )


def pack(
    model: nn.Module,
    ternary_format: str = "ternary-b3",
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    backend: str = "auto",
) -> nn.Module:
    """Replace every packable BitLinear in `model` (including the model itself) by a PackedBitLinear,
    in place (torchao style, like `quantize_`); returns the model.

    Args:
        ternary_format: storage of ternary codes, `ternary-b3` (1.6 bits) or `ternary2` (2 bits); binary
            and sign codes use `binary` (1 bit).
        filter_fn: `filter_fn(module, fully_qualified_name) -> bool` selects the layers (default: all).
        backend: passed to `packed_linear` by every packed layer.

    Layers `unpackable_reason` rejects (fp32 or int2/3/4 weights, fp32 / int4 / atom activations, group
    scales) stay as they are. The model is switched to eval mode: packed layers are inference only.
    """
    if ternary_format not in ("ternary-b3", "ternary2"):
        raise ValueError(f"pack: ternary_format must be 'ternary-b3' or 'ternary2', got {ternary_format!r}")
    swapped: dict[int, nn.Module] = {}

    def convert(module: nn.Module, name: str) -> nn.Module:
        if id(module) in swapped:
            return swapped[id(module)]
        if isinstance(module, BitLinear) and unpackable_reason(module) is None and (filter_fn is None or filter_fn(module, name)):
            new = PackedBitLinear.from_bitlinear(module, ternary_format, backend)
            swapped[id(module)] = new
            return new
        for child_name, child in list(module._modules.items()):
            if child is None:
                continue
            new = convert(child, f"{name}.{child_name}" if name else child_name)
            if new is not child:
                setattr(module, child_name, new)
        return module

    model = convert(model, "")
    return model.eval()


def packed_layers(model: nn.Module) -> dict[str, PackedBitLinear]:
    """name -> PackedBitLinear, each layer once."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PackedBitLinear)}


def skipped_layers(model: nn.Module) -> dict[str, str]:
    """name -> reason, for every BitLinear that `pack` leaves in full precision."""
    return {name: unpackable_reason(m) or "" for name, m in model.named_modules() if isinstance(m, BitLinear)}


def save_packed_model(model: nn.Module, path, *, spec: "dict[str, Any] | None" = None):
    """Write a packed model (after `pack(model)`) to the packed file `path`: the packed layers' codes and
    scales, every other state_dict tensor as is, and `spec`: the metadata that rebuilds the model
    (`bitscale.runs.load_packed`). It defaults to the model's own `packed_spec()` when it has one (a
    Decoder does: {"kind": "decoder", "config": ...}), else to none."""
    from ..kernels.packfile import save_packed

    layers = packed_layers(model)
    if not layers:
        raise ValueError("save_packed_model: the model has no PackedBitLinear layer; call pack(model) first")
    if spec is None and callable(getattr(model, "packed_spec", None)):
        spec = model.packed_spec()
    claimed = set()
    packed, attrs = {}, {}
    for name, layer in layers.items():
        packed[name] = layer.packed_weight()
        attrs[name] = {
            "config": layer.config.model_dump(mode="json"),
            "norm": layer.norm is not None,
            "norm_eps": None if layer.norm is None else layer.norm.eps,
            "bias": layer.bias is not None,
        }
        claimed.update((f"{name}.packed", f"{name}.scale"))
    tensors = {k: v for k, v in model.state_dict().items() if k not in claimed}
    return save_packed(path, packed, tensors, metadata=spec or {}, layer_attrs=attrs)


def load_packed_model(path, model: nn.Module, *, backend: str = "auto") -> nn.Module:
    """Load a packed file written by `save_packed_model` (every tensor verified first, see
    `bitscale.kernels.packfile.load_packed`) into `model`, returned in eval mode on the CPU.

    `model` is the skeleton to fill, ideally built on the meta device; `bitscale.runs.load_packed(path)`
    builds it from the file's metadata. The packed layers are built from their packed bytes; the
    full-precision tensors are assigned from the file, and a module's non-persistent buffers are its own
    to rebuild (a Decoder rebuilds its RoPE tables when its state is loaded).
    """
    from ..kernels.formats import PackedWeight
    from ..kernels.packfile import PackedFileError, load_packed

    if model is None:
        raise ValueError("load_packed_model: pass the model skeleton to fill; "
                         "bitscale.runs.load_packed(path) rebuilds it from the file's metadata")
    pf = load_packed(path)
    state: dict[str, Tensor] = dict(pf.tensors)
    for name, pw in pf.layers.items():
        attrs = pf.layer_attrs.get(name, {})
        if name == "":
            raise PackedFileError(f"{path}: a packed layer cannot be the whole model")
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise PackedFileError(f"{path}: layer {name!r}: no such module in the model") from None
        # nn.Linear too: a full-precision layer of the skeleton (a Decoder's head) packed as int8.
        if not isinstance(old, (nn.Linear, PackedBitLinear)) or (old.out_features, old.in_features) != pw.shape:
            raise PackedFileError(f"{path}: layer {name!r}: the model has no ({pw.shape[0]}, {pw.shape[1]}) linear layer there")
        try:
            config = QuantConfig.model_validate(attrs.get("config", {}))
            layer = PackedBitLinear(
                PackedWeight(pw.data, pw.shape, pw.scale, pw.format),
                config,
                norm_weight=state.get(f"{name}.norm.weight") if attrs.get("norm") else None,
                norm_eps=attrs.get("norm_eps") or 1e-6,
                bias=state.get(f"{name}.bias") if attrs.get("bias") else None,
                backend=backend,
            )
        except (ValueError, TypeError) as e:
            raise PackedFileError(f"{path}: layer {name!r}: {str(e).splitlines()[0]}") from None
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        state[f"{name}.packed"], state[f"{name}.scale"] = pw.data, pw.scale
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys:
        raise PackedFileError(f"{path}: tensor {result.missing_keys[0]!r}: missing from the file")
    if result.unexpected_keys:
        raise PackedFileError(f"{path}: tensor {result.unexpected_keys[0]!r}: not a tensor of the model")
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in items:
            if t.is_meta:
                raise PackedFileError(f"{path}: {kind} {name!r} is not in the file")
    return model.eval()


__all__ = [
    "PackedBitLinear",
    "load_packed_model",
    "pack",
    "packed_layers",
    "save_packed_model",
    "skipped_layers",
    "unpackable_reason",
]
