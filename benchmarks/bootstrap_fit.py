"""Bootstrap cost: one full grid fit of the Chinchilla law against 1000 bootstrap refits, in one process.

    python benchmarks/bootstrap_fit.py [--n-N 25] [--n-D 10] [--resamples 1000] [--sigma 0.01]

Data: L = E + A/N^alpha + B/D^beta with Hoffmann et al.'s estimates (E 1.69, A 406.4, alpha 0.34,
B 410.7, beta 0.28) on a log grid of N in [1e6, 1e9] x D in [1e8, 1e11] (25 x 10 = 250 points), times
log-normal noise exp(sigma z). Times (a) fit_law with the default Hoffmann start grid (4500 starts) and
(b) bootstrap(n=1000) by points, then prints both, their ratio, and the recovered parameters with 95%
percentile intervals. Target: (b) under 60 s on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from bitscale.laws.bootstrap import bootstrap
from bitscale.laws.data import LawData
from bitscale.laws.fit import fit_law
from bitscale.laws.forms import get_law

TRUE = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-N", type=int, default=25)
    parser.add_argument("--n-D", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--sigma", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    N, D = np.meshgrid(np.logspace(6, 9, args.n_N), np.logspace(8, 11, args.n_D), indexing="ij")
    x = {"N": N.ravel(), "D": D.ravel()}
    noise = np.exp(args.sigma * np.random.default_rng(args.seed).standard_normal(N.size))
    data = LawData(x, get_law("chinchilla").predict(TRUE, x) * noise)

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"data: {data.n} points ({args.n_N} N x {args.n_D} D), noise sigma {args.sigma}")

    start = time.perf_counter()
    fit = fit_law("chinchilla", data)
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    boot = bootstrap("chinchilla", data, fit, n=args.resamples)
    t_boot = time.perf_counter() - start

    print(f"(a) one grid fit ({fit.n_starts} starts):   {t_fit:7.2f} s")
    print(f"(b) {args.resamples} bootstrap fits:          {t_boot:7.2f} s   "
          f"({'under' if t_boot < 60 else 'OVER'} the 60 s target; {boot.n_failed} failed)")
    print(f"ratio (b)/(a): {t_boot / t_fit:.1f}x")
    print(f"{'param':>6} {'true':>9} {'fit':>9} {'95% interval':>22} {'std err':>9}")
    for name, true in TRUE.items():
        lo, hi = boot.intervals[name]
        print(f"{name:>6} {true:9.4g} {fit.params[name]:9.4g}   [{lo:9.4g}, {hi:9.4g}] {boot.std_errors[name]:9.3g}")


if __name__ == "__main__":
    main()
