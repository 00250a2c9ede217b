"""The points a scaling law is fitted to: `LawData` (variables -> values, observed loss, optional groups
and an optional mask of points held out for the extrapolation check).

A point i is (x_i, L_i): x_i holds one value per variable (N parameters, D data, C FLOPs, S or t steps,
P precision bits per weight (information bits, log2(3) for ternary), bits storage bits per weight,
p parameters for the scale-time law, Q a categorical precision label) and L_i > 0 is the observed loss. Laws are fitted in log space, r_i = log L_pred(x_i) - log L_i, so every loss and
every variable a law takes the logarithm of must be finite and > 0.

`held_out` (bool, (n,), or None) marks the points chosen, e.g. by `from_csv(..., holdout="N >= 1e9")`, to be
left out of the fit and predicted instead; None leaves the choice to the validation (e.g. the largest N).

Construction only checks shapes (so callers may build a LawData and then filter it); the checks a
given law needs (`LawData.check`) run when a law is fitted and raise `LawDataError` with one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class LawDataError(ValueError):
    """Degenerate input for a law fit; the message is one line meant for the user."""


def is_categorical(values: np.ndarray) -> bool:
    """True for label arrays (str / object dtype), False for numeric ones."""
    return np.asarray(values).dtype.kind in "OUS"


def _rows(index: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in index[:limit])
    return shown + (", ..." if len(index) > limit else "")


@dataclass
class LawData:
    """Points for a law fit: x[var] (n,) values, loss (n,) > 0, groups (n,) resampling units or None,
    held_out (n,) bool, True for the points to hold out of the fit, or None."""

    x: dict[str, np.ndarray]
    loss: np.ndarray
    groups: np.ndarray | None = None
    label: str = ""
    held_out: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.loss = np.asarray(self.loss, dtype=np.float64).reshape(-1)
        n = len(self.loss)
        converted = {}
        for name, values in self.x.items():
            arr = np.asarray(values)
            arr = arr.astype(object) if is_categorical(arr) else arr.astype(np.float64)
            if arr.ndim != 1 or len(arr) != n:
                raise LawDataError(f"variable {name} has shape {arr.shape}; expected ({n},) like the loss")
            converted[name] = arr
        self.x = converted
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if self.groups.ndim != 1 or len(self.groups) != n:
                raise LawDataError(f"groups has shape {self.groups.shape}; expected ({n},) like the loss")
        if self.held_out is not None:
            self.held_out = np.asarray(self.held_out)
            if self.held_out.dtype != bool:
                raise LawDataError(f"held_out has dtype {self.held_out.dtype}; expected bool")
            if self.held_out.ndim != 1 or len(self.held_out) != n:
                raise LawDataError(f"held_out has shape {self.held_out.shape}; expected ({n},) like the loss")

    @property
    def n(self) -> int:
        return len(self.loss)

    def subset(self, mask_or_index) -> LawData:
        """The points selected by a boolean mask or an integer index array (groups, held_out and label
        kept)."""
        idx = np.asarray(mask_or_index)
        if idx.dtype == bool and idx.shape != (self.n,):
            raise LawDataError(f"mask has shape {idx.shape}; expected ({self.n},)")
        groups = None if self.groups is None else self.groups[idx]
        held_out = None if self.held_out is None else self.held_out[idx]
        return LawData({k: v[idx] for k, v in self.x.items()}, self.loss[idx], groups, self.label, held_out)

    def check(self, law_name: str, variables: tuple[str, ...], n_params: int, *,
              nonnegative: tuple[str, ...] = (), categorical: str | None = None) -> None:
        """Raise LawDataError (one line) if these points cannot determine a law with n_params parameters.

        Numeric variables must be finite and > 0 (>= 0 for those in `nonnegative`) and take at least two
        distinct values; the categorical variable (if any) only has to be present.
        """
        missing = [v for v in variables if v not in self.x]
        if missing:
            have = ", ".join(sorted(self.x)) or "none"
            raise LawDataError(f"law '{law_name}' needs variable(s) {', '.join(missing)} "
                               f"missing from the data (have: {have})")
        bad = np.flatnonzero(~np.isfinite(self.loss))
        if len(bad):
            raise LawDataError(f"loss has {len(bad)} NaN or inf value(s) at row(s) {_rows(bad)}")
        bad = np.flatnonzero(self.loss <= 0)
        if len(bad):
            raise LawDataError(f"loss must be > 0; {len(bad)} value(s) <= 0 at row(s) {_rows(bad)}")
        for name in variables:
            values = self.x[name]
            if name == categorical:
                continue
            if is_categorical(values):
                raise LawDataError(f"variable {name} holds labels; law '{law_name}' needs numbers")
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise LawDataError(f"variable {name} has {len(bad)} NaN or inf value(s) at row(s) {_rows(bad)}")
            if name in nonnegative:
                bad, bound = np.flatnonzero(values < 0), ">= 0"
            else:
                bad, bound = np.flatnonzero(values <= 0), "> 0"
            if len(bad):
                raise LawDataError(f"variable {name} must be {bound}; {len(bad)} value(s) are not, "
                                   f"at row(s) {_rows(bad)}")
            if self.n and len(np.unique(values)) < 2:
                raise LawDataError(f"variable {name} takes a single value ({values[0]:g}); "
                                   f"law '{law_name}' needs it to vary")
        if self.n < n_params:
            raise LawDataError(f"{self.n} point(s) cannot determine law '{law_name}' "
                               f"with {n_params} parameters")
