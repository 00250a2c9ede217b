"""Theory made measurable: neural tangent kernels (empirical, with the straight-through gradient, and
their infinite-width limits), kernel diagnostics over training, and the 1-bit generalization difference.
See docs/theory.md for the claims, the derivations and what was measured."""

from .analytic import AnalyticNTK, analytic_ntk, analytic_ntk_info, ste_factor
from .diagnostics import KernelTrace, kernel_trace
from .generalization import GenDiffPoint, decay_exponent, generalization_difference, kappa_sweep, width_sweep
from .ntk import empirical_ntk

__all__ = [
    "AnalyticNTK", "GenDiffPoint", "KernelTrace", "analytic_ntk", "analytic_ntk_info", "decay_exponent",
    "empirical_ntk", "generalization_difference", "kappa_sweep", "kernel_trace", "ste_factor", "width_sweep",
]
