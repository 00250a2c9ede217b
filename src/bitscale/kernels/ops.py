"""The public kernel API: prepare a layer's weights once, then run integer and quantized linear products.

    w = prepare_weights(codes, "ternary")          # int8 codes (out, in) in {-1, 0, 1}; "binary", {-1, 1}; "int8"
    y = packed_linear(x, w, scale)                  # y = Q_a(x) @ codes^T / act_scale * scale, in x's dtype
    acc = int_matmul(x_codes, w)                    # exact int32 x_codes @ codes^T

Backends: "numba" (the multithreaded CPU kernels of `bitscale.kernels.cpu`), "reference" (plain PyTorch,
`bitscale.kernels.reference`) and "auto": numba when it imports and every tensor is on the CPU, else the
reference. Both give identical integers. Asking for "numba" without numba raises a RuntimeError.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import layout, reference

BACKENDS = ("auto", "numba", "reference")
ACTS = ("int8", "binary")
KINDS = layout.KINDS
# int32 accumulators: the raw sums |x . u| <= 2 * 128 * padded in_features (ternary), 255 * 128 * it (int8) < 2^31;
# a GEMV lane of ternary plane 3 holds its codes times 64 (cpu._int8_kernel): 128 * 128 * in / 64 <= 2^30.
MAX_IN_FEATURES = {"ternary": 1 << 22, "binary": 1 << 22, "int8": 1 << 16}

_cpu_module: Any = None
_cpu_error: "str | None" = None
_cpu_loaded = False


def numba_module():
    """The numba kernel module `bitscale.kernels.cpu`, or None when numba is unavailable (imported once)."""
    global _cpu_module, _cpu_error, _cpu_loaded
    if not _cpu_loaded:
        _cpu_loaded = True
        try:
            _cpu_module = importlib.import_module("bitscale.kernels.cpu")
        except Exception as e:  # ImportError, or a numba that cannot initialize on this platform
            _cpu_module, _cpu_error = None, f"{type(e).__name__}: {e}".splitlines()[0]
    return _cpu_module


def available_backends() -> list[str]:
    """The backends that can run here, fastest first: ["numba", "reference"] or ["reference"]."""
    return (["numba"] if numba_module() is not None else []) + ["reference"]


class KernelWeights:
    """A layer's weights in the kernel layout (`bitscale.kernels.layout`), built once by `prepare_weights`.

    Attributes: kind ("ternary" | "binary" | "int8"), out_features, in_features, and `packed`, the uint8 tensor
    (out_features, row_bytes) of plane-split codes. `nbytes` counts the bytes the kernels read.
    """

    __slots__ = ("kind", "out_features", "in_features", "packed")

    def __init__(self, kind: str, out_features: int, in_features: int, packed: Tensor) -> None:
        layout._check_kind(kind)
        expected = (int(out_features), layout.row_bytes(in_features, kind))
        if packed.dtype != torch.uint8 or tuple(packed.shape) != expected:
            raise ValueError(
                f"packed: expected a uint8 tensor of shape {expected}, got {packed.dtype} {tuple(packed.shape)}"
            )
        self.kind = kind
        self.out_features = int(out_features)
        self.in_features = int(in_features)
        self.packed = packed.contiguous()

    @property
    def row_bytes(self) -> int:
        return self.packed.shape[1]

    @property
    def padded_in_features(self) -> int:
        return layout.padded_in_features(self.in_features, self.kind)

    @property
    def nbytes(self) -> int:
        return self.packed.numel()

    @property
    def layout_bits_per_weight(self) -> float:
        """Bits of the kernels' in-memory layout per real weight (padding included): 2 (ternary), 1
        (binary) or 8 (int8) when in_features fills the planes. The memory the kernels stream, not the storage figure
        (`bitscale.kernels.formats.bits_per_weight`, ternary-b3 1.6) nor the precision bits (log2(3))."""
        return 8.0 * self.nbytes / max(1, self.out_features * self.in_features)

    def codes(self) -> Tensor:
        """The int8 codes (out, in) back from the layout."""
        return layout.unpack(self.packed, self.kind, self.in_features)

    def __repr__(self) -> str:
        return (
            f"KernelWeights(kind={self.kind!r}, out_features={self.out_features}, in_features={self.in_features}, "
            f"nbytes={self.nbytes})"
        )


# -- validation ------------------------------------------------------------------------------------------


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")


def resolve_backend(backend: str, *tensors: Tensor):
    """The numba module for this call, or None for the reference."""
    _check_backend(backend)
    if backend == "reference":
        return None
    cpu = numba_module()
    on_cpu = all(t.device.type == "cpu" for t in tensors)
    if backend == "numba":
        if cpu is None:
            raise RuntimeError(f"backend 'numba': numba is not available ({_cpu_error}); use backend='auto' or 'reference'")
        if not on_cpu:
            raise ValueError("backend 'numba': the tensors must be on the CPU")
    return cpu if on_cpu else None


def _check_weights(w: Any) -> None:
    if not isinstance(w, KernelWeights):
        raise ValueError(f"w: expected KernelWeights (from prepare_weights), got {type(w).__name__}")


def prepare_weights(codes: Tensor, kind: str) -> KernelWeights:
    """Pack int8 weight codes (out, in) into the kernel layout. kind "ternary": codes in {-1, 0, 1};
    "binary": codes in {-1, 1}; "int8": any int8 code (in_features <= 65536). Any in_features (rows are
    padded internally)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(codes, Tensor):
        raise ValueError(f"codes: expected a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype != torch.int8:
        raise ValueError(f"codes: expected dtype torch.int8, got {codes.dtype}")
    if codes.dim() != 2 or codes.shape[1] == 0:
        raise ValueError(f"codes: expected a 2-d (out_features, in_features) tensor, got shape {tuple(codes.shape)}")
    if codes.shape[1] > MAX_IN_FEATURES[kind]:
        raise ValueError(f"codes: in_features {codes.shape[1]} exceeds the int32 kernels' limit {MAX_IN_FEATURES[kind]}")
    if codes.numel() and kind != "int8":  # any int8 code is an int8 code
        low, high = int(codes.min()), int(codes.max())
        if low < -1 or high > 1:
            bad = low if low < -1 else high
            allowed = "{-1, 0, 1}" if kind == "ternary" else "{-1, 1}"
            raise ValueError(f"codes: {kind} codes must be in {allowed}; found {bad}")
        if kind == "binary" and bool((codes == 0).any()):
            raise ValueError("codes: binary codes must be in {-1, 1}; found 0")
    out_f, n_in = codes.shape
    return KernelWeights(kind, out_f, n_in, layout.pack(codes, kind))


def _check_rows(x: Tensor, w: KernelWeights, name: str) -> None:
    if x.dim() not in (1, 2):
        raise ValueError(f"{name}: expected a (rows, in_features) or (in_features,) tensor, got shape {tuple(x.shape)}")
    if x.shape[-1] != w.in_features:
        raise ValueError(f"{name}: last dimension {x.shape[-1]} does not match in_features {w.in_features}")


# -- activation quantization -------------------------------------------------------------------------------


def quantize_activations_int8(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-token (last dimension) absmax int8 codes and scales: codes = round(x * s), s = 127 / max(|x|, eps).

    The same operations, in x's dtype, as `bitscale.quant.activations.quantize_act_int8`, whose fake-quantized
    value is codes / s: the codes are identical (for bfloat16 / float16 inputs, up to the rare x * s that
    rounds to 128, clamped to 127 here). Returns (int8 codes shaped like x, float32 s of x.shape[:-1]).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"x: expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() == 0:
        raise ValueError("x: expected at least one dimension (features last)")
    with torch.no_grad():
        absmax = torch.maximum(x.amax(dim=-1, keepdim=True), x.amin(dim=-1, keepdim=True).neg_())
        scale = 127 / absmax.clamp_(min=eps)
        # |x * s| <= 127 holds in float32, but in bfloat16 / float16 the rounded s can make it 128: clamp to the
        # int8 range there, as the BitNet reference quantizer does (the one place the codes can differ).
        codes = (x * scale).round_().clamp_(-128, 127).to(torch.int8)
    return codes, scale.squeeze(-1).to(torch.float32)


# -- integer products ---------------------------------------------------------------------------------------


def int_matmul(x_codes: Tensor, w: KernelWeights, *, backend: str = "auto") -> Tensor:
    """Exact int32 x_codes @ codes^T for int8 activation codes (rows, in) (or (in,)): (rows, out) (or (out,))."""
    _check_weights(w)
    if not isinstance(x_codes, Tensor) or x_codes.dtype != torch.int8:
        raise ValueError(f"x_codes: expected an int8 tensor, got {getattr(x_codes, 'dtype', type(x_codes).__name__)}")
    _check_rows(x_codes, w, "x_codes")
    cpu = resolve_backend(backend, x_codes, w.packed)
    rows = x_codes.reshape(-1, w.in_features)
    if cpu is None:
        out = reference.int8_matmul(rows, w.packed, w.kind, w.in_features)
    else:
        padded = layout.pad_activations(rows.contiguous(), w.kind)
        out = torch.from_numpy(cpu.int8_matmul(w.packed.numpy(), padded.numpy(), layout.BITS[w.kind]))
    return out if x_codes.dim() == 2 else out.reshape(w.out_features)


def xnor_matmul(x: Tensor, w: KernelWeights, *, backend: str = "auto") -> Tensor:
    """Exact int32 sign(x) @ codes^T (sign(0) = -1) for binary weights by XNOR-popcount: (rows, out)."""
    _check_weights(w)
    if w.kind != "binary":
        raise ValueError(f"w: XNOR-popcount needs binary weights, got {w.kind}")
    if not isinstance(x, Tensor) or x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"x: expected a real tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    _check_rows(x, w, "x")
    cpu = resolve_backend(backend, x, w.packed)
    rows = x.reshape(-1, w.in_features)
    if cpu is None:
        out = reference.xnor_matmul(rows, w.packed, w.in_features)
    else:
        signs = layout.pack_signs(rows)
        out = torch.from_numpy(cpu.xnor_matmul(w.packed.numpy(), signs.numpy(), w.in_features))
    return out if x.dim() == 2 else out.reshape(w.out_features)


# -- the quantized linear layer's forward --------------------------------------------------------------------


def _check_scale(weight_scale: Any, w: KernelWeights) -> Tensor:
    if not isinstance(weight_scale, Tensor):
        weight_scale = torch.tensor(weight_scale, dtype=torch.float32)
    if weight_scale.dim() > 1 or (weight_scale.dim() == 1 and weight_scale.shape[0] not in (1, w.out_features)):
        raise ValueError(
            f"weight_scale: expected shape () (per tensor) or ({w.out_features},) (per channel), "
            f"got {tuple(weight_scale.shape)}"
        )
    return weight_scale.to(torch.float32)


class PreparedLinear:
    """A packed linear layer's forward with everything but x converted once (`prepare_linear`):

        y = (Q_a(RMSNorm(x)) @ codes^T) / act_scale * weight_scale + bias

    RMSNorm (gain `norm_weight`, optional) as nn.RMSNorm; Q_a, act_scale and weight_scale as in
    `packed_linear`. On the CPU with numba, int8 activations and a float32 x, the whole forward is one
    numba call (`bitscale.kernels.cpu.linear_int8_at`): at a decode step's single row, the dozen torch calls
    around the kernel cost as much as the kernel. Otherwise it runs the torch operations of
    `packed_linear`. Returns x's dtype; inference only.
    """

    __slots__ = ("w", "scale", "act", "eps", "norm_weight", "norm_eps", "bias", "backend", "_np")

    def __init__(self, w: KernelWeights, weight_scale: Any, *, act: str = "int8", eps: float = 1e-5,
                 norm_weight: "Tensor | None" = None, norm_eps: float = 1e-6, bias: "Tensor | None" = None,
                 backend: str = "auto") -> None:
        _check_weights(w)
        if act not in ACTS:
            raise ValueError(f"act: expected one of {', '.join(ACTS)}, got {act!r}")
        _check_backend(backend)
        for name, t, n in (("norm_weight", norm_weight, w.in_features), ("bias", bias, w.out_features)):
            if t is not None and (not isinstance(t, Tensor) or tuple(t.shape) != (n,)):
                raise ValueError(f"{name}: expected a tensor of shape ({n},), got {tuple(getattr(t, 'shape', ()))}")
        self.w, self.scale, self.act, self.eps, self.backend = w, _check_scale(weight_scale, w), act, float(eps), backend
        self.norm_weight, self.norm_eps, self.bias = norm_weight, float(norm_eps), bias
        self._np = None
        cpu = resolve_backend(backend, w.packed, self.scale) if act == "int8" else None
        if cpu is not None and all(t is None or t.device.type == "cpu" for t in (norm_weight, bias)):
            as_np = lambda t: np.zeros(0, np.float32) if t is None else t.detach().float().contiguous().numpy()  # noqa: E731
            arrays = (w.packed.numpy(), self.scale.reshape(-1).contiguous().numpy(), as_np(norm_weight), as_np(bias))
            plan = cpu.linear_int8_plan(arrays[0], layout.BITS[w.kind], *arrays[1:])
            gemv_tiling = cpu._tiling(w.out_features, w.row_bytes, 1, layout.PLANES[w.kind])
            self._np = (cpu, plan, np.float32(eps), float(norm_eps), gemv_tiling, arrays)  # arrays: kept alive for plan

    @property
    def numba_plan(self) -> "tuple | None":
        """(plan, eps, norm_eps, (block_out, chunk) of a GEMV) of the one-call numba forward, for a caller
        that runs it inside its own numba code (`bitscale.kernels.decode_cpu`); None when this layer's
        forward is not one numba call. The plan stays valid while this object lives."""
        return None if self._np is None else self._np[1:5]

    def __call__(self, x: Tensor) -> Tensor:
        w, fast = self.w, self._np
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"x: expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() == 0 or x.shape[-1] != w.in_features:
            raise ValueError(f"x: last dimension {tuple(x.shape)[-1:]} does not match in_features {w.in_features}")
        if fast is not None and x.dtype == torch.float32 and x.is_cpu:
            # Every call here costs a microsecond or so, a hundredth of the kernel at 4096 x 4096: reshape
            # and copy only when they change something, and hand numba addresses (see linear_int8_at).
            cpu, plan, eps, norm_eps, gemv_tiling, _ = fast
            flat = x if x.dim() == 2 else x.reshape(-1, w.in_features)
            if not flat.is_contiguous():
                flat = flat.contiguous()
            n = flat.shape[0]
            block_out, chunk = gemv_tiling if n < 4 else cpu._tiling(w.out_features, w.row_bytes, n, layout.PLANES[w.kind])
            y = torch.from_numpy(cpu.linear_int8_at(flat.data_ptr(), n, w.in_features, plan, eps, norm_eps,
                                                    block_out, chunk, *cpu.amx_args(n)))
            return y if x.dim() == 2 else y.reshape(*x.shape[:-1], w.out_features)
        lead = x.shape[:-1]
        with torch.no_grad():
            rows = x.detach().reshape(-1, w.in_features)
            if self.norm_weight is not None:
                rows = F.rms_norm(rows, (w.in_features,), self.norm_weight.to(rows.dtype), self.norm_eps)
            y = _linear_torch(rows, w, self.scale.to(x.device), self.act, self.eps, self.backend).to(x.dtype)
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*lead, w.out_features)


def prepare_linear(w: KernelWeights, weight_scale: Any, **kwargs) -> PreparedLinear:
    """`PreparedLinear(w, weight_scale, act=, eps=, norm_weight=, norm_eps=, bias=, backend=)`."""
    return PreparedLinear(w, weight_scale, **kwargs)


def _linear_torch(rows: Tensor, w: KernelWeights, scale: Tensor, act: str, eps: float, backend: str) -> Tensor:
    """float32 (Q_a(rows) @ codes^T) / act_scale * scale by torch operations around the integer kernels."""
    if act == "int8":
        codes, act_scale = quantize_activations_int8(rows, eps)
        acc = int_matmul(codes, w, backend=backend)
        return acc.to(torch.float32).div_(act_scale[:, None]).mul_(scale)
    k = rows.abs().mean(dim=-1, keepdim=True).to(torch.float32)
    if w.kind == "binary":
        acc = xnor_matmul(rows, w, backend=backend)
    else:
        acc = int_matmul(torch.where(rows > 0, 1, -1).to(torch.int8), w, backend=backend)
    return acc.to(torch.float32).mul_(k).mul_(scale)


def packed_linear(
    x: Tensor,
    w: KernelWeights,
    weight_scale: Tensor,
    *,
    act: str = "int8",
    eps: float = 1e-5,
    backend: str = "auto",
) -> Tensor:
    """y = (Q_a(x) @ codes^T) / act_scale * weight_scale over the last dimension of x (any leading dims).

    act "int8": Q_a(x) = the int8 codes of `quantize_activations_int8`, act_scale = 127 / max|x| per token.
    act "binary": Q_a(x) = sign(x) in {-1, +1}, times k = mean|x| per token (the XNOR-Net quantizer of
    `bitscale.quant.activations.quantize_act_binary`); binary weights run the XNOR-popcount kernel.
    weight_scale: float32, () per tensor or (out,) per channel. Returns x's dtype. Inference only: no
    gradient flows through it. A layer that runs many calls prepares them once with `prepare_linear`.
    """
    return PreparedLinear(w, weight_scale, act=act, eps=eps, backend=backend)(x)
