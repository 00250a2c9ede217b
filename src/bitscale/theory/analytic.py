"""The infinite-width NTK of `TwoLayerNet` (ReLU, w_r ~ N(0, I_d), a_r = +-1), full precision and with
sign weights trained through a straight-through estimator (STE). Derivations: docs/theory.md.

    f(x) = kappa / sqrt(m) * sum_r a_r relu(<Q(w_r), x>)

- `fp32`, trained="hidden" (Du et al. 2019):   kappa^2 <x,x'> (pi - theta) / (2 pi)
- `fp32`, trained="both" adds the a-part        kappa^2 |x||x'| (sin theta + (pi - theta) cos theta) / (2 pi)
  (the degree-1 arc-cosine kernel of Cho & Saul 2009), theta = angle(x, x').
- `sign` (Q(w) = sign(w), the `paper-1bit` preset), STE derivative g'(w):
      hidden part  kappa^2 E[h(|w|)] sum_j x_j x'_j E_s[u(s_j) 1{<s,x> > 0} 1{<s,x'> > 0}]
      a-part       kappa^2 E_s[relu(<s,x>) relu(<s,x'>)]
  with s uniform on {-1, +1}^d and g'(w)^2 = h(|w|) u(sign w). For the sign-symmetric rules (identity,
  clipped, approx_sign) u = 1 and the hidden part is kappa^2 E[g'(w)^2] <x,x'> P_s(<s,x> > 0, <s,x'> > 0).
  E_s is exact by enumerating the 2^d vertices (method="exact", d <= 16 under "auto") or a Monte-Carlo
  estimate over `samples` random vertices (method="mc"); `analytic_ntk_info` says which, with the
  estimate's standard error.

Other quantizers (ternary, int-k, binary with a scale) raise NotImplementedError: their limit kernels
are not derived here (the empirical kernel at large width, `empirical_ntk`, stands in for them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..quant.ste import STE_NAMES

__all__ = ["AnalyticNTK", "analytic_ntk", "analytic_ntk_info", "ste_factor"]

# The rules are quant.ste's: ste_factor has a closed form for each, and a test checks it covers them all.
STE_RULES = STE_NAMES
EXACT_MAX_D = 16  # method="auto" enumerates the hypercube up to this dimension
_BATCHES = 20  # Monte-Carlo standard errors from this many batch means


@dataclass(frozen=True)
class AnalyticNTK:
    """An infinite-width kernel and how it was computed.

    kernel: (n1, n2) float64. method: "closed_form" (fp32), "exact" (hypercube enumerated) or "mc"
    (Monte-Carlo estimate). exact: method != "mc". samples: hypercube points averaged over (2^d when
    exact, None for closed forms). stderr: the Monte-Carlo standard error of each entry (from batch
    means), zeros when exact.
    """

    kernel: Tensor
    method: str
    exact: bool
    samples: int | None
    stderr: Tensor


def _std_normal_pdf(t: float) -> float:
    return math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def ste_factor(ste: str = "identity", ste_clip: float = 1.0) -> float:
    """E[h(|w|)] for w ~ N(0, 1), where g'(w)^2 = h(|w|) u(sign w) (u = 1{w > 0} for relu-type rules):

    identity 1; clipped P(|w| <= c) = erf(c / sqrt 2); approx_sign E[(2 - 2|w|)^2 1{|w| <= 1}]
    = 8 (erf(1/sqrt 2) - 2 phi(0) + phi(1)) ~= 1.0142; relu 1; clipped_relu erf(c / sqrt 2)
    (the 1{w > 0} half is in u). Closed forms; tested against numerical quadrature.
    """
    if ste in ("identity", "relu"):
        return 1.0
    if ste in ("clipped", "clipped_relu"):
        if ste_clip <= 0:
            raise ValueError(f"ste_clip must be positive, got {ste_clip}")
        return math.erf(ste_clip / math.sqrt(2))
    if ste == "approx_sign":
        # 2 * int_0^1 4 (1 - t)^2 phi(t) dt, with int_0^1 t phi = phi(0) - phi(1), int_0^1 t^2 phi = (Phi(1) - 1/2) - phi(1)
        return 8.0 * (math.erf(1 / math.sqrt(2)) - 2 * _std_normal_pdf(0.0) + _std_normal_pdf(1.0))
    raise ValueError(f"ste: unknown rule {ste!r}; expected one of {', '.join(STE_RULES)}")


def _as_points(x) -> Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"analytic_ntk: expected points of shape (n, d), got {tuple(x.shape)}")
    return x


def _fp32_kernel(x1: Tensor, x2: Tensor, kappa: float, trained: str) -> Tensor:
    dot = x1 @ x2.T
    norms = x1.norm(dim=1)[:, None] * x2.norm(dim=1)[None, :]
    cos = torch.where(norms > 0, dot / norms.clamp(min=1e-300), torch.zeros_like(dot)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    k = dot * (math.pi - theta) / (2 * math.pi)
    if trained == "both":
        k = k + norms * (torch.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)
    return kappa**2 * k


def _hypercube(d: int, start: int, stop: int) -> Tensor:
    """Vertices start..stop-1 of {-1, +1}^d (bit j of the index -> coordinate j)."""
    idx = torch.arange(start, stop, dtype=torch.int64)
    bits = (idx[:, None] >> torch.arange(d, dtype=torch.int64)[None, :]) & 1
    return bits.to(torch.float64) * 2 - 1


def _sign_sums(s: Tensor, x1: Tensor, x2: Tensor, trained: str, ste: str) -> Tensor:
    """Sum over the rows s of the hypercube of the per-vertex integrand (without kappa^2 and E[h])."""
    p1, p2 = s @ x1.T, s @ x2.T  # (S, n1), (S, n2)
    i1, i2 = (p1 > 0).to(torch.float64), (p2 > 0).to(torch.float64)
    if ste in ("relu", "clipped_relu"):  # u(s_j) = 1{s_j = +1}: sum_j x_j x'_j 1{s_j > 0} per vertex
        pos = (s > 0).to(torch.float64)
        hidden = torch.zeros(x1.shape[0], x2.shape[0], dtype=torch.float64)
        for j in range(s.shape[1]):
            hidden += torch.outer(x1[:, j], x2[:, j]) * ((i1 * pos[:, j : j + 1]).T @ i2)
    else:
        hidden = (x1 @ x2.T) * (i1.T @ i2)
    if trained == "both":
        return hidden, p1.clamp(min=0).T @ p2.clamp(min=0)
    return hidden, None


def _sign_kernel(x1, x2, kappa, trained, ste, ste_clip, method, samples, seed) -> AnalyticNTK:
    d = x1.shape[1]
    if method == "auto":
        method = "exact" if d <= EXACT_MAX_D else "mc"
    factor = ste_factor(ste, ste_clip)
    block = max(1, (1 << 22) // max(x1.shape[0] + x2.shape[0], 1))  # vertices per block

    def combine(hidden: Tensor, a_part: Tensor | None, count: int) -> Tensor:
        k = factor * hidden / count
        if a_part is not None:
            k = k + a_part / count
        return kappa**2 * k

    if method == "exact":
        if d > 30:
            raise ValueError(f"analytic_ntk: method='exact' enumerates 2^d vertices; d={d} is too large")
        total = 1 << d
        h_sum, a_sum = 0.0, 0.0
        for start in range(0, total, block):
            h, a = _sign_sums(_hypercube(d, start, min(start + block, total)), x1, x2, trained, ste)
            h_sum = h_sum + h
            a_sum = a_sum + (a if a is not None else 0.0)
        kernel = combine(h_sum, a_sum if trained == "both" else None, total)
        return AnalyticNTK(kernel, "exact", True, total, torch.zeros_like(kernel))
    if method != "mc":
        raise ValueError(f"analytic_ntk: unknown method {method!r}; expected auto, exact or mc")
    if samples < _BATCHES:
        raise ValueError(f"analytic_ntk: samples must be at least {_BATCHES}, got {samples}")
    gen = torch.Generator().manual_seed(seed)
    per_batch = [samples // _BATCHES + (1 if b < samples % _BATCHES else 0) for b in range(_BATCHES)]
    means = []
    for count in per_batch:
        h_sum, a_sum = 0.0, 0.0
        for start in range(0, count, block):
            n = min(block, count - start)
            s = torch.randint(0, 2, (n, d), generator=gen).to(torch.float64) * 2 - 1
            h, a = _sign_sums(s, x1, x2, trained, ste)
            h_sum = h_sum + h
            a_sum = a_sum + (a if a is not None else 0.0)
        means.append(combine(h_sum, a_sum if trained == "both" else None, count))
    means = torch.stack(means)
    weights = torch.tensor(per_batch, dtype=torch.float64)[:, None, None] / samples
    kernel = (means * weights).sum(0)
    stderr = means.std(dim=0, unbiased=True) / math.sqrt(_BATCHES)
    return AnalyticNTK(kernel, "mc", False, samples, stderr)


def analytic_ntk_info(
    x1,
    x2=None,
    kappa: float = 1.0,
    trained: str = "hidden",
    quant: str = "fp32",
    ste: str = "identity",
    ste_clip: float = 1.0,
    *,
    method: str = "auto",
    samples: int = 200_000,
    seed: int = 0,
) -> AnalyticNTK:
    """`analytic_ntk` with how it was computed: an `AnalyticNTK` (kernel, method, exact, samples, stderr)."""
    x1 = _as_points(x1)
    x2 = x1 if x2 is None else _as_points(x2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"analytic_ntk: x1 and x2 differ in dimension ({x1.shape[1]} vs {x2.shape[1]})")
    if trained not in ("hidden", "both"):
        raise ValueError(f"analytic_ntk: trained must be 'hidden' or 'both', got {trained!r}")
    if ste not in STE_RULES:
        raise ValueError(f"ste: unknown rule {ste!r}; expected one of {', '.join(STE_RULES)}")
    if quant == "fp32":
        kernel = _fp32_kernel(x1, x2, kappa, trained)
        return AnalyticNTK(kernel, "closed_form", True, None, torch.zeros_like(kernel))
    if quant in ("sign", "paper-1bit"):
        return _sign_kernel(x1, x2, kappa, trained, ste, ste_clip, method, samples, seed)
    raise NotImplementedError(
        f"analytic_ntk: quant={quant!r} has no derived limit kernel; supported: 'fp32' and 'sign' "
        "('paper-1bit'). Use empirical_ntk on a wide model instead."
    )


def analytic_ntk(
    x1,
    x2=None,
    kappa: float = 1.0,
    trained: str = "hidden",
    quant: str = "fp32",
    ste: str = "identity",
    ste_clip: float = 1.0,
    *,
    method: str = "auto",
    samples: int = 200_000,
    seed: int = 0,
) -> Tensor:
    """The infinite-width NTK of TwoLayerNet (ReLU, w_r ~ N(0, I_d), a_r = +-1) on points x1 (n1, d) and
    x2 (n2, d) (x2=None: x1), a float64 (n1, n2) tensor.

    Args:
        kappa: the output scale (the kernel scales as kappa^2).
        trained: "hidden" (w trained, a frozen: TwoLayerNet's default) or "both" (train_a=True).
        quant: "fp32" (closed form, exact) or "sign" / "paper-1bit" (sign weights; hypercube kernel).
            Other quantizers raise NotImplementedError.
        ste, ste_clip: the weight STE rule and its clip (sign only; ignored for fp32). Note that the
            `paper-1bit` preset's default STE is "clipped" (c = 1), not "identity".
        method: sign only: "exact" (enumerate 2^d vertices), "mc" (Monte Carlo, `samples` vertices drawn
            with `seed`), or "auto" (exact for d <= 16, else mc).

    The return value is exact for fp32 and for the sign kernel with method "exact"; with "mc" it is an
    estimate. `analytic_ntk_info` returns the same kernel together with the method used and the
    Monte-Carlo standard error. Ties <s, x> = 0 count as inactive, as ReLU's derivative at 0 is 0 in torch.
    """
    return analytic_ntk_info(
        x1, x2, kappa, trained, quant, ste, ste_clip, method=method, samples=samples, seed=seed
    ).kernel
