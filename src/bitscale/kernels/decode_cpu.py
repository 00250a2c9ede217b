"""One decode step of a packed decoder's blocks in one numba call: the llama.cpp-style loop.

At a decode step (one new token per sequence) a block is seven GEMVs and a handful of vector operations
on d_model floats. Run as torch operations between numba kernels, the vector work costs a few
microseconds per call, dozens of calls per block, and every switch between torch's and numba's OpenMP
thread pools stalls on the other pool's spinning workers (benchmarks/RESULTS.md, module_overhead). Here
the whole stack of blocks runs in numba, one pool, one dispatch per token:

    for each block l:
        x        = n_attn(h)                                   (block RMSNorm in twin mode, else x = h)
        q, k, v  = Wq x, Wk x, Wv x                            (packed, each with its own RMSNorm in recipe mode)
        q, k     = RoPE(q, pos), RoPE(k, pos)                  (pairs (2i, 2i+1), as models.decoder.apply_rope)
        K[pos], V[pos] = k, v                                  (the KV cache, written in place)
        y_h      = sum_t softmax_t(q_h . K_h[t] / sqrt(hd)) V_h[t],  t <= pos, per head h
        h        = h + Wo y
        x        = n_mlp(h)
        h        = h + Wdown (silu(Wgate x) * Wup x)           ("swiglu"; "relu2": relu(Wup x)^2)

Each W is a `bitscale.kernels.cpu.linear_int8_plan` (norm, int8 activation codes, the ternary / binary / int8
kernel, scales and bias in one `linear_int8_plan_into`). The final norm and the head stay with the caller
(`bitscale.models.fast_decode`). Float32 throughout; sums run in other orders than torch's, so the hidden
states agree with the torch path to float tolerance, not bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu import _CACHE, linear_int8_plan_into

# Slots of the plan array's second axis: a block's projections in the order of
# bitscale.models.decoder.BLOCK_PROJECTIONS (the model layer knows their names).
Q, K, V, O, GATE, UP, DOWN = range(7)


@njit(cache=_CACHE, nogil=True)
def _rms_norm(h, gain, eps, out):
    """out = h / sqrt(mean(h^2) + eps) * gain per row, float32 as nn.RMSNorm (the mean summed in float64)."""
    rows, n = h.shape
    for r in range(rows):
        ss = 0.0
        for j in range(n):
            v = np.float64(h[r, j])
            ss += v * v
        g = np.float32(1.0 / np.sqrt(ss / n + eps))
        for j in range(n):
            out[r, j] = (h[r, j] * g) * gain[j]


@njit(cache=_CACHE, nogil=True)
def _rope(x, n_head, head_dim, cos, sin, pos):
    """Rotate, in place, the pairs (2i, 2i+1) of every head of x (rows, n_head * head_dim) by position pos."""
    rows = x.shape[0]
    half = head_dim // 2
    for r in range(rows):
        for hh in range(n_head):
            base = hh * head_dim
            for i in range(half):
                a, b = x[r, base + 2 * i], x[r, base + 2 * i + 1]
                c, s = cos[pos, i], sin[pos, i]
                x[r, base + 2 * i] = a * c - b * s
                x[r, base + 2 * i + 1] = a * s + b * c


# Reassociation for the attention's dot products and sums, so that LLVM vectorizes them (an ordered float
# reduction runs at one add per latency); no nnan / ninf: the running maximum starts at -inf.
_ATTENTION_MATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(parallel=True, cache=_CACHE, nogil=True, fastmath=_ATTENTION_MATH)
def _attend(q, kc, vc, pos, n_head, head_dim, y):
    """y[b, head] = softmax(q . K[:pos+1] / sqrt(hd)) V[:pos+1] for every sequence b and head, in parallel
    over (b, head); kc, vc (B, H, max_len, hd) of one layer. The loops run over 1-d views: indexed through
    the 4-d arrays with computed offsets they did not vectorize and ran 4-6 times slower."""
    rows = q.shape[0]
    scale = np.float32(1.0 / np.sqrt(head_dim))
    n_t = pos + 1
    for task in prange(rows * n_head):
        b, hh = task // n_head, task % n_head
        qh = q[b, hh * head_dim : (hh + 1) * head_dim]
        kh, vh = kc[b, hh], vc[b, hh]
        scores = np.empty(n_t, np.float32)
        peak = np.float32(-np.inf)
        for t in range(n_t):
            kr = kh[t]
            acc = np.float32(0)
            for i in range(head_dim):
                acc += qh[i] * kr[i]
            acc *= scale
            scores[t] = acc
            peak = max(peak, acc)
        total = np.float32(0)
        for t in range(n_t):
            e = np.exp(scores[t] - peak)
            scores[t] = e
            total += e
        out = np.zeros(head_dim, np.float32)
        for t in range(n_t):
            p = scores[t] / total
            vr = vh[t]
            for i in range(head_dim):
                out[i] += p * vr[i]
        y[b, hh * head_dim : (hh + 1) * head_dim] = out


@njit(cache=_CACHE, nogil=True)
def decoder_blocks(h, plans, eps, norm_eps, tiling, gains, gain_eps, twin, relu2, kc, vc, pos, cos, sin, n_head):
    """Advance h (B, d) float32, in place, through every block at position `pos`; keys and values go to
    kc, vc (n_layer, B, H, max_len, hd) at `pos`.

    plans (n_layer, 7, plan fields) int64, eps (n_layer, 7) float32 and norm_eps (n_layer, 7) float64 per
    projection (slots Q .. DOWN; the gate's row is unused with relu2), tiling (n_layer, 7, 2) the
    GEMV (block_out, chunk); gains (n_layer, 2, d) float32 the twin mode's block norms (attention, MLP)
    with eps gain_eps, used when `twin`; cos, sin (block_size, hd / 2) the RoPE tables."""
    rows, d = h.shape
    head_dim = d // n_head
    n_layer = plans.shape[0]
    x = np.empty((rows, d), np.float32)
    q = np.empty((rows, d), np.float32)
    k = np.empty((rows, d), np.float32)
    v = np.empty((rows, d), np.float32)
    y = np.empty((rows, d), np.float32)
    f = plans[0, UP, 1]
    up = np.empty((rows, f), np.float32)
    gate = np.empty((rows, f), np.float32)
    for layer in range(n_layer):
        p, e, ne, tl = plans[layer], eps[layer], norm_eps[layer], tiling[layer]
        if twin:
            _rms_norm(h, gains[layer, 0], gain_eps, x)
        else:
            x[:] = h
        linear_int8_plan_into(x, p[Q], e[Q], ne[Q], tl[Q, 0], tl[Q, 1], 0, 1, q)
        linear_int8_plan_into(x, p[K], e[K], ne[K], tl[K, 0], tl[K, 1], 0, 1, k)
        linear_int8_plan_into(x, p[V], e[V], ne[V], tl[V, 0], tl[V, 1], 0, 1, v)
        _rope(q, n_head, head_dim, cos, sin, pos)
        _rope(k, n_head, head_dim, cos, sin, pos)
        for b in range(rows):
            for hh in range(n_head):
                for i in range(head_dim):
                    kc[layer, b, hh, pos, i] = k[b, hh * head_dim + i]
                    vc[layer, b, hh, pos, i] = v[b, hh * head_dim + i]
        _attend(q, kc[layer], vc[layer], pos, n_head, head_dim, y)
        linear_int8_plan_into(y, p[O], e[O], ne[O], tl[O, 0], tl[O, 1], 0, 1, x)
        h += x
        if twin:
            _rms_norm(h, gains[layer, 1], gain_eps, x)
        else:
            x[:] = h
        linear_int8_plan_into(x, p[UP], e[UP], ne[UP], tl[UP, 0], tl[UP, 1], 0, 1, up)
        if relu2:
            for b in range(rows):
                for j in range(f):
                    a = max(up[b, j], np.float32(0))
                    up[b, j] = a * a
        else:
            linear_int8_plan_into(x, p[GATE], e[GATE], ne[GATE], tl[GATE, 0], tl[GATE, 1], 0, 1, gate)
            for b in range(rows):
                for j in range(f):
                    g = gate[b, j]
                    up[b, j] = (g / (np.float32(1) + np.exp(-g))) * up[b, j]
        linear_int8_plan_into(up, p[DOWN], e[DOWN], ne[DOWN], tl[DOWN, 0], tl[DOWN, 1], 0, 1, x)
        h += x
