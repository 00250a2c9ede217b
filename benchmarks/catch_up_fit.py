"""Catch-up cost: `bitscale fit --law precision_power --bootstrap 1000` on 60 points with 4 precision labels,
against the same command without a bootstrap, timed side by side in one run.

    python benchmarks/catch_up_fit.py [--resamples 1000] [--sigma 0.01]

Data: 4 labels (fp16, int4, ternary, binary), each L_q = E_q + A_q N^-alpha_q with known parameters
(ternary and int4 cross fp16 inside [1e3, 1e15], binary does not), 5 sizes in [1e7, 1e10] x 3 seeds
per label = 60 points, times log-normal noise exp(sigma z). Both commands run as `python -m bitscale.cli`
subprocesses, so the times include start-up and the catch-up answers (crossing, gap, matching and
memory-matched, at the default sizes). Target: the bootstrap command under 60 s on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LABELS = {  # E, A, alpha, storage bits per weight
    "fp16": (2.0, 50.0, 0.25, 16.0),
    "int4": (1.95, 60.0, 0.25, 4.0),
    "ternary": (1.8, 36.0, 0.2, 1.6),
    "binary": (2.3, 70.0, 0.25, 1.0),
}


def write_csv(path: Path, sigma: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = ["precision,params,bits,seed,loss"]
    for label, (E, A, alpha, bits) in LABELS.items():
        for s in range(3):
            for n in np.geomspace(1e7, 1e10, 5):
                rows.append(f"{label},{n:.6g},{bits},{s},{(E + A * n ** -alpha) * np.exp(sigma * rng.standard_normal()):.10g}")
    path.write_text("\n".join(rows) + "\n")


def run(args: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bitscale.cli", *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(proc.stdout)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--sigma", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "four_labels.csv"
        write_csv(csv, args.sigma, args.seed)
        base = ["fit", "--law", "precision_power", "--csv", str(csv), "--group", "seed",
                "--columns", "N=params,Q=precision,bits=bits,loss=loss", "--json"]
        t_fit, fit = run(base)
        t_boot, boot = run([*base, "--bootstrap", str(args.resamples)])
    print(f"data: {fit['n_points']} points, {len(LABELS)} labels, {len(fit['params'])} parameters, noise sigma {args.sigma}")
    print(f"(a) fit + held-out check + catch-up:           {t_fit:7.2f} s")
    print(f"(b) the same with {args.resamples} bootstrap resamples: {t_boot:7.2f} s   "
          f"({'under' if t_boot < 60 else 'OVER'} the 60 s target; {boot['bootstrap']['n_failed']} failed)")
    print(f"ratio (b)/(a): {t_boot / t_fit:.1f}x")
    for key, answer in boot["catch_up"].items():
        lo, hi = answer.get("crossing_N_interval") or (None, None)
        cross = answer["crossing_N"]
        print(f"  {key}: crossing N {'-' if cross is None else f'{cross:.3g}'} "
              f"[{'-' if lo is None else f'{lo:.3g}'}, {'inf' if hi is None else f'{hi:.3g}'}], "
              f"no crossing in {100 * answer['no_crossing_fraction']:.0f}% of resamples")


if __name__ == "__main__":
    main()
