"""Scaling laws: forms, a robust fitter, bootstrap intervals, held-out checks and derived answers.

    data = from_store("runs/bitscale.db", by="model.quant")          # or from_csv(path, columns)
    result = analyze("chinchilla", data[0], bootstrap_n=1000)        # fit + intervals + holdout
    result.fit.params, result.boot.intervals, result.holdout_error, result.derived
"""

from bitscale.laws.analysis import Analysis, analyze
from bitscale.laws.bootstrap import BootstrapResult, bootstrap
from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.derived import compute_optimal, effective_fraction, matching_size, precision_multipliers
from bitscale.laws.fit import FitResult, fit_law
from bitscale.laws.forms import LAWS, Law, get_law, law, register
from bitscale.laws.inputs import from_csv, from_store, parse_columns
from bitscale.laws.isoflop import isoflop_profiles, optimal_scaling
from bitscale.laws.scale_time import collapse, collapse_spread, predict_from_small
from bitscale.laws.validate import HoldoutResult, holdout_largest, leave_one_group_out

__all__ = [
    "Analysis", "BootstrapResult", "FitResult", "HoldoutResult", "LAWS", "Law", "LawData", "LawDataError",
    "analyze", "bootstrap", "collapse", "collapse_spread", "compute_optimal", "effective_fraction", "fit_law",
    "from_csv", "from_store", "get_law", "holdout_largest", "isoflop_profiles", "law", "leave_one_group_out",
    "matching_size", "optimal_scaling", "parse_columns", "precision_multipliers", "predict_from_small", "register",
]
