"""PackedBitLinear, PackedBitConv and `pack(model)`: run BitLinear and BitConv layers from packed 1-bit /
ternary codes.

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

BitConv1d / BitConv2d layers with the same configs become PackedBitConv: the codes of the flattened
(out_channels, C_in / groups * prod(kernel_size)) weight in the same formats, and a forward of one integer
GEMM per kernel offset on activation codes quantized once per position (see PackedBitConv). groups > 1
is supported (the channels are split per group). In a packed file a conv layer's entry is its 2-D code
matrix, and its geometry (kernel_size, stride, padding, dilation, groups, padding_mode) is in the
layer's attributes.

`save_packed_model(model, path)` writes a packed model to one packed file (`bitscale.kernels.packfile`);
`load_packed_model(path, skeleton)` fills a model skeleton, with the packed layers constructed directly
from their packed bytes: built on the meta device, the skeleton never allocates a full-precision weight
of a packed layer. Which skeleton a file describes is known above this layer (`bitscale.runs.load_packed`).

The kernel modules (and numba behind them) are imported on first use, not when bitscale.nn is imported.
"""

from __future__ import annotations

import importlib
import itertools
import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..quant import QuantConfig, resolve_config
from .bitconv import BIT_CONVS, check_conv_args, check_conv_input, pad_amounts
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
    if isinstance(module, (PackedBitLinear, PackedBitConv)):
        return "already packed"
    if not isinstance(module, (BitLinear, *BIT_CONVS)):
        return f"not a BitLinear or BitConv ({type(module).__name__})"
    if module.weight.is_meta:
        return "weight on the meta device"
    return config_reason(module.config)


class _PackedCodes(nn.Module):
    """What PackedBitLinear and PackedBitConv share: the `packed` codes and float32 `scale` buffers of a
    2-D (out_features, in_features) code matrix, the full-precision RMSNorm gain and bias, the caches
    built from them (`_CACHES`, cleared after a move or a state-dict load) and the stored size."""

    _CACHES: tuple[str, ...] = ()

    def _init_codes(self, packed, config, n_norm: int, norm_weight: Tensor | None, norm_eps: float,
                    bias: Tensor | None, backend: str) -> None:
        self.config = resolve_config(config)
        reason = config_reason(self.config)
        if reason is not None:
            raise ValueError(f"{type(self).__name__}: cannot pack {reason}")
        self.out_features, self.in_features = packed.shape
        self.format, self.kind, self.backend = packed.format, packed.kind, backend
        self.register_buffer("packed", packed.data)
        self.register_buffer("scale", packed.scale)
        self.norm: nn.RMSNorm | None = None
        if norm_weight is not None:
            self.norm = nn.RMSNorm(n_norm, eps=norm_eps, device="meta")
            self.norm.weight = nn.Parameter(norm_weight.detach(), requires_grad=False)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach(), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self._clear_caches()

    @staticmethod
    def _packed_parts(layer: nn.Module, fmt: "str | None") -> dict[str, Any]:
        """`layer`'s latent weight quantized with its own config and packed (format `fmt`, default
        `ternary-b3` for ternary, `binary` for binary / sign, `int8` for int8), with copies of its norm
        gain and bias: the constructor's keyword arguments."""
        from ..quant import quantize_weight

        c = layer.config
        with torch.no_grad():
            q = quantize_weight(layer.weight.detach().float(), c.weight, c.granularity, c.group_size, c.center, c.eps)
        norm = layer.norm
        return dict(
            packed=_formats().pack_quantized(q, fmt if fmt is not None and q.scheme == "ternary" else None),
            config=c,
            norm_weight=None if norm is None else norm.weight.detach().clone(),
            norm_eps=1e-6 if norm is None or norm.eps is None else float(norm.eps),
            bias=None if layer.bias is None else layer.bias.detach().clone(),
        )

    def packed_weight(self):
        """The layer's codes as a `bitscale.kernels.formats.PackedWeight` (out, in), sharing the buffers."""
        return _formats().PackedWeight(self.packed, (self.out_features, self.in_features), self.scale, self.format)

    def _clear_caches(self) -> None:
        for name in self._CACHES:
            setattr(self, name, None)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.scale.dtype != torch.float32:  # .half() and friends: the scale stays float32
            self.scale = self.scale.float()
        self._clear_caches()
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._clear_caches()

    @property
    def nbytes(self) -> int:
        """Stored bytes of the packed codes and scale (norm and bias not included)."""
        return self.packed.numel() + self.scale.numel() * self.scale.element_size()

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight, scales included."""
        return 8 * self.nbytes / (self.out_features * self.in_features)


class PackedBitLinear(_PackedCodes):
    """A BitLinear's inference forward from packed codes.

    Buffers: `packed` (uint8, (out, row_bytes), in `format`) and `scale` (float32, () or (out,));
    `norm` (nn.RMSNorm, when the BitLinear had one) and `bias` are kept in full precision. The kernel's
    own weight layout (`kernel_weights`, a bitscale.kernels.KernelWeights) is prepared from the packed
    bytes on first use and rebuilt after a move or a state-dict load. Inference only (no gradients).
    """

    _CACHES = ("_kernel", "_prepared")

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
        self._init_codes(packed, config, packed.shape[1], norm_weight, norm_eps, bias, backend)

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_bitlinear(cls, layer: BitLinear, fmt: "str | None" = None, backend: str = "auto") -> "PackedBitLinear":
        """Quantize `layer`'s latent weight with its own config and pack the codes (format `fmt`, default
        `ternary-b3` for ternary, `binary` for binary / sign, `int8` for int8). Raises ValueError when it
        cannot be packed."""
        reason = unpackable_reason(layer)
        if reason is not None:
            raise ValueError(f"PackedBitLinear.from_bitlinear: cannot pack {reason}")
        return cls(**cls._packed_parts(layer, fmt), backend=backend)

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

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"format={self.format}, config={self.config.label}"
        )


class PackedBitConv(_PackedCodes):
    """A BitConv1d / BitConv2d's inference forward from packed codes.

    The weight W (out, C_in / groups, *kernel_size) is stored as the 2-D code matrix its rows flatten to,
    (out_features, in_features) = (out_channels, C_in / groups * prod(kernel_size)): buffers `packed`
    (uint8, in `format`) and `scale` (float32, () or (out,)), as a PackedBitLinear's; `norm` (RMSNorm
    over channels) and `bias` in full precision. Forward, for x (N, C_in, *spatial):

        x_p         = pad(RMSNorm_c(x))                    the layer's padding and padding_mode
        c[n, p], s  = Q_a(x_p[n, :, p])                    per position p: int8 codes and 127 / max|x|
                                                           (binary: sign codes and k = mean|x|)
        y[n, :, i] += (c[n, i * stride + k * dilation] @ W[:, :, k]^T) / s[...] * scale   for every offset k
        y          += b

    one integer GEMM (`bitscale.kernels.ops.int_matmul`) per kernel offset k and group: the position
    rows of the group's channels against W[:, group's channels, k]. Every row keeps its own activation
    scale, so this is the fake-quant forward of the BitConv up to float rounding (im2col would mix the
    scales of k positions in a row). groups > 1 is supported by splitting the channels (slow for a
    depthwise conv: groups x prod(kernel_size) small GEMMs). Padded positions are quantized positions:
    zeros give codes 0 (int8) or scale 0 (binary), as the fake-quant layer's zero-padded Q_a(x).
    The kernel weights (one per group and offset) are prepared on first use and rebuilt after a move or
    a state-dict load. Inference only (no gradients).
    """

    _CACHES = ("_kernels",)

    def __init__(
        self,
        packed,
        config: "str | QuantConfig | dict",
        *,
        in_channels: int,
        kernel_size: "tuple[int, ...] | list[int]",
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        padding_mode: str = "zeros",
        norm_weight: Tensor | None = None,
        norm_eps: float = 1e-6,
        bias: Tensor | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(kernel_size, (tuple, list)) or len(kernel_size) not in (1, 2):
            raise ValueError(f"kernel_size: expected a tuple of 1 or 2 integers, got {kernel_size!r}")
        self._init_codes(packed, config, in_channels, norm_weight, norm_eps, bias, backend)
        self.dims = len(kernel_size)
        # the 2-D code matrix (out_features, in_features) is (out_channels, fan-in)
        self.out_channels, self.in_channels = self.out_features, in_channels
        self.groups, self.padding_mode = groups, padding_mode
        self.kernel_size, self.stride, self.padding, self.dilation = check_conv_args(
            self.dims, in_channels, self.out_channels, tuple(kernel_size), stride,
            tuple(padding) if isinstance(padding, list) else padding, dilation, groups, padding_mode)
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        if self.in_features != fan_in:
            raise ValueError(f"packed: shape {tuple(packed.shape)} does not hold ({self.out_channels}, {fan_in}) codes "
                             f"(in_channels / groups * prod(kernel_size))")

    @classmethod
    def from_bitconv(cls, layer: nn.Module, fmt: "str | None" = None, backend: str = "auto") -> "PackedBitConv":
        """Quantize `layer`'s latent weight with its own config and pack the codes of its (out, fan-in)
        matrix (format `fmt`, default `ternary-b3` for ternary, `binary` for binary / sign, `int8` for
        int8). Raises ValueError when it cannot be packed."""
        reason = unpackable_reason(layer)
        if reason is not None or not isinstance(layer, BIT_CONVS):
            raise ValueError(f"PackedBitConv.from_bitconv: cannot pack {reason or 'a ' + type(layer).__name__}")
        return cls(**cls._packed_parts(layer, fmt), in_channels=layer.in_channels, kernel_size=layer.kernel_size,
                   stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                   padding_mode=layer.padding_mode, backend=backend)

    def conv_attrs(self) -> dict[str, Any]:
        """The convolution's geometry, as JSON (what a packed file records next to the 2-D code matrix)."""
        return conv_attrs(self)

    @property
    def kernel_weights(self) -> "list[list]":
        """KernelWeights (`bitscale.kernels.ops.prepare_weights`) per group and kernel offset (offsets in
        row-major order of kernel_size): W[group's out rows, :, k], built once from the packed bytes."""
        if self._kernels is None:
            codes = self.packed_weight().unpack().to(self.packed.device)
            og, cg = self.out_channels // self.groups, self.in_channels // self.groups
            codes = codes.reshape(self.out_channels, cg, *self.kernel_size)
            offsets = list(itertools.product(*(range(k) for k in self.kernel_size)))
            prepare = _ops().prepare_weights
            self._kernels = [[prepare(codes[(slice(j * og, (j + 1) * og), slice(None), *k)].contiguous(), self.kind)
                              for k in offsets] for j in range(self.groups)]
        return self._kernels

    def prepare(self) -> "PackedBitConv":
        """Build the kernel weights now (otherwise the first forward does)."""
        _ = self.kernel_weights
        return self

    def forward(self, x: Tensor) -> Tensor:
        cdim = check_conv_input(x, self.dims, self.in_channels, self.kernel_size, self.padding, self.dilation)
        ops = _ops()
        with torch.no_grad():
            x = x.detach() if cdim == 1 else x.detach().unsqueeze(0)
            rows = x.movedim(1, -1)  # (N, *spatial, C): a position's channels are a row
            if self.norm is not None:
                rows = F.rms_norm(rows, (self.in_channels,), self.norm.weight.to(rows.dtype), self.norm.eps)
            pads = [p for before_after in reversed(pad_amounts(self.padding, self.kernel_size, self.dilation))
                    for p in before_after]
            padded = rows.movedim(-1, 1)
            if any(pads):
                mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
                padded = F.pad(padded, pads, mode=mode)
            rows = padded.movedim(1, -1).contiguous()
            if self.config.act == "int8":
                codes, act_scale = ops.quantize_activations_int8(rows, self.config.eps)
            else:
                act_scale = rows.abs().mean(dim=-1).to(torch.float32)
                codes = torch.where(rows > 0, 1, -1).to(torch.int8)
            size = codes.shape[1:-1]
            out_size = [(n - d * (k - 1) - 1) // s + 1
                        for n, k, s, d in zip(size, self.kernel_size, self.stride, self.dilation)]
            n_out, og, cg = self.out_channels, self.out_channels // self.groups, self.in_channels // self.groups
            y = torch.zeros((codes.shape[0], *out_size, n_out), dtype=torch.float32, device=codes.device)
            offsets = itertools.product(*(range(k) for k in self.kernel_size))
            scale = self.scale.to(codes.device)
            for index, offset in enumerate(offsets):
                # The positions this offset reads for every output position: start k * dilation, step stride.
                at = (slice(None), *(slice(k * d, k * d + (m - 1) * s + 1, s)
                                     for k, d, m, s in zip(offset, self.dilation, out_size, self.stride)))
                taken, row_scale = codes[at], act_scale[at].reshape(-1, 1)
                for j in range(self.groups):
                    group_rows = taken if self.groups == 1 else taken[..., j * cg : (j + 1) * cg]
                    weights = self.kernel_weights[j][index]
                    part = ops.int_matmul(group_rows.reshape(-1, cg), weights, backend=self.backend).to(torch.float32)
                    part = part.div_(row_scale) if self.config.act == "int8" else part.mul_(row_scale)
                    part.mul_(scale if scale.dim() == 0 else scale[j * og : (j + 1) * og])
                    target = y if self.groups == 1 else y[..., j * og : (j + 1) * og]
                    target += part.reshape(target.shape)
            if self.bias is not None:
                y += self.bias
            y = y.movedim(-1, 1).contiguous().to(x.dtype)
        return y if cdim == 1 else y.squeeze(0)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"padding_mode={self.padding_mode}, bias={self.bias is not None}, format={self.format}, "
                f"config={self.config.label}")


def conv_attrs(module: nn.Module) -> dict[str, Any]:
    """A conv layer's (nn.Conv1d / 2d, BitConv, PackedBitConv) geometry as JSON: dims, in_channels,
    kernel_size, stride, padding, dilation, groups, padding_mode."""
    padding = module.padding if isinstance(module.padding, str) else list(module.padding)
    return {"dims": len(module.kernel_size), "in_channels": int(module.in_channels),
            "kernel_size": list(module.kernel_size), "stride": list(module.stride), "padding": padding,
            "dilation": list(module.dilation), "groups": int(module.groups), "padding_mode": module.padding_mode}


def pack(
    model: nn.Module,
    ternary_format: str = "ternary-b3",
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    backend: str = "auto",
) -> nn.Module:
    """Replace every packable BitLinear in `model` (including the model itself) by a PackedBitLinear, and
    every packable BitConv1d / BitConv2d by a PackedBitConv, in place (torchao style, like `quantize_`);
    returns the model.

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
        if isinstance(module, (BitLinear, *BIT_CONVS)) and unpackable_reason(module) is None and (filter_fn is None or filter_fn(module, name)):
            if isinstance(module, BitLinear):
                new = PackedBitLinear.from_bitlinear(module, ternary_format, backend)
            else:
                new = PackedBitConv.from_bitconv(module, ternary_format, backend)
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


def packed_layers(model: nn.Module) -> "dict[str, PackedBitLinear | PackedBitConv]":
    """name -> PackedBitLinear or PackedBitConv, each layer once (both have out_features / in_features:
    the shape of their 2-D code matrix, nbytes, format and prepare())."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (PackedBitLinear, PackedBitConv))}


def skipped_layers(model: nn.Module) -> dict[str, str]:
    """name -> reason, for every BitLinear or BitConv that `pack` leaves in full precision."""
    return {name: unpackable_reason(m) or "" for name, m in model.named_modules() if isinstance(m, (BitLinear, *BIT_CONVS))}


def save_packed_model(model: nn.Module, path, *, spec: "dict[str, Any] | None" = None):
    """Write a packed model (after `pack(model)`) to the packed file `path`: the packed layers' codes and
    scales, every other state_dict tensor as is, and `spec`: the metadata that rebuilds the model
    (`bitscale.runs.load_packed`). It defaults to the model's own `packed_spec()` when it has one (a
    Decoder does: {"kind": "decoder", "config": ...}), else to none."""
    from ..kernels.packfile import save_packed

    layers = packed_layers(model)
    if not layers:
        raise ValueError("save_packed_model: the model has no PackedBitLinear or PackedBitConv layer; call pack(model) first")
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
        if isinstance(layer, PackedBitConv):  # the file's shape is the 2-D code matrix; the geometry goes here
            attrs[name]["conv"] = layer.conv_attrs()
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
        conv = attrs.get("conv")
        if conv is not None:
            _check_conv_skeleton(path, name, old, conv, pw.shape)
        # nn.Linear too: a full-precision layer of the skeleton (a Decoder's head) packed as int8.
        elif not isinstance(old, (nn.Linear, PackedBitLinear)) or (old.out_features, old.in_features) != pw.shape:
            raise PackedFileError(f"{path}: layer {name!r}: the model has no ({pw.shape[0]}, {pw.shape[1]}) linear layer there")
        try:
            config = QuantConfig.model_validate(attrs.get("config", {}))
            common = dict(
                norm_weight=state.get(f"{name}.norm.weight") if attrs.get("norm") else None,
                norm_eps=attrs.get("norm_eps") or 1e-6,
                bias=state.get(f"{name}.bias") if attrs.get("bias") else None,
                backend=backend,
            )
            weight = PackedWeight(pw.data, pw.shape, pw.scale, pw.format)
            if conv is None:
                layer = PackedBitLinear(weight, config, **common)
            else:
                geometry = {k: conv[k] for k in ("in_channels", "kernel_size", "stride", "padding", "dilation",
                                                 "groups", "padding_mode")}
                layer = PackedBitConv(weight, config, **geometry, **common)
        except (ValueError, TypeError, KeyError) as e:
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


def _check_conv_skeleton(path, name: str, old: nn.Module, conv: Any, shape: tuple[int, int]) -> None:
    """The skeleton's module at `name` is a conv layer (nn.Conv1d / 2d, a BitConv, a PackedBitConv) with
    the geometry `conv` the file records for it; else a PackedFileError naming the layer and the field."""
    from ..kernels.packfile import PackedFileError

    if not isinstance(conv, dict):
        raise PackedFileError(f"{path}: layer {name!r}: malformed conv attributes")
    if not isinstance(old, (nn.Conv1d, nn.Conv2d, PackedBitConv)):
        raise PackedFileError(f"{path}: layer {name!r}: the model has no conv layer there ({type(old).__name__})")
    if old.out_channels != shape[0]:
        raise PackedFileError(f"{path}: layer {name!r}: out_channels {old.out_channels} in the model, {shape[0]} in the file")
    for field, value in conv_attrs(old).items():
        if conv.get(field) != value:
            raise PackedFileError(f"{path}: layer {name!r}: {field} {value!r} in the model, {conv.get(field)!r} in the file")


__all__ = [
    "PackedBitConv",
    "PackedBitLinear",
    "load_packed_model",
    "pack",
    "packed_layers",
    "save_packed_model",
    "skipped_layers",
    "unpackable_reason",
]
