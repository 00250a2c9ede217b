"""Fit a law: robust loss on log-space residuals, batched L-BFGS from a grid of starts, scipy polish.

The objective (Hoffmann et al. 2022, arXiv 2203.15556, App. D.2) over points i with weights w_i:

    r_i = log L_pred(x_i; theta) - log L_i
    f(theta) = sum_i w_i * rho(r_i),   rho = Huber_delta (default delta = 1e-3) or r^2 / 2 ("lsq")
    Huber_delta(r) = r^2 / 2 if |r| <= delta else delta * (|r| - delta / 2)

Every start of the grid (thousands: Hoffmann's e in {-1,...,1}, a, b in {0,...,25}, alpha, beta in
{0,...,2}) is one row of an (S, P) float64 tensor and all rows are optimized together by
`minimize_batched`: L-BFGS (Nocedal & Wright 2006, alg. 7.4, two-loop recursion) with an Armijo
backtracking line search, both vectorized over rows, projected onto the bounds (clamp; directions
that push out of an active bound are zeroed). Rows stop on their own (small relative decrease, small
projected gradient, or a failed steepest-descent line search) and drop out of the batch, so late
iterations only pay for the starts still moving. Weights per row (`W`, (S, n)) let the bootstrap
solve many resamples in one problem.

fit_law screens: every start runs `screen_iter` (5) iterations, the best 2% (at least 32) run on to
convergence (checked on synthetic chinchilla, curve, kaplan, precision and precision_multiplier data:
the same optimum as running every start to the end, at a fifth of the cost), and the best few distinct
optima are polished with
scipy.optimize.minimize(method="L-BFGS-B", bounds=...) on exact torch gradients.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.forms import Law, get_law, to_tensors

LOSSES = ("huber", "lsq")


class Objective:
    """f(X) = sum_i w_i rho(r_i) for each row of X (S, P) at once; data checked on construction."""

    def __init__(self, law: Law | str, data: LawData, loss: str = "huber", delta: float = 1e-3):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss '{loss}'; choose from {', '.join(LOSSES)}")
        if not delta > 0:
            raise ValueError(f"Huber delta must be > 0, got {delta}")
        # a precision law at one data budget (or one training precision) folds that variable out
        self.law, self.loss, self.delta = get_law(law).for_data(data.x), loss, float(delta)
        cat = self.law.categorical
        self.categories = sorted({str(c) for c in data.x[cat]}) if cat and cat in data.x else []
        self.names = self.law.flat_names(self.categories)
        data.check(self.law.name, self.law.variables, len(self.names),
                   nonnegative=self.law.nonnegative, categorical=cat)
        if self.law.per_label and cat:
            _check_labels(self.law, data, self.categories)
        self.x = to_tensors(self.law, data.x, self.categories)
        self.log_y = torch.log(torch.as_tensor(data.loss, dtype=torch.float64))
        bounds = [self.law.bounds[n.partition("[")[0]] for n in self.names]
        self.lo = torch.tensor([b[0] for b in bounds], dtype=torch.float64)
        self.hi = torch.tensor([b[1] for b in bounds], dtype=torch.float64)

    def residuals(self, X: torch.Tensor) -> torch.Tensor:
        """(S, n) log L_pred - log L_obs."""
        return self.law.log_loss(self.law.split(X, len(self.categories)), self.x) - self.log_y

    def __call__(self, X: torch.Tensor, W: torch.Tensor | None = None) -> torch.Tensor:
        r = self.residuals(X)
        if self.loss == "lsq":
            rho = 0.5 * r * r
        else:
            a = r.abs()
            rho = torch.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
        return (rho if W is None else W * rho).sum(dim=1)


def _check_labels(law: Law, data: LawData, categories: list[str]) -> None:
    """Each label of a per-label law needs as many distinct N as it has parameters of its own."""
    own = law.own_per_label
    labels = np.array([str(c) for c in data.x[law.categorical]])
    natural = law.names_natural()
    for c in categories:
        n = len(np.unique(data.x["N"][labels == c])) if "N" in data.x else 0
        if n < len(own):
            raise LawDataError(f"label {c!r} has {n} distinct N; law '{law.name}' fits {len(own)} parameters of its "
                               f"own per label ({', '.join(natural[p] for p in own)}): give more sizes or tie some "
                               f"with --share")


def _value_grad(f, X: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    X = X.detach().requires_grad_(True)
    with torch.enable_grad():
        value = f(X, rows)
        (grad,) = torch.autograd.grad(value.sum(), X)   # rows are independent: sum gives per-row grads
    return value.detach(), grad


def _direction(g: torch.Tensor, s: torch.Tensor, y: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """-H g by the two-loop recursion per row; history slots with rho = 0 are empty (no effect)."""
    q, m = g.clone(), s.shape[1]
    alphas = [None] * m
    for i in reversed(range(m)):
        alphas[i] = rho[:, i] * (s[:, i] * q).sum(1)
        q -= alphas[i][:, None] * y[:, i]
    sy, yy = (s[:, -1] * y[:, -1]).sum(1), (y[:, -1] * y[:, -1]).sum(1)
    q *= torch.where(rho[:, -1] > 0, sy / yy.clamp_min(1e-300), torch.ones_like(sy))[:, None]
    for i in range(m):
        beta = rho[:, i] * (y[:, i] * q).sum(1)
        q += s[:, i] * (alphas[i] - beta)[:, None]
    return -q


def minimize_batched(f, X0: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, *, max_iter: int = 400,
                     memory: int = 10, ftol: float = 1e-11, gtol: float = 1e-12,
                     max_backtracks: int = 40) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimize f row by row: f(X[rows], rows) -> (len(rows),) objective of those rows.

    Returns (X, f(X), iterations). Rows whose start has a non-finite objective are left as they are.
    """
    S, P = X0.shape
    X = torch.maximum(torch.minimum(X0.detach().clone(), hi), lo)
    fx, g = _value_grad(f, X, torch.arange(S))
    hist_s, hist_y = torch.zeros(S, memory, P, dtype=X.dtype), torch.zeros(S, memory, P, dtype=X.dtype)
    rho = torch.zeros(S, memory, dtype=X.dtype)
    active = torch.isfinite(fx) & torch.isfinite(g).all(1)
    it = 0
    for it in range(1, max_iter + 1):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x, gx, fa = X[idx], g[idx], fx[idx]
        at_lo, at_hi = x <= lo, x >= hi
        pg = torch.where((at_lo & (gx > 0)) | (at_hi & (gx < 0)), torch.zeros_like(gx), gx)
        d = _direction(gx, hist_s[idx], hist_y[idx], rho[idx])
        d = torch.where((at_lo & (d < 0)) | (at_hi & (d > 0)), torch.zeros_like(d), d)
        fresh = ~((gx * d).sum(1) < 0)          # not a descent direction: restart from steepest descent
        d[fresh] = -pg[fresh]
        rho[idx[fresh]] = 0.0
        has_hist = rho[idx].abs().sum(1) > 0
        t = torch.where(has_hist, torch.ones_like(fa), 1.0 / d.abs().amax(1).clamp_min(1e-300))
        new_x, new_f, new_g = x.clone(), fa.clone(), gx.clone()
        pending, done = torch.arange(len(idx)), torch.zeros(len(idx), dtype=torch.bool)
        for _ in range(max_backtracks):
            cand = torch.maximum(torch.minimum(x[pending] + t[pending, None] * d[pending], hi), lo)
            fv, gv = _value_grad(f, cand, idx[pending])
            armijo = fa[pending] + 1e-4 * (gx[pending] * (cand - x[pending])).sum(1)
            ok = (fv <= armijo) & (fv <= fa[pending]) & torch.isfinite(gv).all(1)
            take = pending[ok]
            new_x[take], new_f[take], new_g[take], done[take] = cand[ok], fv[ok], gv[ok], True
            pending = pending[~ok]
            if pending.numel() == 0:
                break
            t[pending] *= 0.5
        # curvature pairs from the rows that moved; keep only s.y > 0 (positive-definite update)
        s, yv = new_x - x, new_g - gx
        sy = (s * yv).sum(1)
        keep = done & (sy > 1e-12 * s.norm(dim=1) * yv.norm(dim=1)) & (sy > 0)
        rows = idx[keep]
        hist_s[rows] = torch.cat([hist_s[rows, 1:], s[keep, None]], 1)
        hist_y[rows] = torch.cat([hist_y[rows, 1:], yv[keep, None]], 1)
        rho[rows] = torch.cat([rho[rows, 1:], (1.0 / sy[keep])[:, None]], 1)
        X[idx], fx[idx], g[idx] = new_x, new_f, new_g
        # stopping: a failed line search from steepest descent, or tiny progress / gradient
        small = (fa - new_f) <= ftol * torch.maximum(fa.abs(), new_f.abs()).clamp_min(1e-300)
        new_pg = torch.where(((new_x <= lo) & (new_g > 0)) | ((new_x >= hi) & (new_g < 0)),
                             torch.zeros_like(new_g), new_g)
        stop = (done & (small | (new_pg.abs().amax(1) <= gtol))) | (~done & ~has_hist)
        rho[idx[~done]] = 0.0                   # failed with history: retry from steepest descent
        active[idx[stop]] = False
    return X, fx, it


def polish(obj: Objective, x0: np.ndarray, max_iter: int = 3000) -> tuple[np.ndarray, float]:
    """scipy L-BFGS-B from x0 (within bounds) on exact torch gradients; returns (x, f)."""
    def fun(v: np.ndarray):
        value, grad = _value_grad(lambda X, rows: obj(X), torch.tensor(v[None]), torch.arange(1))
        return float(value[0]), grad[0].numpy().astype(np.float64)

    bounds = list(zip(obj.lo.tolist(), obj.hi.tolist()))
    res = minimize(fun, np.clip(x0, obj.lo.numpy(), obj.hi.numpy()), jac=True, method="L-BFGS-B",
                   bounds=bounds, options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-14})
    return res.x, float(res.fun)


@dataclass
class FitResult:
    """A fitted law: natural and fitted parameters, objective and per-point log-space residuals."""

    law: str
    params: dict[str, float]
    theta: dict[str, float]
    objective: float
    residuals: np.ndarray
    loss: str
    delta: float
    n_points: int
    n_starts: int
    categories: dict[str, list[str]]
    law_obj: Law | None = field(default=None, repr=False, compare=False)
    at_bound: dict[str, str] = field(default_factory=dict)   # natural param -> "lower" | "upper"

    @property
    def form(self) -> Law:
        """The law as fitted: the variant (shared or folded parameters) this fit used."""
        return self.law_obj if self.law_obj is not None else get_law(self.law)

    def predict(self, x: dict[str, np.ndarray]) -> np.ndarray:
        """Predicted loss at x (variables -> (m,) arrays)."""
        law = self.form
        cats = self.categories.get(law.categorical, []) if law.categorical else []
        flat = torch.tensor([[self.theta[n] for n in law.flat_names(cats)]], dtype=torch.float64)
        log_l = law.log_loss(law.split(flat, len(cats)), to_tensors(law, x, cats))
        return np.exp(log_l.detach().numpy()[0])

    def to_dict(self) -> dict:
        """JSON-able summary (residuals as a list)."""
        return {"law": self.law, "params": dict(self.params), "theta": dict(self.theta),
                "objective": self.objective, "residuals": self.residuals.tolist(), "loss": self.loss,
                "delta": self.delta, "n_points": self.n_points, "n_starts": self.n_starts,
                "categories": {k: list(v) for k, v in self.categories.items()}, "at_bound": sorted(self.at_bound)}


def theta_dict(obj: Objective, flat: np.ndarray) -> dict[str, float]:
    """Free columns -> theta by name, with the reference category's per-category params (0) included."""
    theta = dict(zip(obj.names, (float(v) for v in flat)))
    if obj.categories:
        for p in obj.law.per_category:
            theta = {f"{p}[{obj.categories[0]}]": 0.0, **theta}
    return theta


BOUND_RTOL = 1e-6


def at_bound(obj: Objective, flat: np.ndarray) -> dict[str, str]:
    """{natural parameter name: "lower" | "upper"} for every free column at a bound: within BOUND_RTOL
    of it (relative, at least 1e-6 absolute), or so close in effect that moving the column onto the
    bound changes the objective by at most 1e-9 of it (+ 1e-12): the data cannot tell the estimate from
    the bound (a floor E = e^-29 is E = 0, as much as e^-30 is). Such an estimate is the bound's."""
    natural = obj.law.names_natural()
    sides = (("lower", obj.lo.tolist()), ("upper", obj.hi.tolist()))
    # row 0: the estimate; then one row per (bound side, column) with that column moved onto the bound
    rows = np.repeat(np.asarray(flat, dtype=np.float64)[None], 1 + 2 * len(flat), axis=0)
    for k, (_, bounds) in enumerate(sides):
        for j, bound in enumerate(bounds):
            rows[1 + k * len(flat) + j, j] = bound
    f = obj(torch.from_numpy(rows)).detach().numpy()
    out = {}
    for k, (side, bounds) in enumerate(sides):
        for j, (name, value, bound) in enumerate(zip(obj.names, flat, bounds)):
            f1 = f[1 + k * len(flat) + j]
            close = abs(float(value) - bound) <= BOUND_RTOL * max(abs(bound), 1.0) or (
                math.isfinite(f1) and f1 - f[0] <= 1e-9 * abs(f[0]) + 1e-12)
            if close:
                base, bracket, rest = name.partition("[")
                out[natural.get(base, base) + bracket + rest] = side
    return out


def grid_starts(law: Law, grid: dict[str, Sequence[float]] | None, categories: Sequence[str]) -> np.ndarray:
    """Cartesian product of start values as (S, P) free columns (a per-category value fills all its columns)."""
    unknown = sorted(set(grid or {}) - set(law.params))
    if unknown:
        raise ValueError(f"grid names {', '.join(unknown)}, not parameters of law '{law.name}' "
                         f"({', '.join(law.params)})")
    free = law.free_params
    values = {p: tuple(grid[p]) if grid and p in grid else law.grid[p] for p in free}
    width = {p: max(len(categories) - 1, 0) if p in law.per_category else
             max(len(categories), 1) if p in law.per_label else 1 for p in free}
    rows = []
    for combo in itertools.product(*(values[p] for p in free)):
        row = []
        for p, v in zip(free, combo):
            row += [float(v)] * width[p]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


def init_row(obj: Objective, init: dict[str, float]) -> np.ndarray:
    """A start from theta values keyed by free-column name (or a per-category param's base name)."""
    row = []
    for name in obj.names:
        base = name.partition("[")[0]
        if name not in init and base not in init:
            raise ValueError(f"init lacks parameter '{name}' of law '{obj.law.name}'")
        row.append(float(init[name] if name in init else init[base]))
    return np.asarray(row)


def fit_law(law: Law | str, data: LawData, *, loss: str = "huber", delta: float = 1e-3,
            grid: dict | None = None, init: dict | None = None, n_polish: int = 4,
            max_iter: int = 100, screen_iter: int = 5, keep: float = 0.02, min_keep: int = 32) -> FitResult:
    """Fit `law` to `data` from every start of the grid (law.grid, entries overridden by `grid`).

    init: one more start in theta names, e.g. a previous FitResult.theta. All starts run `screen_iter`
    iterations; the best `keep` fraction (at least `min_keep`) runs on to convergence, and the
    `n_polish` best distinct optima are refined with scipy L-BFGS-B; the lowest objective wins.
    """
    obj = Objective(law, data, loss, delta)
    starts = grid_starts(obj.law, grid, obj.categories)
    if init is not None:
        starts = np.vstack([starts, init_row(obj, init)])
    f = lambda X, rows: obj(X)  # noqa: E731
    X = torch.from_numpy(starts)
    n_keep = max(min_keep, int(np.ceil(keep * len(X))))
    if len(X) > n_keep:
        # screening: a few iterations for every start, then only the most promising go on
        X, fvals, _ = minimize_batched(f, X, obj.lo, obj.hi, max_iter=screen_iter)
        X = X[torch.argsort(torch.nan_to_num(fvals, nan=np.inf))[:n_keep]]
    X, fvals, _ = minimize_batched(f, X, obj.lo, obj.hi, max_iter=max_iter)
    X, fvals = X.numpy(), fvals.numpy()
    order = [i for i in np.argsort(fvals, kind="stable") if np.isfinite(fvals[i])]
    if not order:
        raise RuntimeError(f"law '{obj.law.name}': the objective is not finite at any start")
    chosen: list[int] = []
    for i in order:
        if len(chosen) == n_polish:
            break
        if all(np.abs(X[i] - X[j]).max() > 1e-6 for j in chosen):
            chosen.append(i)
    best_x, best_f = X[order[0]], float(fvals[order[0]])
    for i in chosen:
        x, f = polish(obj, X[i])
        if np.isfinite(f) and f < best_f:
            best_x, best_f = x, f
    return result(obj, best_x, best_f, len(starts))


def result(obj: Objective, flat: np.ndarray, objective: float, n_starts: int) -> FitResult:
    """FitResult for the free columns `flat` of an Objective."""
    theta = theta_dict(obj, flat)
    r = obj.residuals(torch.tensor(flat[None], dtype=torch.float64)).detach().numpy()[0]
    cats = {obj.law.categorical: list(obj.categories)} if obj.law.categorical else {}
    return FitResult(obj.law.name, obj.law.natural(theta), theta, float(objective), r, obj.loss,
                     obj.delta, len(r), n_starts, cats, obj.law, at_bound(obj, flat))
