"""Numba CPU kernels for the plane-split layouts of `bitscale.kernels.layout` (multithreaded, exact int32).

Importing this module imports numba (ImportError without it); nothing is compiled until a kernel is first
called, and compiled kernels are cached on disk (`cache=True`, numba's cache next to this file), so only a
fresh install pays the JIT compile (a few seconds per kernel).

Kernels (each adds raw sums into a zeroed int32 output, then applies the per-row correction):

- `int8_matmul`  S[r, o] = sum_k x[r, k] * u[o, k], u the unsigned plane codes (ternary W + 1 in {0,1,2},
  binary (W + 1) / 2 in {0,1}, int8 W + 128 in [0, 255]); result x.W = S - sum x (ternary), 2 S - sum x
  (binary) or S - 128 sum x (int8).
- `xnor_matmul`  n[r, o] = popcount(a[r] XOR b[o]) over the packed sign bits; result K - 2 n.

The inner loops are LLVM IR written here (numba `@intrinsic`), because numba's own integer typing widens
every product to int64 and the auto-vectorized loop then runs at a fifth of the speed. Per 64 bytes of a
packed row: one load, P shifts and masks (P = 4 or 8 planes), and per plane one 512-bit `vpdpbusd` (64
u8 x s8 multiply-adds into 16 int32 lanes) per activation row, with the 64 activation bytes as its memory
operand. Tiles with several accumulators per row (the GEMV's) fold the planes: plane t goes to
accumulator a = t % n_acc with its codes a bits-widths left of place, byte >> ((t - a) bits) & (mask << a
bits), still an unsigned byte, and the accumulator is shifted back once at the end (exact, every product
in it is a multiple of 2^(a bits)). A 4 x 1 tile then needs no shift at all, an 8 x 1 one shift per two
planes; on L2-resident weights that more than doubled the GEMV.
Micro-kernels keep 8 or 4 weight rows x 1 activation row (GEMV), 4 x 4 (GEMM; 1 x 4 for binary
weights) or 1 x 4 in flight, 16 independent int32x16 accumulators. Without AVX-512 VNNI (or when numba targets a
generic CPU) the same IR is emitted with plain vector zext / sext / mul / add, which LLVM lowers for any CPU.
The XNOR kernel is plain vector IR: xor, `llvm.ctpop` (vpopcntq with AVX512-VPOPCNTDQ), add.

The drivers (`prange` over blocks of `block_out` weight rows) tile the work so that the packed weights are
read from memory once per call: each thread takes a block of weight rows, walks the padded in_features in
chunks of `chunk` bytes and, per chunk, runs every group of 4 activation rows against the block's weight
rows, 4 at a time (4 x 4 tiles; binary weights 1 x 4), so the activation chunk stays in L1 and the weight
chunk in L2. Activation rows left over (rows % 4, all of them for a GEMV) run through the 4-weight-row
kernel against the same cached weight chunk; a GEMV's tiles (8 x 1, binary 4 x 1) take rows an eighth
(a quarter) of the block apart (see `_int8_block`).
"""

from __future__ import annotations

import os

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.core import cgutils, config
from numba.extending import intrinsic

from . import amx

# -- target features ---------------------------------------------------------------------------------------

from .amx import _CACHE, GENERIC_ENV  # GENERIC_ENV set to 1: never emit VNNI instructions (and no disk cache)


def _host_has_vnni() -> bool:
    if os.environ.get(GENERIC_ENV, "") not in ("", "0"):
        return False
    if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES:
        return False  # numba told to target another CPU: the code must not assume this host's features
    try:
        features = llvm_binding.get_host_cpu_features()
    except RuntimeError:  # pragma: no cover - non-x86 hosts without a feature list
        return False
    return bool(features.get("avx512vnni") and features.get("avx512bw") and features.get("avx512f"))


VNNI = _host_has_vnni()
_JIT = dict(parallel=True, fastmath=False, cache=_CACHE, nogil=True)

_I8x64 = ir.VectorType(ir.IntType(8), 64)
_I16x32 = ir.VectorType(ir.IntType(16), 32)
_I16x64 = ir.VectorType(ir.IntType(16), 64)
_I32x16 = ir.VectorType(ir.IntType(32), 16)
_I32x64 = ir.VectorType(ir.IntType(32), 64)
_I64x8 = ir.VectorType(ir.IntType(64), 8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _const(v: int):
    return ir.Constant(_I64, v)


def _ptr(builder, addr, offset, ty):
    return builder.inttoptr(builder.add(addr, offset), ty.as_pointer())


# -- the int8 x (ternary | binary) micro-kernels -------------------------------------------------------------

_INT8_SIG = types.void(*([types.intp] * 9))


def _int8_kernel(rw: int, rx: int, bits: int):
    """Intrinsic k(w_addr, w_stride, x_addr, x_stride, plane, nbytes, out_addr, out_sw, out_sx).

    For wi < rw, xi < rx: out[wi * out_sw + xi * out_sx] (int32 elements) += sum over the 64-byte blocks
    b < nbytes / 64, planes t < 8 / bits, lanes l < 64 of
        u8(code_t(w[wi * w_stride + 64 b + l])) * s8(x[xi * x_stride + t * plane + 64 b + l]),
    code_t(byte) = (byte >> t bits) & mask. Strides, plane and nbytes in bytes; nbytes a multiple of 64.
    """
    planes = 8 // bits
    mask = (1 << bits) - 1
    vnni = VNNI
    n_acc = max(1, min(planes, 16 // (rw * rx))) if vnni else 1
    acc_ty = _I32x16 if vnni else _I32x64
    # Plane t goes to accumulator a = t % n_acc, and its codes stay a bits left of place:
    # (byte >> (t - a) bits) & (mask << a bits) = code 2^(a bits) <= 128, still an unsigned byte. The
    # accumulator is shifted back once at the end (exact: each of its products is a multiple of 2^(a bits)).
    # With one accumulator per plane (the 4 x 1 GEMV tile) no plane is shifted at all, with two (8 x 1)
    # one shift serves two planes: in the inner loop that is the work of one shift per plane saved.
    folded = vnni and planes > 1 and n_acc > 1

    def codegen(context, builder, signature, args):
        w_addr, w_stride, x_addr, x_stride, plane, nbytes, out_addr, out_sw, out_sx = args
        mod = builder.module
        if vnni:
            vpdpbusd = cgutils.get_or_insert_function(
                mod, ir.FunctionType(_I32x16, [_I32x16, _I32x16, _I32x16]), "llvm.x86.avx512.vpdpbusd.512"
            )
        accs = [
            [[cgutils.alloca_once_value(builder, ir.Constant(acc_ty, None)) for _ in range(n_acc)] for _ in range(rx)]
            for _ in range(rw)
        ]
        mask16 = ir.Constant(_I16x32, [mask | (mask << 8)] * 32)
        masks = [ir.Constant(_I16x32, [((mask << a * bits) & 0xFF) * 0x101] * 32) for a in range(n_acc)]
        with cgutils.for_range(builder, builder.udiv(nbytes, _const(64))) as loop:
            off = builder.mul(loop.index, _const(64))
            codes = []  # codes[wi][t]: 64 unsigned codes of plane t (times 2^(a bits) when folded)
            for wi in range(rw):
                w_off = builder.add(off, builder.mul(w_stride, _const(wi)))
                wv = builder.load(_ptr(builder, w_addr, w_off, _I16x32), align=1)
                row = []
                for t in range(planes):
                    if folded:
                        a, group = t % n_acc, t // n_acc * n_acc * bits
                        if a == 0:
                            src = wv if group == 0 else builder.lshr(wv, ir.Constant(_I16x32, [group] * 32))
                        row.append(builder.and_(src, masks[a]))
                    else:
                        shifted = wv if t == 0 else builder.lshr(wv, ir.Constant(_I16x32, [t * bits] * 32))
                        row.append(builder.and_(shifted, mask16))
                codes.append(row)
            for xi in range(rx):
                x_base = builder.add(x_addr, builder.add(off, builder.mul(x_stride, _const(xi))))
                for t in range(planes):
                    x_ptr = _ptr(builder, x_base, builder.mul(plane, _const(t)), _I8x64)
                    xv = builder.load(x_ptr, align=1)
                    for wi in range(rw):
                        acc = accs[wi][xi][t % n_acc]
                        if vnni:
                            u = builder.bitcast(codes[wi][t], _I32x16)
                            s = builder.bitcast(xv, _I32x16)
                            new = builder.call(vpdpbusd, [builder.load(acc), u, s])
                        else:
                            u = builder.zext(builder.bitcast(codes[wi][t], _I8x64), _I16x64)
                            prod = builder.mul(u, builder.sext(xv, _I16x64))  # |u x| <= 3 * 128: fits int16
                            new = builder.add(builder.load(acc), builder.sext(prod, _I32x64))
                        builder.store(new, acc)
        lanes = 16 if vnni else 64
        reduce = cgutils.get_or_insert_function(
            mod, ir.FunctionType(_I32, [acc_ty]), f"llvm.vector.reduce.add.v{lanes}i32"
        )
        for wi in range(rw):
            for xi in range(rx):
                total = builder.load(accs[wi][xi][0])
                for a in range(1, n_acc):
                    part = builder.load(accs[wi][xi][a])
                    if folded:  # exact: every product in accumulator a is a multiple of 2^(a bits)
                        part = builder.ashr(part, ir.Constant(acc_ty, [a * bits] * 16))
                    total = builder.add(total, part)
                s = builder.call(reduce, [total])
                o = builder.add(builder.mul(out_sw, _const(4 * wi)), builder.mul(out_sx, _const(4 * xi)))
                p = _ptr(builder, out_addr, o, _I32)
                builder.store(builder.add(builder.load(p), s), p)
        return context.get_dummy_value()

    # numba's @intrinsic reads the typer's parameter list: one name per argument.
    def typer9(typingctx, a, b, c, d, e, f, g, h, i):
        return _INT8_SIG, codegen

    return intrinsic(typer9)


# -- the XNOR-popcount micro-kernels -------------------------------------------------------------------------

_XNOR_SIG = types.void(*([types.intp] * 8))


def _xnor_kernel(rw: int, rx: int):
    """Intrinsic k(w_addr, w_stride, x_addr, x_stride, nbytes, out_addr, out_sw, out_sx):
    out[wi * out_sw + xi * out_sx] += popcount(w row wi XOR x row xi) over nbytes (a multiple of 64)."""

    def codegen(context, builder, signature, args):
        w_addr, w_stride, x_addr, x_stride, nbytes, out_addr, out_sw, out_sx = args
        mod = builder.module
        ctpop = cgutils.get_or_insert_function(mod, ir.FunctionType(_I64x8, [_I64x8]), "llvm.ctpop.v8i64")
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(_I64x8, None)) for _ in range(rx)] for _ in range(rw)]
        with cgutils.for_range(builder, builder.udiv(nbytes, _const(64))) as loop:
            off = builder.mul(loop.index, _const(64))
            ws = [
                builder.load(_ptr(builder, w_addr, builder.add(off, builder.mul(w_stride, _const(wi))), _I64x8), align=1)
                for wi in range(rw)
            ]
            for xi in range(rx):
                xv = builder.load(_ptr(builder, x_addr, builder.add(off, builder.mul(x_stride, _const(xi))), _I64x8), align=1)
                for wi in range(rw):
                    acc = accs[wi][xi]
                    builder.store(builder.add(builder.load(acc), builder.call(ctpop, [builder.xor(ws[wi], xv)])), acc)
        reduce = cgutils.get_or_insert_function(mod, ir.FunctionType(_I64, [_I64x8]), "llvm.vector.reduce.add.v8i64")
        for wi in range(rw):
            for xi in range(rx):
                s = builder.trunc(builder.call(reduce, [builder.load(accs[wi][xi])]), _I32)
                o = builder.add(builder.mul(out_sw, _const(4 * wi)), builder.mul(out_sx, _const(4 * xi)))
                p = _ptr(builder, out_addr, o, _I32)
                builder.store(builder.add(builder.load(p), s), p)
        return context.get_dummy_value()

    def typer8(typingctx, a, b, c, d, e, f, g, h):
        return _XNOR_SIG, codegen

    return intrinsic(typer8)


_t41, _t14, _t11 = _int8_kernel(4, 1, 2), _int8_kernel(1, 4, 2), _int8_kernel(1, 1, 2)
_b41, _b14, _b11 = _int8_kernel(4, 1, 1), _int8_kernel(1, 4, 1), _int8_kernel(1, 1, 1)
_i41, _i14, _i11 = _int8_kernel(4, 1, 8), _int8_kernel(1, 4, 8), _int8_kernel(1, 1, 8)
# GEMM tiles of 4 weight rows x 4 activation rows: every weight vector and every activation vector loaded
# feeds 4 vpdpbusd. Against the 1 x 4 tile, batch 64 ran 1.4-2.2x faster for ternary weights (4096^2:
# 7.7 -> 5.3 ms, 4096 x 11008: 21.5 -> 9.8 ms, 16384^2: 120 -> 64 ms; 2 threads, one run). Binary weights
# (8 planes: 32 code vectors for 4 rows) keep the 1 x 4 tile.
_t44, _i44 = _int8_kernel(4, 4, 2), _int8_kernel(4, 4, 8)
_t81, _i81 = _int8_kernel(8, 1, 2), _int8_kernel(8, 1, 8)  # GEMV tiles (see _int8_block)
_x41, _x14, _x11 = _xnor_kernel(4, 1), _xnor_kernel(1, 4), _xnor_kernel(1, 1)


# -- drivers -------------------------------------------------------------------------------------------------


@njit(cache=_CACHE, nogil=True)
def _int8_block(wa, xa, oa, n_out, q, rows, width, o0, o1, bits, chunk):
    """Raw sums of weight rows o0..o1 against every activation row into the int32 output at oa (the
    module docstring's tiling: chunks of `chunk` row bytes, groups of 4 activation rows, then the rest)."""
    for k0 in range(0, q, chunk):
        n = min(chunk, q - k0)
        r = 0
        while r + 4 <= rows:
            o = o0
            if bits != 1:
                while o + 4 <= o1:
                    if bits == 2:
                        _t44(wa + o * q + k0, q, xa + r * width + k0, width, q, n, oa + (r * n_out + o) * 4, 1, n_out)
                    else:
                        _i44(wa + o * q + k0, q, xa + r * width + k0, width, q, n, oa + (r * n_out + o) * 4, 1, n_out)
                    o += 4
            for o in range(o, o1):
                if bits == 2:
                    _t14(wa + o * q + k0, 0, xa + r * width + k0, width, q, n, oa + (r * n_out + o) * 4, 0, n_out)
                elif bits == 8:
                    _i14(wa + o * q + k0, 0, xa + r * width + k0, width, q, n, oa + (r * n_out + o) * 4, 0, n_out)
                else:
                    _b14(wa + o * q + k0, 0, xa + r * width + k0, width, q, n, oa + (r * n_out + o) * 4, 0, n_out)
            r += 4
        # The rows of a tile are an eighth (ternary, int8: 8 x 1 tiles) or a quarter (binary: 4 x 1) of the
        # block apart, rows o, o + R, o + 2R, ...: sequential streams in separate pages. Adjacent rows share
        # a 4 KiB page when rows are short, and the L2 streamer follows one stream per page, so 2560-wide
        # rows streamed at 7-8 GB/s; with 4 streams 13-19, with 8 up to 12% more (docs/kernels.md).
        tile = 4 if bits == 1 else 8
        part = (o1 - o0) // tile
        for rr in range(r, rows):
            for o in range(o0, o0 + part):
                if bits == 2:
                    _t81(wa + o * q + k0, part * q, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, part, 0)
                elif bits == 8:
                    _i81(wa + o * q + k0, part * q, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, part, 0)
                else:
                    _b41(wa + o * q + k0, part * q, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, part, 0)
            o = o0 + tile * part
            while o + 4 <= o1:
                if bits == 2:
                    _t41(wa + o * q + k0, q, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, 1, 0)
                elif bits == 8:
                    _i41(wa + o * q + k0, q, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, 1, 0)
                else:
                    _b41(wa + o * q + k0, q, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, 1, 0)
                o += 4
            while o < o1:
                if bits == 2:
                    _t11(wa + o * q + k0, 0, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, 0, 0)
                elif bits == 8:
                    _i11(wa + o * q + k0, 0, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, 0, 0)
                else:
                    _b11(wa + o * q + k0, 0, xa + rr * width + k0, 0, q, n, oa + (rr * n_out + o) * 4, 0, 0)
                o += 1


@njit(cache=_CACHE, nogil=True)
def _corrected(raw, xsum, bits):
    """x . W from the raw sum x . u of the offset codes u (layout.OFFSET): ternary u = W + 1, int8
    u = W + 128, binary u = (W + 1) / 2."""
    if bits == 2:
        return raw - xsum
    if bits == 8:
        return raw - 128 * xsum
    return 2 * raw - xsum


@njit(**_JIT)
def _int8_driver(w, x, out, bits, block_out, chunk, amx_fn, threads):
    """out (rows, O) int32, zeroed: out = x . W over the layout (see module docstring). w (O, Q) uint8,
    x (rows, P Q) int8 zero-padded, both C-contiguous; bits 2 (ternary), 1 (binary) or 8 (int8). amx_fn
    nonzero: the AMX tiles (`bitscale.kernels.amx.raw_sums`, with scratch for `threads` threads)."""
    n_out, q = w.shape
    rows, width = x.shape
    xsum = np.empty(rows, np.int32)
    for r in prange(rows):
        s = 0
        for k in range(width):
            s += x[r, k]
        xsum[r] = s
    if amx_fn != 0:
        amx.raw_sums(amx_fn, w, bits, x, threads, out)
        for r in prange(rows):
            for o in range(n_out):
                out[r, o] = _corrected(out[r, o], xsum[r], bits)
        return
    n_blocks = (n_out + block_out - 1) // block_out
    for blk in prange(n_blocks):
        o0 = blk * block_out
        o1 = min(n_out, o0 + block_out)
        _int8_block(w.ctypes.data, x.ctypes.data, out.ctypes.data, n_out, q, rows, width, o0, o1, bits, chunk)
        for r in range(rows):
            for o in range(o0, o1):
                out[r, o] = _corrected(out[r, o], xsum[r], bits)


@njit(**_JIT)
def _xnor_driver(w, a, out, in_features, block_out, chunk):
    """out (rows, O) int32, zeroed: out = in_features - 2 popcount(a XOR w). w (O, Q) and a (rows, Q) uint8,
    C-contiguous, in the binary layout with equal (zero) padding bits."""
    n_out, q = w.shape
    rows = a.shape[0]
    wa = w.ctypes.data
    xa = a.ctypes.data
    oa = out.ctypes.data
    n_blocks = (n_out + block_out - 1) // block_out
    for blk in prange(n_blocks):
        o0 = blk * block_out
        o1 = min(n_out, o0 + block_out)
        for k0 in range(0, q, chunk):
            n = min(chunk, q - k0)
            r = 0
            while r + 4 <= rows:
                for o in range(o0, o1):
                    _x14(wa + o * q + k0, 0, xa + r * q + k0, q, n, oa + (r * n_out + o) * 4, 0, n_out)
                r += 4
            for rr in range(r, rows):
                o = o0
                while o + 4 <= o1:
                    _x41(wa + o * q + k0, q, xa + rr * q + k0, 0, n, oa + (rr * n_out + o) * 4, 1, 0)
                    o += 4
                while o < o1:
                    _x11(wa + o * q + k0, 0, xa + rr * q + k0, 0, n, oa + (rr * n_out + o) * 4, 0, 0)
                    o += 1
        for r in range(rows):
            for o in range(o0, o1):
                out[r, o] = in_features - 2 * out[r, o]


@njit(cache=_CACHE, nogil=True)
def _quantize_row(x, r, norm_w, norm_eps, eps, codes, scales, xsum):
    """Row r of x: v = RMSNorm(x[r]) (v = x[r] without a gain, norm_w of length 0), then the per-token
    absmax int8 codes round(v * s), s = 127 / max(max|v|, eps), into codes[r] (already zero-padded), s into
    scales[r] and the codes' sum into xsum[r].

    Without a norm these are the float32 operations of `bitscale.kernels.ops.quantize_activations_int8`
    in its order (torch's 127 / t is reciprocal(t) * 127), so the codes are identical. With one,
    v_j = (x_j * g) * gain_j, g = 1 / sqrt(mean(x^2) + eps) as nn.RMSNorm computes it; mean(x^2) is summed
    in float64 here, so v can differ from torch's in the last bit and a code flip at a rounding tie."""
    n = x.shape[1]
    n8 = n // 8 * 8
    normed = norm_w.shape[0] > 0
    g = np.float32(1)
    if normed:
        # 8 partial sums: without fastmath LLVM keeps a reduction's order, so one accumulator would run
        # at one add per latency; this order is exact enough (float64) and 8 times faster.
        part = np.zeros(8, np.float64)
        for j in range(0, n8, 8):
            for t in range(8):
                v = np.float64(x[r, j + t])
                part[t] += v * v
        ss = 0.0
        for j in range(n8, n):
            v = np.float64(x[r, j])
            ss += v * v
        for t in range(8):
            ss += part[t]
        g = np.float32(1.0 / np.sqrt(ss / n + norm_eps))
    peak = np.zeros(8, np.float32)  # partial maxima, for the same reason as the partial sums
    for j in range(0, n8, 8):
        for t in range(8):
            v = (x[r, j + t] * g) * norm_w[j + t] if normed else x[r, j + t]
            peak[t] = max(peak[t], abs(v))
    m = np.float32(0)
    for j in range(n8, n):
        v = (x[r, j] * g) * norm_w[j] if normed else x[r, j]
        m = max(m, abs(v))
    for t in range(8):
        m = max(m, peak[t])
    if m < eps:
        m = eps
    s = (np.float32(1) / m) * np.float32(127)
    scales[r] = s
    total = 0
    for j in range(n):
        v = (x[r, j] * g) * norm_w[j] if normed else x[r, j]
        c = np.int8(min(max(np.rint(v * s), np.float32(-128)), np.float32(127)))
        codes[r, j] = c
        total += c
    xsum[r] = total


@njit(cache=_CACHE, nogil=True)
def _scaled_block(acc, xsum, scales, weight_scale, bias, bits, o0, o1, y):
    """y[:, o0:o1] = float32(x . W) / s_a * weight_scale (+ bias) from the raw sums in acc."""
    per_channel = weight_scale.shape[0] > 1
    has_bias = bias.shape[0] > 0
    for r in range(acc.shape[0]):
        c = xsum[r]
        for o in range(o0, o1):
            a = _corrected(acc[r, o], c, bits)
            v = (np.float32(a) / scales[r]) * weight_scale[o if per_channel else 0]
            y[r, o] = v + bias[o] if has_bias else v


@njit(**_JIT)
def linear_int8_into(x, norm_w, norm_eps, w, bits, eps, weight_scale, bias, block_out, chunk, amx_fn, threads, y):
    """y (rows, O) float32 = (Q_a(RMSNorm(x)) . W) / s_a * weight_scale + bias in one call: a packed layer's
    whole forward, so that a decode step's GEMV pays one dispatch instead of a dozen torch calls.

    x (rows, in) float32 C-contiguous; norm_w (in,) float32 gain, or length 0 for no norm; w (O, Q) the
    packed layout (bits 2 ternary, 1 binary); weight_scale (1,) or (O,) float32; bias (O,) or length 0.
    Q_a and s_a as in `_quantize_row`; the output is float32(acc) / s_a * weight_scale (+ bias), the
    operations of `bitscale.kernels.ops.packed_linear`'s torch path in its order. Rows are quantized on one
    thread for a GEMV (a parallel region costs more than the work) and in parallel from 4 rows up."""
    rows, n_in = x.shape
    n_out, q = w.shape
    width = q * (8 // bits)
    # np.empty and loops, not np.zeros: in a parallel function numba turns np.zeros into a parallel region
    # of its own, two more fork-joins per call (~12 us each), as much as a small GEMV.
    codes = np.empty((rows, width), np.int8)
    for r in range(rows):
        for j in range(n_in, width):
            codes[r, j] = 0
    scales = np.empty(rows, np.float32)
    xsum = np.empty(rows, np.int32)
    if rows < 4:
        for r in range(rows):
            _quantize_row(x, r, norm_w, norm_eps, eps, codes, scales, xsum)
    else:
        for r in prange(rows):
            _quantize_row(x, r, norm_w, norm_eps, eps, codes, scales, xsum)
    acc = np.empty((rows, n_out), np.int32)
    if amx_fn != 0:
        amx.raw_sums(amx_fn, w, bits, codes, threads, acc)
        for blk in prange((n_out + block_out - 1) // block_out):
            o0 = blk * block_out
            _scaled_block(acc, xsum, scales, weight_scale, bias, bits, o0, min(n_out, o0 + block_out), y)
        return
    n_blocks = (n_out + block_out - 1) // block_out
    for blk in prange(n_blocks):
        o0 = blk * block_out
        o1 = min(n_out, o0 + block_out)
        for r in range(rows):
            for o in range(o0, o1):
                acc[r, o] = 0
        _int8_block(w.ctypes.data, codes.ctypes.data, acc.ctypes.data, n_out, q, rows, width, o0, o1, bits, chunk)
        _scaled_block(acc, xsum, scales, weight_scale, bias, bits, o0, o1, y)


@intrinsic
def _address(typingctx, addr):
    """The integer address `addr` as a void pointer (for numba.carray)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.intp), codegen


def linear_int8_plan(w, bits, weight_scale, norm_w, bias) -> np.ndarray:
    """An int64 array of the addresses and sizes `linear_int8_plan_into` reads: w's address, out, row
    bytes, bits, then the address and length of weight_scale, norm_w and bias. The arrays must stay
    alive, unmoved, as long as the plan is used: the caller keeps them."""
    n_out, q = w.shape
    return np.array([w.ctypes.data, n_out, q, bits, weight_scale.ctypes.data, weight_scale.shape[0],
                     norm_w.ctypes.data, norm_w.shape[0], bias.ctypes.data, bias.shape[0]], np.int64)


@njit(cache=_CACHE, nogil=True)
def linear_int8_plan_into(x, plan, eps, norm_eps, block_out, chunk, amx_fn, threads, y):
    """`linear_int8_into(x, ..., y)` with the layer's arrays read from a `linear_int8_plan`."""
    w = carray(_address(plan[0]), (plan[1], plan[2]), np.uint8)
    scale = carray(_address(plan[4]), (plan[5],), np.float32)
    norm_w = carray(_address(plan[6]), (plan[7],), np.float32)
    bias = carray(_address(plan[8]), (plan[9],), np.float32)
    linear_int8_into(x, norm_w, norm_eps, w, plan[3], eps, scale, bias, block_out, chunk, amx_fn, threads, y)


@njit(cache=_CACHE, nogil=True)
def linear_int8_at(x_addr, rows, n_in, plan, eps, norm_eps, block_out, chunk, amx_fn, threads):
    """y (rows, plan n_out) float32, a new array, = `linear_int8_into` of x (rows, n_in) float32,
    C-contiguous, given by its address; the layer's arrays from `plan`. Integers instead of arrays
    because numba's dispatcher spends about a microsecond per array argument, and y allocated here
    because a torch.empty output cost 10-13 us more per call: both a tenth of a 4096^2 GEMV's time."""
    x = carray(_address(x_addr), (rows, n_in), np.float32)
    y = np.empty((rows, plan[1]), np.float32)
    linear_int8_plan_into(x, plan, eps, norm_eps, block_out, chunk, amx_fn, threads, y)
    return y


@njit(**_JIT)
def stream_sum(buf):
    """Sum of a uint64 buffer over all threads: the memory-bandwidth probe of the benchmark."""
    n = buf.shape[0]
    n_blocks = 256
    step = (n + n_blocks - 1) // n_blocks
    parts = np.zeros(n_blocks, np.uint64)
    for b in prange(n_blocks):
        # numpy's sum on a slice vectorizes; a hand-written scalar loop here ran at a quarter of the speed
        parts[b] = buf[b * step : min(n, (b + 1) * step)].sum()
    return parts.sum()


# -- tiling ---------------------------------------------------------------------------------------------------

_L1_ACT_BYTES = 16 * 1024  # activation chunk of one group of 4 rows kept in L1


def _tiling(n_out: int, q: int, rows: int, planes: int) -> tuple[int, int]:
    """(block_out, chunk) for a call: weight rows per parallel task, row bytes per chunk."""
    threads = numba.get_num_threads()
    block_out = 128 if rows < 4 else 64  # a GEMV's 8 streams per block run 16 rows long at 128
    while block_out > 4 and -(-n_out // block_out) < 4 * threads:
        block_out //= 2
    if rows < 4:
        return block_out, q  # GEMV: whole rows, no activation reuse to tile for
    chunk = max(64, (_L1_ACT_BYTES // (4 * planes)) // 64 * 64)
    return block_out, min(chunk, q)


def amx_args(rows: int) -> tuple[int, int]:
    """(amx_fn, threads) for a kernel call with `rows` activation rows: the AMX tiles' address and numba's
    thread count from amx.MIN_ROWS rows, else (0, 1), the VNNI kernels (get_num_threads costs ~5 us, a
    few percent of a 4096^2 GEMV, and only the AMX path needs it)."""
    amx_fn = amx.function_for(rows)
    return amx_fn, numba.get_num_threads() if amx_fn else 1


def int8_matmul(w_packed: np.ndarray, x_padded: np.ndarray, bits: int) -> np.ndarray:
    """int32 (rows, O) = x . W for packed weights (O, Q) uint8 and zero-padded int8 activations (rows, P Q)."""
    n_out, q = w_packed.shape
    rows = x_padded.shape[0]
    out = np.zeros((rows, n_out), np.int32)
    if rows == 0 or n_out == 0:
        return out
    block_out, chunk = _tiling(n_out, q, rows, 8 // bits)
    _int8_driver(w_packed, x_padded, out, bits, block_out, chunk, *amx_args(rows))
    return out


def xnor_matmul(w_packed: np.ndarray, a_packed: np.ndarray, in_features: int) -> np.ndarray:
    """int32 (rows, O) = sign(x) . W (both +-1) from packed binary weights and packed activation signs."""
    n_out, q = w_packed.shape
    rows = a_packed.shape[0]
    out = np.zeros((rows, n_out), np.int32)
    if rows == 0 or n_out == 0:
        return out
    block_out, chunk = _tiling(n_out, q, rows, 1)
    _xnor_driver(w_packed, a_packed, out, in_features, block_out, chunk)
    return out


def warm_up() -> None:
    """Compile (or load from the cache) every kernel on tiny inputs."""
    w = np.zeros((4, 64), np.uint8)
    for bits in (2, 1, 8):
        for rows in (1, 4):
            int8_matmul(w, np.zeros((rows, 64 * 8 // bits), np.int8), bits)
    xnor_matmul(w, np.zeros((1, 64), np.uint8), 1)
    for rows in (1, 4):
        x, gain, scale, bias = (np.zeros((rows, 8), np.float32), np.ones(8, np.float32), np.ones(1, np.float32),
                                np.zeros(0, np.float32))
        plan = linear_int8_plan(w, 2, scale, gain, bias)
        linear_int8_at(x.ctypes.data, rows, 8, plan, np.float32(1e-5), 1e-6, 4, 64, 0, 1)
    stream_sum(np.zeros(8, np.uint64))
    amx.address()
