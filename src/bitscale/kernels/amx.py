"""Intel AMX int8 tiles for the packed GEMM (batch >= MIN_ROWS: a prefill), beside the VNNI kernels of `cpu`.

An AMX core holds eight tile registers of 16 rows x 64 bytes, and one `tdpbusd` adds to a 16 x 16 int32
tile C the products of a 16 x 64 u8 tile A and a 64 x 16 s8 tile B (B stored in the "VNNI" order: row r
of the tile holds k = 4r .. 4r + 3 of each of the 16 columns), 16,384 multiply-adds in one instruction
against 1,024 for AVX-512's `vpdpbusd`. On this project's Xeon runners torch's bf16 `F.linear` uses AMX
too, and the VNNI GEMM could not beat it at batch 64; with AMX int8 tiles it does (benchmarks/RESULTS.md).

    C[m, n] = sum_k A[m, k] B[k, n],  A = the weight codes u (W + 1 ternary, (W + 1) / 2 binary, W + 128
    int8: the offset codes of `bitscale.kernels.layout`), B = the activations' int8 codes,

and the caller corrects x . W = S - sum x as for the VNNI kernels (`cpu._corrected`).

The work is blocked by 32 weight rows (two A tiles) x 32 activation rows (two B tiles, four C tiles):
- the activations are rearranged once per call into B blocks (`pack_vnni`), 1 KiB per 16 rows x 64 k;
- per block of 32 weight rows the packed codes are unpacked once into a per-thread "panel" of u8 codes,
  k-block-major (`unpack_panel`; 32 x padded in_features bytes, L2-resident), and every group of 32
  activation rows runs `tile_gemm_32x32` over it: per 64 k, two A and two B tile loads and four `tdpbusd`.

`tile_gemm_32x32` is LLVM IR written here and compiled by llvmlite's MCJIT (numba's own IR builder has
no x86_amx type); numba code calls it through its address (`address()`). LLVM's AMX passes configure the
tiles (`ldtilecfg`) at the function's entry and release them at its exit. Linux lets a process use the
tile registers only after `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, asked for here once.
`address()` is 0, and the callers use the VNNI kernels, without AMX-INT8 in the host's features, off
Linux x86-64, when that request is refused, with BITSCALE_KERNELS_NO_AMX=1, or with
BITSCALE_KERNELS_GENERIC=1 (portable kernels only). The IR is compiled in each process, for the host
(a few milliseconds), not cached.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

NO_AMX_ENV = "BITSCALE_KERNELS_NO_AMX"
GENERIC_ENV = "BITSCALE_KERNELS_GENERIC"  # set to 1: never emit VNNI or AMX instructions (cpu reads it from here)
MIN_ROWS = 32  # activation rows from which the AMX path runs: below, half a 32-row group would be padding
TILE = 32  # weight rows and activation rows per block
_CACHE = os.environ.get(GENERIC_ENV, "") in ("", "0")

_IR = r"""
declare x86_amx @llvm.x86.tilezero.internal(i16, i16)
declare x86_amx @llvm.x86.tileloadd64.internal(i16, i16, ptr, i64)
declare x86_amx @llvm.x86.tdpbusd.internal(i16, i16, i16, x86_amx, x86_amx, x86_amx)
declare void @llvm.x86.tilestored64.internal(i16, i16, ptr, i64, x86_amx)

; c (32 x 32 int32, rows 128 bytes apart) = sum over kb < nkb of
;   a[kb] (32 rows x 64 u8, 2 KiB per kb, rows 64 bytes apart) . (b0[kb] | b1[kb]) (16 columns each, 1 KiB per kb)
define void @tile_gemm_32x32(ptr %a, ptr %b0, ptr %b1, i64 %nkb, ptr %c) {
entry:
  %z = call x86_amx @llvm.x86.tilezero.internal(i16 16, i16 64)
  %any = icmp sgt i64 %nkb, 0
  br i1 %any, label %loop, label %done
loop:
  %kb = phi i64 [0, %entry], [%kb.next, %loop]
  %c00 = phi x86_amx [%z, %entry], [%n00, %loop]
  %c01 = phi x86_amx [%z, %entry], [%n01, %loop]
  %c10 = phi x86_amx [%z, %entry], [%n10, %loop]
  %c11 = phi x86_amx [%z, %entry], [%n11, %loop]
  %aoff = mul i64 %kb, 2048
  %pa0 = getelementptr i8, ptr %a, i64 %aoff
  %pa1 = getelementptr i8, ptr %pa0, i64 1024
  %boff = mul i64 %kb, 1024
  %pb0 = getelementptr i8, ptr %b0, i64 %boff
  %pb1 = getelementptr i8, ptr %b1, i64 %boff
  %a0 = call x86_amx @llvm.x86.tileloadd64.internal(i16 16, i16 64, ptr %pa0, i64 64)
  %a1 = call x86_amx @llvm.x86.tileloadd64.internal(i16 16, i16 64, ptr %pa1, i64 64)
  %t0 = call x86_amx @llvm.x86.tileloadd64.internal(i16 16, i16 64, ptr %pb0, i64 64)
  %t1 = call x86_amx @llvm.x86.tileloadd64.internal(i16 16, i16 64, ptr %pb1, i64 64)
  %n00 = call x86_amx @llvm.x86.tdpbusd.internal(i16 16, i16 64, i16 64, x86_amx %c00, x86_amx %a0, x86_amx %t0)
  %n01 = call x86_amx @llvm.x86.tdpbusd.internal(i16 16, i16 64, i16 64, x86_amx %c01, x86_amx %a0, x86_amx %t1)
  %n10 = call x86_amx @llvm.x86.tdpbusd.internal(i16 16, i16 64, i16 64, x86_amx %c10, x86_amx %a1, x86_amx %t0)
  %n11 = call x86_amx @llvm.x86.tdpbusd.internal(i16 16, i16 64, i16 64, x86_amx %c11, x86_amx %a1, x86_amx %t1)
  %kb.next = add i64 %kb, 1
  %more = icmp slt i64 %kb.next, %nkb
  br i1 %more, label %loop, label %done
done:
  %f00 = phi x86_amx [%z, %entry], [%n00, %loop]
  %f01 = phi x86_amx [%z, %entry], [%n01, %loop]
  %f10 = phi x86_amx [%z, %entry], [%n10, %loop]
  %f11 = phi x86_amx [%z, %entry], [%n11, %loop]
  %pc01 = getelementptr i8, ptr %c, i64 64
  %pc10 = getelementptr i8, ptr %c, i64 2048
  %pc11 = getelementptr i8, ptr %c, i64 2112
  call void @llvm.x86.tilestored64.internal(i16 16, i16 64, ptr %c, i64 128, x86_amx %f00)
  call void @llvm.x86.tilestored64.internal(i16 16, i16 64, ptr %pc01, i64 128, x86_amx %f01)
  call void @llvm.x86.tilestored64.internal(i16 16, i16 64, ptr %pc10, i64 128, x86_amx %f10)
  call void @llvm.x86.tilestored64.internal(i16 16, i16 64, ptr %pc11, i64 128, x86_amx %f11)
  ret void
}
"""

_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158  # x86-64

_state: dict = {}  # "address": int, "engine": the MCJIT engine that owns the code (kept alive)


def _host_has_amx() -> bool:
    if any(os.environ.get(name, "") not in ("", "0") for name in (NO_AMX_ENV, GENERIC_ENV)):
        return False
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        features = llvm.get_host_cpu_features()
    except RuntimeError:  # pragma: no cover - hosts without a feature list
        return False
    return bool(features.get("amx-int8") and features.get("amx-tile"))


def _compile() -> int:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(_IR)
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    _state["engine"] = engine
    return int(engine.get_function_address("tile_gemm_32x32"))


def address() -> int:
    """The address of the compiled `tile_gemm_32x32`, or 0 where AMX cannot be used (module docstring)."""
    if "address" not in _state:
        addr = 0
        if _host_has_amx():
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0:
                addr = _compile()
        _state["address"] = addr
    return _state["address"]


def function_for(rows: int) -> int:
    """What a kernel call with `rows` activation rows passes as its `amx` argument: address() from
    MIN_ROWS rows, 0 (the VNNI kernels) below."""
    return address() if rows >= MIN_ROWS else 0


_P8 = ir.IntType(8).as_pointer()
_I64 = ir.IntType(64)


@intrinsic
def _tile_gemm(typingctx, fn, a, b0, b1, nkb, c):
    """Call the compiled tile_gemm_32x32 at address fn (all arguments integers: addresses and nkb)."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [_P8, _P8, _P8, _I64, _P8])
        callee = builder.inttoptr(args[0], fnty.as_pointer())
        a_, b0_, b1_, nkb_, c_ = args[1:]
        builder.call(callee, [builder.inttoptr(a_, _P8), builder.inttoptr(b0_, _P8), builder.inttoptr(b1_, _P8),
                              nkb_, builder.inttoptr(c_, _P8)])
        return context.get_dummy_value()

    return types.void(*([types.intp] * 6)), codegen


@njit(cache=_CACHE, nogil=True)
def pack_vnni(x):
    """int8 activation codes x (rows, width), width a multiple of 64, as B blocks: an int32 array
    (groups, width / 64, 16, 16) with groups = 2 ceil(rows / 32) and block[g, kb, r, n] = the 4 bytes
    x[16 g + n, 64 kb + 4 r .. 64 kb + 4 r + 3] (rows past the end: 0)."""
    rows, width = x.shape
    nkb = width // 64
    groups = 2 * ((rows + TILE - 1) // TILE)
    out = np.empty((groups, nkb, 16, 16), np.int32)
    x32 = x.view(np.int32)
    for g in range(groups):
        for n in range(16):
            row = 16 * g + n
            if row < rows:
                for kb in range(nkb):
                    for r in range(16):
                        out[g, kb, r, n] = x32[row, 16 * kb + r]
            else:
                for kb in range(nkb):
                    for r in range(16):
                        out[g, kb, r, n] = 0
    return out


_I16x32 = ir.VectorType(ir.IntType(16), 32)


def _unpack_row_kernel(bits: int):
    """Intrinsic k(src, nbytes, dst): the codes of one packed row (nbytes, a multiple of 64) into its
    panel row: per 64 bytes jb, plane t's 64 codes (byte >> t bits) & mask to dst + 2048 (t nbytes / 64
    + jb). Vector IR, because numba's loop over a 3-d panel ran at 5 GB/s, slower than the tiles."""
    planes, mask = 8 // bits, (1 << bits) - 1

    def codegen(context, builder, signature, args):
        src, nbytes, dst = args
        nblocks = builder.udiv(nbytes, ir.Constant(_I64, 64))
        mask16 = ir.Constant(_I16x32, [mask | (mask << 8)] * 32)
        with cgutils.for_range(builder, nblocks) as loop:
            off = builder.mul(loop.index, ir.Constant(_I64, 64))
            v = builder.load(builder.inttoptr(builder.add(src, off), _I16x32.as_pointer()), align=1)
            for t in range(planes):
                u = v if t == 0 else builder.lshr(v, ir.Constant(_I16x32, [t * bits] * 32))
                if bits != 8:
                    u = builder.and_(u, mask16)
                kb = builder.add(builder.mul(nblocks, ir.Constant(_I64, t)), loop.index)
                at = builder.add(dst, builder.mul(kb, ir.Constant(_I64, 64 * TILE)))
                builder.store(u, builder.inttoptr(at, _I16x32.as_pointer()), align=1)
        return context.get_dummy_value()

    def typer(typingctx, src, nbytes, dst):
        return types.void(types.intp, types.intp, types.intp), codegen

    return intrinsic(typer)


_unpack1, _unpack2, _unpack8 = _unpack_row_kernel(1), _unpack_row_kernel(2), _unpack_row_kernel(8)


@njit(cache=_CACHE, nogil=True)
def unpack_panel(w, o0, bits, panel):
    """The codes of weight rows o0 .. o0 + 31 of the packed layout w (O, Q) into panel (planes Q / 64, 32,
    64) uint8, k-block-major: panel[kb, m, j] = code of row o0 + m at k = 64 kb + j (plane t = kb // (Q /
    64), byte 64 (kb % (Q / 64)) + j of the row; layout.py). Rows past O: u = 0."""
    n_out, q = w.shape
    for m in range(TILE):
        o = o0 + m
        if o < n_out:
            src, dst = w.ctypes.data + o * q, panel.ctypes.data + 64 * m
            if bits == 2:
                _unpack2(src, q, dst)
            elif bits == 1:
                _unpack1(src, q, dst)
            else:
                _unpack8(src, q, dst)
        else:
            for kb in range(panel.shape[0]):
                for j in range(64):
                    panel[kb, m, j] = 0


@njit(cache=_CACHE, nogil=True)
def block_raw_sums(fn, w, o0, bits, b, rows, panel, c, acc):
    """Raw sums S[r, o] = x[r] . u[o] of weight rows o0 .. o0 + 31 (those < O) against every activation
    row (the B blocks b = pack_vnni(x) of `rows` rows) into acc (rows, O) int32, through a panel
    (`unpack_panel`'s shape) and a 32 x 32 int32 scratch c, both the calling thread's own."""
    n_out = w.shape[0]
    nkb = b.shape[1]
    unpack_panel(w, o0, bits, panel)
    o_end = min(n_out, o0 + TILE)
    for pair in range(b.shape[0] // 2):
        _tile_gemm(fn, panel.ctypes.data, b[2 * pair].ctypes.data, b[2 * pair + 1].ctypes.data, nkb, c.ctypes.data)
        # c is (weight row, activation row); acc is (activation row, weight row) and larger than L2, so
        # walk it row by row (two cache lines per row) and c, which stays in L1, by columns.
        for r in range(TILE * pair, min(rows, TILE * (pair + 1))):
            for o in range(o0, o_end):
                acc[r, o] = c[o - o0, r - TILE * pair]


@njit(parallel=True, fastmath=False, cache=_CACHE, nogil=True)
def raw_sums(fn, w, bits, x, threads, acc):
    """acc (rows, O) int32 = the raw sums x . u of the int8 activation codes x (rows, width), zero-padded,
    against every weight row of the packed layout w, through the tiles at fn. Each of `threads` tasks
    takes a contiguous run of 32-row weight blocks (round robin over the blocks ran twice as slow) with
    its own panel and C tile; `threads` is the caller's numba.get_num_threads(), passed in because the
    call inside a kernel would keep the kernel out of numba's disk cache."""
    n_out = w.shape[0]
    rows, width = x.shape
    b = pack_vnni(x)
    panels = np.empty((threads, width // 64, TILE, 64), np.uint8)
    tiles = np.empty((threads, TILE, TILE), np.int32)
    n_blocks = (n_out + TILE - 1) // TILE
    per = (n_blocks + threads - 1) // threads
    for t in prange(threads):
        for blk in range(t * per, min(n_blocks, (t + 1) * per)):
            block_raw_sums(fn, w, blk * TILE, bits, b, rows, panels[t], tiles[t], acc)
