"""The empirical neural tangent kernel (NTK) of a scalar-output model.

    H[i, j] = < df(x1_i)/dtheta, df(x2_j)/dtheta >,   theta = the model's trainable parameters

(Jacot, Gabriel & Hongler 2018). Gradient descent with a small step on the squared loss moves the
outputs by -lr * H (f - y), so H is the kernel that training actually follows.

For quantized models (BitLinear with sign / ternary / int-k weights) the gradient is the one backprop
computes, i.e. the straight-through estimator's (STE) surrogate gradient. The quantizer itself is
piecewise constant: an exact sign function has zero derivative almost everywhere, so the model's *true*
NTK with respect to the latent weights is zero. The STE kernel computed here is the one that drives
quantization-aware training, and it depends on the STE rule (see `bitscale.quant.ste` and
`bitscale.theory.analytic` for its infinite-width limit).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["empirical_ntk"]

# A Jacobian block (chunk of points x trainable parameters) holds about this many elements at most when
# `chunk` is not given: 2**27 elements = 512 MiB at float32. Two blocks are alive at a time.
BLOCK_ELEMENTS = 1 << 27
# The x2-side Jacobian blocks are computed once and kept when all of them together hold at most this many
# elements (1 GiB at float32); otherwise they are recomputed for every x1 block.
CACHE_ELEMENTS = 1 << 28


def _trainable(model: nn.Module) -> tuple[list[str], list[Tensor]]:
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("empirical_ntk: the model has no trainable parameters (requires_grad=True)")
    return [k for k, _ in named], [p for _, p in named]


def _check_output(y: Tensor, n: int) -> None:
    if y.shape != (n,):
        raise ValueError(
            f"empirical_ntk: expected a scalar-output model with output shape ({n},), got {tuple(y.shape)}"
        )


def _jac_func(model: nn.Module, names: list[str], params: list[Tensor], x: Tensor) -> list[Tensor]:
    """Per-point gradients with torch.func: vmap(jacrev(functional_call)). Raises for models whose
    autograd.Functions lack `setup_context` (the STEs of bitscale.quant), see `_jacobian`."""
    from torch.func import functional_call, jacrev, vmap

    detached = {k: p.detach() for k, p in zip(names, params)}

    def f(p: dict, xi: Tensor) -> Tensor:
        y = functional_call(model, p, (xi.unsqueeze(0),))
        _check_output(y, 1)
        return y[0]

    jac = vmap(jacrev(f), in_dims=(None, 0))(detached, x)
    return [jac[k] for k in names]


def _jac_batched(model: nn.Module, names: list[str], params: list[Tensor], x: Tensor) -> list[Tensor]:
    """Per-point gradients with one forward and a vmapped backward (torch.autograd, is_grads_batched)."""
    with torch.enable_grad():
        y = model(x)
        _check_output(y, x.shape[0])
        eye = torch.eye(x.shape[0], dtype=y.dtype, device=y.device)
        grads = torch.autograd.grad(y, params, eye, is_grads_batched=True, allow_unused=True)
    return [torch.zeros(x.shape[0], *p.shape, dtype=p.dtype, device=p.device) if g is None else g
            for g, p in zip(grads, params)]


def _jac_loop(model: nn.Module, names: list[str], params: list[Tensor], x: Tensor) -> list[Tensor]:
    """Per-point gradients, one backward pass per point (the slow, always-working reference)."""
    rows = []
    with torch.enable_grad():
        for i in range(x.shape[0]):
            y = model(x[i : i + 1])
            _check_output(y, 1)
            g = torch.autograd.grad(y[0], params, allow_unused=True)
            rows.append([torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params)])
    return [torch.stack(col) for col in zip(*rows)]


_BACKENDS = {"func": _jac_func, "batched": _jac_batched, "loop": _jac_loop}


class _Jacobian:
    """Computes Jacobian blocks (chunk of points, flattened parameters), picking the first backend that
    works for the model: torch.func, then autograd with batched grads, then a per-point loop."""

    def __init__(self, model: nn.Module, backend: str = "auto") -> None:
        self.model = model
        self.names, self.params = _trainable(model)
        self.order = ["func", "batched", "loop"] if backend == "auto" else [backend]
        if any(b not in _BACKENDS for b in self.order):
            raise ValueError(f"empirical_ntk: unknown backend {backend!r}; expected auto, func, batched or loop")

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params)

    def __call__(self, x: Tensor) -> Tensor:
        while True:
            backend = self.order[0]
            try:
                cols = _BACKENDS[backend](self.model, self.names, self.params, x)
                break
            except ValueError:
                raise
            except Exception:
                if len(self.order) == 1:
                    raise
                self.order.pop(0)  # e.g. torch.func on a non-functorch autograd.Function; try the next
        return torch.cat([c.reshape(x.shape[0], -1) for c in cols], dim=1)

    @property
    def backend(self) -> str:
        return self.order[0]


def _two_layer_fast_path_ok(model: nn.Module) -> bool:
    """TwoLayerNet with ReLU, a BitLinear of full-precision activations and no norm, fp32 or sign
    weights, and no trainable parameters besides hidden.weight and a: its NTK has a closed form."""
    from ..models import TwoLayerNet

    if type(model) is not TwoLayerNet or model.activation != "relu":
        return False
    hidden, c = model.hidden, model.config
    if hidden.norm is not None or hidden.bias is not None or c.act != "fp32" or c.weight not in ("fp32", "sign"):
        return False
    allowed = {id(hidden.weight), id(model.a)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return bool(trainable) and all(id(p) in allowed for p in trainable)


@torch.no_grad()
def _two_layer_ntk(model: nn.Module, x1: Tensor, x2: Tensor, chunk: int | None) -> Tensor:
    """The TwoLayerNet NTK from its closed form (what backprop computes, without the Jacobian):

        hidden: kappa^2/m sum_r a_r^2 1[z_r(x) > 0] 1[z_r(x') > 0] sum_j x_j x'_j g'(w_rj)^2
        a:      kappa^2/m sum_r relu(z_r(x)) relu(z_r(x'))

    with z_r(x) = <Q(w_r), x> the layer's own forward and g' the config's STE (1 for fp32 weights)."""
    from ..quant.ste import ste_grad

    hidden, c = model.hidden, model.config
    scale = model.kappa**2 / model.m
    out = torch.zeros(x1.shape[0], x2.shape[0], dtype=torch.float64, device=x1.device)
    w = hidden.weight
    step = chunk or 1024
    z2 = hidden(x2).to(torch.float64)
    if w.requires_grad:
        a2 = model.a.to(torch.float64) ** 2
        if c.weight == "fp32":
            g2 = None
        else:
            g2 = ste_grad(w.detach(), torch.ones_like(w), c.ste, c.ste_clip).to(torch.float64) ** 2
            if bool((g2 == 1).all()):
                g2 = None  # identity STE: one matmul
        act2 = (z2 > 0).to(torch.float64)
        xx2 = x2.to(torch.float64)
        for s in range(0, x1.shape[0], step):
            xb = x1[s : s + step]
            act1 = (hidden(xb) > 0).to(torch.float64) * a2
            xx1 = xb.to(torch.float64)
            if g2 is None:
                out[s : s + step] += (xx1 @ xx2.T) * (act1 @ act2.T)
            else:
                # counts of active units weighted by g'^2, in the model's dtype (exact for 0/1 weights
                # in float32 up to 2^24 units), then accumulated in float64
                lo1, lo2, lo_g = act1.to(w.dtype), act2.to(w.dtype), g2.to(w.dtype)
                for j in range(w.shape[1]):
                    counts = ((lo1 * lo_g[:, j]) @ lo2.T).to(torch.float64)
                    out[s : s + step] += torch.outer(xx1[:, j], xx2[:, j]) * counts
    if model.a.requires_grad:
        f2 = z2.clamp(min=0)
        for s in range(0, x1.shape[0], step):
            out[s : s + step] += hidden(x1[s : s + step]).to(torch.float64).clamp(min=0) @ f2.T
    return scale * out


def _ntk(model: nn.Module, x1: Tensor, x2: Tensor | None, chunk: int | None, backend: str) -> Tensor:
    if backend in ("auto", "two_layer") and _two_layer_fast_path_ok(model):
        out = _two_layer_ntk(model, x1, x1 if x2 is None else x2, chunk)
        return 0.5 * (out + out.T) if x2 is None else out
    if backend == "two_layer":
        raise ValueError("empirical_ntk: the two_layer backend needs a ReLU TwoLayerNet with fp32/sign weights")
    jac = _Jacobian(model, backend)
    n_params = jac.n_params
    symmetric = x2 is None
    if symmetric:
        x2 = x1
    if x1.ndim < 1 or x2.ndim < 1:
        raise ValueError("empirical_ntk: x1 and x2 need a leading batch dimension")
    if chunk is None:
        chunk = max(1, BLOCK_ELEMENTS // max(n_params, 1))
    if chunk < 1:
        raise ValueError(f"empirical_ntk: chunk must be positive, got {chunk}")
    n1, n2 = x1.shape[0], x2.shape[0]
    out = torch.zeros(n1, n2, dtype=torch.float64, device=x1.device)
    starts1 = list(range(0, n1, chunk))
    starts2 = list(range(0, n2, chunk))
    cache: dict[int, Tensor] | None = {} if n2 * n_params <= CACHE_ELEMENTS else None

    def block2(s: int) -> Tensor:
        if cache is not None and s in cache:
            return cache[s]
        j = jac(x2[s : s + chunk])
        if cache is not None:
            cache[s] = j
        return j

    for s1 in starts1:
        j1 = jac(x1[s1 : s1 + chunk])
        if symmetric and cache is not None:
            cache[s1] = j1
        for s2 in starts2:
            if symmetric and s2 < s1:
                continue  # filled in from the transpose below
            j2 = j1 if (symmetric and s2 == s1) else block2(s2)
            h = (j1 @ j2.T).to(torch.float64)
            out[s1 : s1 + chunk, s2 : s2 + chunk] = h
            if symmetric and s2 != s1:
                out[s2 : s2 + chunk, s1 : s1 + chunk] = h.T
        del j1
    if symmetric:
        out = 0.5 * (out + out.T)  # exact symmetry (the diagonal blocks' matmul may differ in the last bit)
    return out


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None, *, chunk: int | None = None) -> Tensor:
    """The empirical NTK Gram matrix H[i, j] = <df(x1_i)/dtheta, df(x2_j)/dtheta>, shape (n1, n2), float64.

    Args:
        model: a scalar-output model, `model(x)` of shape (n,) for x of shape (n, ...). theta is the set
            of its trainable parameters (requires_grad=True); frozen ones (e.g. TwoLayerNet's `a` unless
            train_a) do not count.
        x1, x2: inputs, (n1, ...) and (n2, ...); x2=None means x2 = x1 (then only the blocks on and above
            the diagonal are computed, and H is exactly symmetric).
        chunk: points per Jacobian block. Default: as many as keep a block (chunk x #params) at about
            2**27 elements (512 MiB at float32). The full Jacobian (n x #params) is never materialized
            unless the x2 side fits in 2**28 elements, in which case its blocks are kept, not recomputed.

    Computation: for a ReLU `TwoLayerNet` with fp32 or sign weights (full-precision activations), the
    closed form of its gradient is used, with the layer's own forward and STE rule (no Jacobian at all;
    tested equal to the generic path). Otherwise: per-point gradients for a chunk of points (torch.func `vmap(jacrev(functional_call))`
    where the model composes with torch.func; otherwise one forward and a batched backward through
    `torch.autograd.grad(..., is_grads_batched=True)`; otherwise a per-point loop). Each block product
    J1 J2^T is taken in the model's dtype and stored in a float64 matrix.

    This is the kernel that (small-step) gradient training actually follows: df = -lr * H (f - y). For
    quantized layers the gradient is the straight-through estimator's, so this is the *STE kernel*; the
    exact quantizer (e.g. sign) has zero derivative almost everywhere, and its true NTK is zero. The
    STE kernel depends on the rule: for `paper-1bit` (sign weights; its default STE is `clipped`,
    g'(w) = 1{|w| <= 1}) it is about erf(1/sqrt 2) = 0.683 times the identity STE's kernel.
    """
    return _ntk(model, x1, x2, chunk, "auto")
