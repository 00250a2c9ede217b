"""A family of seeded "complex" target functions f: R^d -> R, and their registry.

Every function is built by ``make_function(name, d, seed, **kwargs)`` and called
as ``f(x)`` with x of shape (n, d), returning shape (n,). In the formulas below,
z = s * x is the input on the Gaussian scale (s = 1 for Gaussian inputs and
s = sqrt(d) for inputs on the unit sphere), and u_k are unit vectors uniform on
S^{d-1}, so each projection <u_k, z> is N(0, 1) for x ~ N(0, I_d) and
approximately so on the sphere. This keeps every output O(1) whatever d is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bitscale.data.target import TargetFunction, check_positive, random_directions
from bitscale.data.teacher import TeacherNetwork


class Sines(TargetFunction):
    """Sum of sines of random projections.

        f(x) = (1/sqrt(K)) * sum_{k=1}^{K} sin(omega_k * <u_k, z> + phi_k)

    with u_k uniform on S^{d-1}, omega_k ~ U[0.5, 2.5], phi_k ~ U[0, 2 pi), K = n_terms.
    """

    name = "sines"

    def __init__(self, d: int, seed: int = 0, input_dist: str = "gaussian", n_terms: int = 8) -> None:
        super().__init__(d, seed, input_dist)
        check_positive(n_terms=n_terms)
        gen = self.generator()
        self.directions = random_directions(n_terms, d, gen)  # (K, d)
        self.omega = 0.5 + 2.0 * torch.rand(n_terms, generator=gen, dtype=torch.float64)
        self.phi = 2 * math.pi * torch.rand(n_terms, generator=gen, dtype=torch.float64)

    def forward(self, z: Tensor) -> Tensor:
        proj = z @ self.directions.to(z).T  # (n, K)
        terms = torch.sin(self.omega.to(z) * proj + self.phi.to(z))
        return terms.sum(dim=1) / math.sqrt(self.omega.numel())


class Polynomial(TargetFunction):
    """Sparse random polynomial of degree 3: linear, pairwise and cubic monomials.

        f(x) = (1/sqrt(P)) * [ sum_{i in L} b_i z_i
                              + sum_{(i,j) in Q} c_ij z_i z_j
                              + sum_{(i,j,k) in C} e_ijk z_i z_j z_k ]

    The index tuples L, Q, C (sizes n_linear, n_pairs, n_cubic) are drawn uniformly
    from {0..d-1} with replacement, the coefficients b, c, e ~ N(0, 1), and
    P = n_linear + n_pairs + n_cubic. Monomials of distinct Gaussian coordinates
    are orthonormal, so Var f ~ 1 for large d; repeated indices (likely for small
    d, certain for d = 1) give z_i^2 or z_i^3 terms, still O(1).
    """

    name = "polynomial"

    def __init__(
        self,
        d: int,
        seed: int = 0,
        input_dist: str = "gaussian",
        n_linear: int = 8,
        n_pairs: int = 8,
        n_cubic: int = 4,
    ) -> None:
        super().__init__(d, seed, input_dist)
        if min(n_linear, n_pairs, n_cubic) < 0 or n_linear + n_pairs + n_cubic < 1:
            raise ValueError(
                "n_linear, n_pairs, n_cubic must be >= 0 with a positive sum, "
                f"got {n_linear}, {n_pairs}, {n_cubic}"
            )
        gen = self.generator()
        # One (indices, coefficients) pair per degree: indices (n_terms, degree), coefficients (n_terms,)
        self.monomials: list[tuple[Tensor, Tensor]] = []
        for degree, n_terms in ((1, n_linear), (2, n_pairs), (3, n_cubic)):
            indices = torch.randint(d, (n_terms, degree), generator=gen)
            coefs = torch.randn(n_terms, generator=gen, dtype=torch.float64)
            self.monomials.append((indices, coefs))
        self.n_terms = n_linear + n_pairs + n_cubic

    def forward(self, z: Tensor) -> Tensor:
        out = z.new_zeros(z.shape[0])
        for indices, coefs in self.monomials:
            products = z[:, indices.to(z.device)].prod(dim=2)  # (n, n_terms)
            out = out + products @ coefs.to(z)
        return out / math.sqrt(self.n_terms)


class Compositional(TargetFunction):
    """A composition g(h_1(x), ..., h_J(x)): the product of J tanh ridge features.

        f(x) = prod_{j=1}^{J} tanh(beta * <u_j, z>) / rho,   rho = (E_{g ~ N(0,1)} tanh(beta g)^2)^(J/2)

    with J = n_factors. The u_j are orthonormal when J <= d (so the factors are
    independent for Gaussian inputs and E f^2 = 1 exactly), otherwise independent
    uniform unit vectors. f is odd in every projection, a smooth parity of J
    directions: no single feature correlates with it.
    """

    name = "compositional"

    def __init__(
        self, d: int, seed: int = 0, input_dist: str = "gaussian", n_factors: int = 3, beta: float = 2.0
    ) -> None:
        super().__init__(d, seed, input_dist)
        check_positive(n_factors=n_factors)
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        gen = self.generator()
        if n_factors <= d:
            q, _ = torch.linalg.qr(torch.randn(d, n_factors, generator=gen, dtype=torch.float64))
            self.directions = q.T.contiguous()  # (J, d), orthonormal rows
        else:
            self.directions = random_directions(n_factors, d, gen)
        self.beta = beta
        self.rho = _tanh_rms(beta) ** n_factors

    def forward(self, z: Tensor) -> Tensor:
        proj = z @ self.directions.to(z).T  # (n, J)
        return torch.tanh(self.beta * proj).prod(dim=1) / self.rho


def _tanh_rms(beta: float) -> float:
    """sqrt(E tanh(beta g)^2) for g ~ N(0, 1), by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(100)
    return float(np.sqrt(np.sum(weights * np.tanh(beta * nodes) ** 2) / np.sqrt(2 * np.pi)))


class Radial(TargetFunction):
    """A damped oscillation of the norm ||x||, invariant under rotations of x.

        t = (||z||^2 - d) / sqrt(2 d)
        f(x) = cos(omega * t + phi) * exp(-t^2 / 8)

    with omega ~ U[1, 3] and phi ~ U[0, 2 pi). t is the standardized chi-square
    statistic: mean 0 and variance 1 for Gaussian inputs in every dimension d.
    On the sphere ||z||^2 = d exactly, so f is the constant cos(phi) there (any
    rotation-invariant function is); ``make_task`` refuses that combination.
    """

    name = "radial"

    def __init__(self, d: int, seed: int = 0, input_dist: str = "gaussian") -> None:
        super().__init__(d, seed, input_dist)
        gen = self.generator()
        self.omega = 1.0 + 2.0 * torch.rand((), generator=gen, dtype=torch.float64).item()
        self.phi = 2 * math.pi * torch.rand((), generator=gen, dtype=torch.float64).item()

    def forward(self, z: Tensor) -> Tensor:
        t = (z.square().sum(dim=1) - self.d) / math.sqrt(2 * self.d)
        return torch.cos(self.omega * t + self.phi) * torch.exp(-t.square() / 8)


FUNCTIONS: dict[str, type[TargetFunction]] = {
    cls.name: cls for cls in (Sines, Polynomial, Compositional, Radial, TeacherNetwork)
}


def function_names() -> list[str]:
    """Names accepted by ``make_function`` and ``make_task``."""
    return list(FUNCTIONS)


def make_function(
    name: str, d: int, seed: int = 0, input_dist: str = "gaussian", **kwargs: Any
) -> TargetFunction:
    """Build the target function ``name`` in dimension d with coefficients drawn from ``seed``.

    ``input_dist`` ("gaussian" or "sphere") sets the input scale, see the module
    docstring; extra keyword arguments go to the function (e.g. ``width`` for "teacher").
    """
    if name not in FUNCTIONS:
        raise ValueError(f"function={name!r} is unknown; allowed values: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[name](d, seed, input_dist, **kwargs)
