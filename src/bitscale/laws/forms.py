"""Scaling-law forms: named parameters, bounds, a start grid and a batched log-loss in torch.

Every law is written in log space with the log-sum-exp parametrization of Hoffmann et al. 2022
(arXiv 2203.15556, App. D.2): a coefficient E > 0 is fitted as e = log E, so a sum of power-law terms
E + A/N^alpha + B/D^beta becomes log L = LSE(e, a - alpha log N, b - beta log D), smooth and unbounded.
`natural()` maps the fitted parameters (theta) back to E, A, B, ... .

Built in (theta names in brackets):

    power_X    L = E + A*X^-alpha                               (e, a, alpha)  X in N, D, C, S
    kaplan     L = [(Nc/N)^(aN/aD) + Dc/D]^aD                   (log_Nc, log_Dc, alpha_N, alpha_D)
               Kaplan et al. 2020, arXiv 2001.08361, eq. 1.5
    chinchilla L = E + A/N^alpha + B/D^beta                     (e, a, alpha, b, beta)
               Hoffmann et al. 2022, arXiv 2203.15556, eq. 2
    curve      L = E + A/N^alpha + B/S^beta  (S: steps)          (e, a, alpha, b, beta)
    precision  L = E + A*Neff^-alpha + B*D^-beta,
               Neff = N*(1 - exp(-P/gamma)), P bits per weight  (e, a, alpha, b, beta, log_gamma)
               Kumar et al. 2024, "Scaling Laws for Precision", arXiv 2411.04330
    precision_multiplier
               L = E + A*(c_Q*N)^-alpha + B*D^-beta, one c_Q per precision label Q, the first label
               (sorted) is the reference with c = 1                   (e, a, alpha, b, beta, log_c[Q])
    precision_power
               L = E_q + A_q*N^-alpha_q, one set per precision label q      (e[q], a[q], alpha[q])
               with alpha shared (`share`): Spectra/TriLM, Kaushal et al. 2024, arXiv 2407.12327
    precision_ptq
               L = E + A*Neff^-alpha + B*D^-beta + C_T*D^gamma_D*N^-gamma_N*exp(-P_post/gamma_post),
               the last term only where P_post > 0 (quantized after training to P_post bits)
               Kumar et al. 2024, arXiv 2411.04330            (..., log_gamma, c_t, gamma_D, gamma_N, log_gamma_post)
    scale_time L = E + A*(p*t)^-alpha                           (e, a, alpha)
               Boopathy & Fiete 2024, arXiv 2409.05782
    unified    L = E + A*(p*t)^-alpha + B*n^-beta + C*(s0 + noise)*exp(-z^2/2), z = ln(p*t/(k*n))/w
               ours, after Boopathy & Fiete 2024 (their equations are not given here; see
               laws/double_descent.py)                 (e, a, alpha, b, beta, log_c, log_s0, log_k, log_w)
    ntk        L = L_inf + (L_0 - L_inf)*exp(-r*t)              (l_inf, d = log(L_0 - L_inf), log_r)
               linearized (NTK) training: Jacot et al. 2018, arXiv 1806.07572; Lee et al. 2019, 1902.06720

Variants. `law.share(["alpha"])` ties per-label parameters across labels ('precision_power[share=alpha]');
`law.fold("D")` fixes the parameters `folds["D"]` names when D takes one value, dropping its term
('precision_multiplier[fold=D]': B*D^-beta is then part of E). The fitter picks the fold from the data
(`Law.for_data`), and `get_law` rebuilds a variant from its name.

One-variable power laws are one factory, `power_law(var)`, registered for N, D, C and S; `get_law`
builds `power_<var>` for any other variable name on request (e.g. "power_t").

Adding a form is one small function that returns log L for a batch of S parameter sets: each theta[name]
arrives as a (S, 1) tensor (per-category params as (S, K)), each x[var] as an (n,) float64 tensor
(categorical variables as int64 codes), and the result is (S, n). The start grid defaults to three
values inside each parameter's bounds and natural() to the identity:

    import torch
    from bitscale.laws.forms import law, logsumexp2

    @law("my_power", variables=("N",), params={"e": (-10, 5), "a": (-10, 20), "alpha": (0, 3)},
         formula="L = exp(e) + exp(a) * N^-alpha", citation="mine")
    def my_power(p, x):
        return logsumexp2(p["e"], p["a"] - p["alpha"] * torch.log(x["N"]))   # returns log L, batched

`my_power` is then a `Law`, registered as "my_power": fit_law(my_power, data) or fit_law("my_power", data).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import is_categorical

Theta = dict[str, float]


def logsumexp2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) + exp(b)), broadcasting, stable."""
    return torch.logaddexp(a, b)


def logsumexp(*terms: torch.Tensor) -> torch.Tensor:
    """log(sum_k exp(term_k)) of broadcastable tensors."""
    return functools.reduce(torch.logaddexp, terms)


@dataclass
class Law:
    """A law: `log_loss(theta, x)` plus what fitting needs (bounds, start grid) and how to read it."""

    name: str
    variables: tuple[str, ...]
    params: tuple[str, ...]
    formula: str
    citation: str
    bounds: dict[str, tuple[float, float]]
    grid: dict[str, tuple[float, ...]]
    fn: Callable[[dict, dict], torch.Tensor] = field(repr=False)
    natural_fn: Callable[[Theta], Theta] | None = field(default=None, repr=False)
    theta_fn: Callable[[Theta], Theta] | None = field(default=None, repr=False)
    categorical: str | None = None
    per_category: tuple[str, ...] = ()  # one column per label but the reference (first), which is 0
    nonnegative: tuple[str, ...] = ()   # variables that may be 0 (all others must be > 0)
    per_label: tuple[str, ...] = ()     # one free column for every label (precision_power's E, A, alpha)
    folds: dict[str, dict[str, float]] = field(default_factory=dict)  # variable -> params fixed when it is constant
    fixed: dict[str, float] = field(default_factory=dict)  # params held at these theta values (not fitted)
    base: str = ""                      # the registered law this one is a variant of (its own name if none)
    shared: tuple[str, ...] = ()        # per_label params tied across labels in this variant
    folded: tuple[str, ...] = ()        # variables folded out in this variant

    def __post_init__(self) -> None:
        self.base = self.base or self.name

    @property
    def free_params(self) -> tuple[str, ...]:
        """The parameters the fitter moves (params less the fixed ones)."""
        return tuple(p for p in self.params if p not in self.fixed)

    @property
    def own_per_label(self) -> tuple[str, ...]:
        """The per-label params fitted for each label on its own (not shared, not fixed)."""
        return tuple(p for p in self.per_label if p not in self.fixed)

    @property
    def labelled(self) -> tuple[str, ...]:
        """Params with a column per label in this variant (per_category and unshared per_label)."""
        return tuple(p for p in self.params if p in self.per_category or p in self.per_label)

    def log_loss(self, theta: dict[str, torch.Tensor], x: dict[str, torch.Tensor]) -> torch.Tensor:
        """log L, (S, n), for S parameter sets (theta values (S, 1) or (S, K)) at n points."""
        return self.fn(theta, x)

    __call__ = log_loss

    def natural(self, theta: Theta) -> Theta:
        """Fitted parameters -> the ones the formula is written in (identity unless the law says)."""
        return dict(theta) if self.natural_fn is None else self.natural_fn(dict(theta))

    def theta(self, natural: Theta) -> Theta:
        """Inverse of natural()."""
        if self.natural_fn is None:
            return dict(natural)
        if self.theta_fn is None:
            raise ValueError(f"law '{self.name}' has natural() but no inverse; predict from a FitResult")
        return self.theta_fn(dict(natural))

    # ---- the flat parameter vector the fitter optimizes -------------------------------------------
    def flat_names(self, categories: Sequence[str] = ()) -> list[str]:
        """Names of the free columns: one per param; per-category params once per non-reference label,
        per-label params once per label; fixed params have none."""
        names = []
        for p in self.free_params:
            if p in self.per_category:
                names += [f"{p}[{c}]" for c in categories[1:]]
            elif p in self.per_label:
                names += [f"{p}[{c}]" for c in categories]
            else:
                names.append(p)
        return names

    def split(self, flat: torch.Tensor, n_categories: int = 0) -> dict[str, torch.Tensor]:
        """(S, P) free columns -> theta tensors: (S, 1), or (S, K) for a param with a column per label
        (per-category ones with a zero reference column); fixed params are constant columns."""
        theta, j = {}, 0
        for p in self.params:
            if p in self.fixed:
                theta[p] = torch.full((flat.shape[0], 1), self.fixed[p], dtype=flat.dtype)
            elif p in self.per_category:
                k = max(n_categories - 1, 0)
                ref = torch.zeros(flat.shape[0], 1, dtype=flat.dtype)
                theta[p] = torch.cat([ref, flat[:, j:j + k]], dim=1)
                j += k
            elif p in self.per_label:
                k = max(n_categories, 1)
                theta[p] = flat[:, j:j + k]
                j += k
            else:
                theta[p] = flat[:, j:j + 1]
                j += 1
        return theta

    def names_natural(self) -> dict[str, str]:
        """Fitted parameter name -> the name natural() gives it (e -> E, log_gamma -> gamma, ...)."""
        probe = {p: 0.0 for p in self.params}
        out = list(self.natural(probe)) if self.natural_fn is not None else list(probe)
        return dict(zip(self.params, out)) if len(out) == len(self.params) else {p: p for p in self.params}

    # ---- variants: shared per-label params, folded variables -------------------------------------
    def share(self, names: Sequence[str]) -> "Law":
        """This law with the per-label params `names` (fitted or natural names: alpha, E) tied across
        labels. ValueError naming the parameter for one that is not per-label."""
        if not names:
            return self
        natural = self.names_natural()
        by_name = {**{v: k for k, v in natural.items()}, **{p: p for p in self.params}}
        chosen = []
        for name in names:
            theta = by_name.get(name.strip())
            if theta is None or theta not in self.per_label:
                shareable = ", ".join(natural[p] for p in self.per_label) or "none"
                raise ValueError(f"--share: {name.strip()!r} is not a per-label parameter of law '{self.base}' "
                                 f"(per-label: {shareable})")
            if theta not in chosen:
                chosen.append(theta)
        per_label = tuple(p for p in self.per_label if p not in chosen)
        if not per_label and not self.per_category:
            raise ValueError(f"--share: sharing every per-label parameter of '{self.base}' leaves one curve for "
                             f"all labels; fit power_N instead")
        shared = tuple(sorted(set(self.shared) | set(chosen), key=self.params.index))
        return dataclasses.replace(self, name=_variant_name(self.base, shared, self.folded), per_label=per_label,
                                   shared=shared)

    def fold(self, variable: str) -> "Law":
        """This law at one value of `variable`: the params self.folds[variable] are fixed (a term in it
        drops out, or its exponent goes to 0) and the variable is no longer needed."""
        if variable not in self.folds or variable in self.folded:
            return self
        fixed = {**self.fixed, **self.folds[variable]}
        folded = tuple(sorted((*self.folded, variable)))
        inner = self.fn

        def fn(p, x, _v=variable, _inner=inner):
            if _v not in x:
                n = next(iter(x.values())).shape[0]
                x = {**x, _v: torch.ones(n, dtype=torch.float64)}
            return _inner(p, x)
        return dataclasses.replace(self, name=_variant_name(self.base, self.shared, folded), fn=fn, fixed=fixed,
                                   folded=folded, variables=tuple(v for v in self.variables if v != variable))

    def for_data(self, x: dict[str, np.ndarray]) -> "Law":
        """The variant these data call for: each foldable variable that is absent or takes one value
        is folded (precision laws at one data budget)."""
        law_ = self
        for v in self.folds:
            values = x.get(v)
            if values is None or (not is_categorical(values) and len(np.unique(values)) < 2):
                law_ = law_.fold(v)
        return law_

    def predict(self, params_natural: Theta, x: dict[str, np.ndarray]) -> np.ndarray:
        """Loss (natural units) at x from natural parameters (per-category ones keyed 'name[label]')."""
        theta = {**self.fixed, **self.theta(params_natural)}
        cats: list[str] = []
        labelled = [p for p in self.labelled if p not in self.fixed]
        if labelled:
            prefix = labelled[0] + "["
            cats = [k[len(prefix):-1] for k in theta if k.startswith(prefix)]
        names = {p: [f"{p}[{c}]" for c in cats] if p in labelled else [p] for p in self.params}
        missing = [n for group in names.values() for n in group if n not in theta]
        if missing:
            raise ValueError(f"law '{self.name}': parameter(s) {', '.join(missing)} not given")
        t = {p: torch.tensor([[theta[n] for n in group]], dtype=torch.float64) for p, group in names.items()}
        return np.exp(self.log_loss(t, to_tensors(self, x, cats)).detach().numpy()[0])


def to_tensors(law: Law, x: dict[str, np.ndarray], categories: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The law's variables as tensors: float64, or int64 category codes for the categorical one."""
    out = {}
    for v in law.variables:
        if v == law.categorical:
            index = {c: i for i, c in enumerate(categories)}
            unknown = sorted({str(c) for c in x[v]} - set(index))
            if unknown:
                raise ValueError(f"unknown {v} label(s) {', '.join(unknown)}; fitted: {', '.join(categories)}")
            out[v] = torch.tensor([index[str(c)] for c in x[v]], dtype=torch.int64)
        else:
            out[v] = torch.as_tensor(np.asarray(x[v], dtype=np.float64))
    return out


LAWS: dict[str, Law] = {}


def register(law_: Law) -> Law:
    """Add (or replace) a law in LAWS under its name."""
    LAWS[law_.name] = law_
    return law_


def _variant_name(base: str, shared: Sequence[str], folded: Sequence[str]) -> str:
    """'precision_power[share=alpha]', 'precision_multiplier[fold=D]', or the base name."""
    parts = ([f"share={','.join(shared)}"] if shared else []) + ([f"fold={','.join(folded)}"] if folded else [])
    return f"{base}[{';'.join(parts)}]" if parts else base


_VARIANT = re.compile(r"^(?P<base>[A-Za-z_]\w*)\[(?P<mods>[^\]]*)\]$")


def get_law(name: str | Law) -> Law:
    """The registered law of that name ('power_<var>' is built for any variable; a variant name such as
    'precision_power[share=alpha;fold=D]' is rebuilt from its base); ValueError if none."""
    if isinstance(name, Law):
        return name
    match = _VARIANT.match(name)
    if match:
        law_ = get_law(match["base"])
        for mod in filter(None, match["mods"].split(";")):
            key, _, value = mod.partition("=")
            if key == "share":
                law_ = law_.share(value.split(","))
            elif key == "fold":
                for v in value.split(","):
                    law_ = law_.fold(v)
            else:
                raise ValueError(f"unknown law variant {mod!r} in {name!r} (expected share=... or fold=...)")
        return law_
    if name not in LAWS and name.startswith("power_") and len(name) > 6:
        return register(power_law(name[6:]))
    if name not in LAWS:
        raise ValueError(f"unknown law '{name}'; known: {', '.join(sorted(LAWS))}")
    return LAWS[name]


def _default_grid(lo: float, hi: float) -> tuple[float, ...]:
    lo, hi = max(lo, -50.0), min(hi, 50.0)
    return tuple(lo + (hi - lo) * q for q in (0.25, 0.5, 0.75))


def law(name: str, *, variables: Sequence[str], params: dict[str, tuple[float, float]], formula: str,
        citation: str = "", grid: dict[str, Sequence[float]] | None = None,
        natural: Callable[[Theta], Theta] | None = None, theta: Callable[[Theta], Theta] | None = None,
        categorical: str | None = None, per_category: Sequence[str] = (),
        nonnegative: Sequence[str] = (), per_label: Sequence[str] = (),
        folds: dict[str, dict[str, float]] | None = None) -> Callable[[Callable], Law]:
    """Decorator: turn fn(theta, x) -> log L (S, n) into a registered Law (see the module docstring).

    params maps each fitted parameter to its (lo, hi) bounds; grid gives start values per parameter
    (missing ones: three inside the bounds; per-category ones: 0); natural / theta map fitted parameters
    to reported ones and back (default identity). per_label params get one free column per label of
    the categorical variable; folds[var] = {param: value} fixes those params when var takes one value.
    """
    grid = dict(grid or {})

    def wrap(fn: Callable) -> Law:
        full = {p: tuple(grid[p]) if p in grid else ((0.0,) if p in per_category else _default_grid(*b))
                for p, b in params.items()}
        return register(Law(name, tuple(variables), tuple(params), formula, citation,
                            {p: (float(lo), float(hi)) for p, (lo, hi) in params.items()}, full, fn,
                            natural, theta, categorical, tuple(per_category), tuple(nonnegative),
                            tuple(per_label), dict(folds or {})))
    return wrap


def exp_params(**names: str) -> tuple[Callable[[Theta], Theta], Callable[[Theta], Theta]]:
    """natural()/theta() pair exponentiating the given params into new names: exp_params(e="E").

    A per-category key 'log_c[fp16]' with log_c="c" becomes 'c[fp16]'; unnamed params pass through.
    """
    back = {v: k for k, v in names.items()}

    def rename(theta: Theta, table: dict[str, str], f: Callable[[float], float]) -> Theta:
        out = {}
        for key, value in theta.items():
            base, bracket, rest = key.partition("[")
            out[table[base] + bracket + rest if base in table else key] = f(value) if base in table else value
        return out

    return (lambda t: rename(t, names, math.exp)), (lambda n: rename(n, back, math.log))


_E, _A = (-30.0, 10.0), (-30.0, 100.0)
_EXPONENT = (0.0, 5.0)
_HOFFMANN = {"e": (-1.0, -0.5, 0.0, 0.5, 1.0), "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
             "alpha": (0.0, 0.5, 1.0, 1.5, 2.0)}


def power_law(variable: str) -> Law:
    """L = E + A * X^-alpha in the one variable X, registered as 'power_X'."""
    natural, theta = exp_params(e="E", a="A")

    def fn(p, x):
        return logsumexp2(p["e"], p["a"] - p["alpha"] * torch.log(x[variable]))
    return law(f"power_{variable}", variables=(variable,), params={"e": _E, "a": _A, "alpha": _EXPONENT},
               grid={**_HOFFMANN, "e": (-6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0)}, natural=natural, theta=theta,
               formula=f"L = E + A*{variable}^-alpha", citation="power law in one variable")(fn)


for _v in ("N", "D", "C", "S"):
    power_law(_v)


def _two_term(p, x, first: str, second: str, first_offset=0.0):
    return logsumexp(p["e"], p["a"] - p["alpha"] * (torch.log(x[first]) + first_offset),
                     p["b"] - p["beta"] * torch.log(x[second]))


_CHIN_PARAMS = {"e": _E, "a": _A, "alpha": _EXPONENT, "b": _A, "beta": _EXPONENT}
_CHIN_GRID = {**_HOFFMANN, "b": _HOFFMANN["a"], "beta": _HOFFMANN["alpha"]}
_chin_natural, _chin_theta = exp_params(e="E", a="A", b="B")


@law("chinchilla", variables=("N", "D"), params=_CHIN_PARAMS, grid=_CHIN_GRID,
     natural=_chin_natural, theta=_chin_theta, formula="L = E + A/N^alpha + B/D^beta",
     citation="Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv 2203.15556")
def chinchilla(p, x):
    return _two_term(p, x, "N", "D")


@law("curve", variables=("N", "S"), params=_CHIN_PARAMS, grid=_CHIN_GRID,
     natural=_chin_natural, theta=_chin_theta, formula="L = E + A/N^alpha + B/S^beta (S: training steps)",
     citation="training-curve form of Hoffmann et al. 2022 (arXiv 2203.15556) with steps for data")
def curve(p, x):
    return _two_term(p, x, "N", "S")


_kaplan_natural, _kaplan_theta = exp_params(log_Nc="Nc", log_Dc="Dc")


@law("kaplan", variables=("N", "D"), natural=_kaplan_natural, theta=_kaplan_theta,
     params={"log_Nc": (-10.0, 100.0), "log_Dc": (-10.0, 100.0), "alpha_N": (1e-3, 5.0), "alpha_D": (1e-3, 5.0)},
     grid={"log_Nc": (5.0, 15.0, 25.0, 35.0), "log_Dc": (5.0, 15.0, 25.0, 35.0),
           "alpha_N": (0.05, 0.1, 0.3, 0.6, 1.0), "alpha_D": (0.05, 0.1, 0.3, 0.6, 1.0)},
     formula="L = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D",
     citation="Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv 2001.08361, eq. 1.5")
def kaplan(p, x):
    ratio = p["alpha_N"] / p["alpha_D"]
    return p["alpha_D"] * logsumexp2(ratio * (p["log_Nc"] - torch.log(x["N"])), p["log_Dc"] - torch.log(x["D"]))


_prec_natural, _prec_theta = exp_params(e="E", a="A", b="B", log_gamma="gamma")
# At one data budget B*D^-beta is a constant that cannot be told apart from E: the term drops out
# (b = -inf) and E holds it. Fitting it anyway would leave B and beta unidentified.
_FOLD_D = {"b": -math.inf, "beta": 0.0}


@law("precision", variables=("N", "D", "P"), natural=_prec_natural, theta=_prec_theta,
     params={**_CHIN_PARAMS, "log_gamma": (-5.0, 5.0)}, folds={"D": _FOLD_D},
     grid={**_CHIN_GRID, "e": (-1.0, 0.0, 1.0), "log_gamma": (0.0, 1.0, 2.0)},
     formula="L = E + A*Neff^-alpha + B*D^-beta, Neff = N*(1 - exp(-P/gamma)), P bits per weight",
     citation="Kumar et al. 2024, Scaling Laws for Precision, arXiv 2411.04330")
def precision(p, x):
    # log(1 - exp(-P/gamma)) via expm1: exact where P/gamma is small
    log_keep = torch.log(-torch.expm1(-x["P"] / torch.exp(p["log_gamma"])))
    return logsumexp(p["e"], p["a"] - p["alpha"] * (torch.log(x["N"]) + log_keep),
                     p["b"] - p["beta"] * torch.log(x["D"]))


_prec_size_natural, _prec_size_theta = exp_params(e="E", a="A", log_gamma="gamma")


@law("precision_size", variables=("N", "P"), natural=_prec_size_natural, theta=_prec_size_theta,
     params={"e": _E, "a": _A, "alpha": _EXPONENT, "log_gamma": (-5.0, 5.0)},
     grid={**_HOFFMANN, "log_gamma": (-1.0, 0.0, 1.0, 2.0)},
     formula="L = E + A*Neff^-alpha, Neff = N*(1 - exp(-P/gamma)) (fixed data: E holds B*D^-beta)",
     citation="Kumar et al. 2024 (arXiv 2411.04330) at one data budget, as in a sweep over size and precision")
def precision_size(p, x):
    log_keep = torch.log(-torch.expm1(-x["P"] / torch.exp(p["log_gamma"])))
    return logsumexp2(p["e"], p["a"] - p["alpha"] * (torch.log(x["N"]) + log_keep))


_mult_natural, _mult_theta = exp_params(e="E", a="A", b="B", log_c="c")


@law("precision_multiplier", variables=("N", "D", "Q"), natural=_mult_natural, theta=_mult_theta,
     params={**_CHIN_PARAMS, "log_c": (-20.0, 20.0)}, grid=_CHIN_GRID, folds={"D": _FOLD_D},
     categorical="Q", per_category=("log_c",),
     formula="L = E + A*(c_Q*N)^-alpha + B*D^-beta, c = 1 for the reference precision (first label)",
     citation="effective-parameter multiplier per precision, after Kumar et al. 2024 (arXiv 2411.04330)")
def precision_multiplier(p, x):
    log_c = p["log_c"][:, x["Q"]]                      # (S, n): each point's category multiplier
    return _two_term(p, x, "N", "D", first_offset=log_c)


@law("scale_time", variables=("p", "t"), params={"e": _E, "a": _A, "alpha": _EXPONENT},
     grid={**_HOFFMANN, "e": (-6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0)},
     natural=_chin_natural, theta=_chin_theta, formula="L = E + A*(p*t)^-alpha (p parameters, t steps)",
     citation="Boopathy & Fiete 2024, Unified Neural Network Scaling Laws and Scale-time Equivalence, "
              "arXiv 2409.05782")
def scale_time(p, x):
    return logsumexp2(p["e"], p["a"] - p["alpha"] * (torch.log(x["p"]) + torch.log(x["t"])))


_unified_natural, _unified_theta = exp_params(e="E", a="A", b="B", log_c="C", log_s0="s0", log_k="k", log_w="w")


@law("unified", variables=("p", "t", "n", "noise"), nonnegative=("noise",),
     natural=_unified_natural, theta=_unified_theta,
     params={"e": _E, "a": _A, "alpha": _EXPONENT, "b": _A, "beta": _EXPONENT, "log_c": (-30.0, 10.0),
             "log_s0": (-12.0, 3.0), "log_k": (-10.0, 40.0), "log_w": (-3.0, 2.5)},
     grid={"e": (-3.0, -1.0, -0.5), "a": (0.0, 2.0, 5.0), "alpha": (0.1, 0.3, 1.0), "b": (0.0, 5.0),
           "beta": (0.3, 1.0), "log_c": (-2.0, 0.0), "log_s0": (-3.0, -1.0),
           "log_k": (2.0, 6.0, 10.0, 14.0, 18.0, 22.0), "log_w": (-1.0, 0.0, 1.0)},
     folds={"n": _FOLD_D, "noise": {"log_s0": 0.0}},
     formula="L = E + A*(p*t)^-alpha + B*n^-beta + C*(s0 + noise)*exp(-z^2/2), z = ln(p*t / (k*n)) / w",
     citation="ours, after Boopathy & Fiete 2024 (arXiv 2409.05782): scale-time equivalence (p*t) joined to a "
              "double-descent peak where p*t reaches k*n, its height linear in the label noise")
def unified(p, x):
    log_pt = torch.log(x["p"]) + torch.log(x["t"])
    z = (log_pt - p["log_k"] - torch.log(x["n"])) / torch.exp(p["log_w"])
    peak = p["log_c"] + torch.log(torch.exp(p["log_s0"]) + x["noise"]) - 0.5 * z * z
    return logsumexp(p["e"], p["a"] - p["alpha"] * log_pt, p["b"] - p["beta"] * torch.log(x["n"]), peak)


def _ntk_natural(t: Theta) -> Theta:
    return {"L_inf": math.exp(t["l_inf"]), "L_0": math.exp(t["l_inf"]) + math.exp(t["d"]),
            "r": math.exp(t["log_r"])}


def _ntk_theta(n: Theta) -> Theta:
    return {"l_inf": math.log(n["L_inf"]), "d": math.log(n["L_0"] - n["L_inf"]), "log_r": math.log(n["r"])}


@law("ntk", variables=("t",), nonnegative=("t",), natural=_ntk_natural, theta=_ntk_theta,
     params={"l_inf": _E, "d": _E, "log_r": (-30.0, 10.0)},
     grid={"l_inf": (-6.0, -3.0, -1.0, 0.0, 1.0), "d": (-6.0, -3.0, -1.0, 0.0, 1.0),
           "log_r": tuple(float(v) for v in range(-14, 1, 2))},
     formula="L = L_inf + (L_0 - L_inf)*exp(-r*t)",
     citation="NTK-regime convergence: Jacot et al. 2018 (arXiv 1806.07572), Lee et al. 2019 (arXiv 1902.06720)")
def ntk(p, x):
    return logsumexp2(p["l_inf"], p["d"] - torch.exp(p["log_r"]) * x["t"])


def _per_point(t: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(S, n) values of a theta tensor at each point: a per-label (S, K) one read at the point's label
    code q, a shared (S, 1) one broadcast."""
    return t if t.shape[1] == 1 else t[:, q]


_pp_natural, _pp_theta = exp_params(e="E", a="A")


@law("precision_power", variables=("N", "Q"), params={"e": _E, "a": _A, "alpha": _EXPONENT},
     grid={**_HOFFMANN, "e": (-3.0, -1.0, 0.0, 0.5, 1.0)}, natural=_pp_natural, theta=_pp_theta,
     categorical="Q", per_label=("e", "a", "alpha"),
     formula="L = E_q + A_q*N^-alpha_q, one (E, A, alpha) per precision label q (--share ties any of them)",
     citation="a power law per precision, fitted jointly; with shared alpha the form of Spectra/TriLM "
              "(Kaushal et al. 2024, arXiv 2407.12327)")
def precision_power(p, x):
    q = x["Q"]
    return logsumexp2(_per_point(p["e"], q), _per_point(p["a"], q) - _per_point(p["alpha"], q) * torch.log(x["N"]))


_ptq_natural, _ptq_theta = exp_params(e="E", a="A", b="B", log_gamma="gamma", c_t="C_T", log_gamma_post="gamma_post")


@law("precision_ptq", variables=("N", "D", "P", "P_post"), natural=_ptq_natural, theta=_ptq_theta,
     nonnegative=("P_post",),
     params={**_CHIN_PARAMS, "log_gamma": (-50.0, 5.0), "c_t": _A, "gamma_D": (0.0, 3.0), "gamma_N": (0.0, 3.0),
             "log_gamma_post": (-5.0, 5.0)},
     grid={"e": (-1.0, 0.0, 1.0), "a": (0.0, 5.0, 10.0, 15.0), "alpha": (0.25, 0.5, 1.0),
           "b": (0.0, 5.0, 10.0, 15.0), "beta": (0.25, 0.5, 1.0), "log_gamma": (0.0, 1.0),
           "c_t": (-5.0, 0.0), "gamma_D": (0.5,), "gamma_N": (0.5,), "log_gamma_post": (0.0, 1.0)},
     folds={"D": {**_FOLD_D, "gamma_D": 0.0}, "P": {"log_gamma": -50.0}},
     formula="L = E + A*Neff^-alpha + B*D^-beta + delta_PTQ, Neff = N*(1 - exp(-P/gamma)), "
             "delta_PTQ = C_T*D^gamma_D*N^-gamma_N*exp(-P_post/gamma_post) (0 where P_post = 0: not post-quantized)",
     citation="Kumar et al. 2024, Scaling Laws for Precision (arXiv 2411.04330): QAT term and post-train "
              "quantization degradation delta_PTQ")
def precision_ptq(p, x):
    log_keep = torch.log(-torch.expm1(-x["P"] / torch.exp(p["log_gamma"])))
    log_n, log_d, post = torch.log(x["N"]), torch.log(x["D"]), x["P_post"]
    log_ptq = p["c_t"] + p["gamma_D"] * log_d - p["gamma_N"] * log_n - post / torch.exp(p["log_gamma_post"])
    # rows used at their training precision (P_post = 0) carry no PTQ term: log 0 = -inf drops it from the sum
    log_ptq = torch.where(post > 0, log_ptq, torch.full_like(log_ptq, -math.inf))
    return logsumexp(p["e"], p["a"] - p["alpha"] * (log_n + log_keep), p["b"] - p["beta"] * log_d, log_ptq)
