"""IsoFLOP profiles of the isoFLOP sweep's runs: per precision and budget, the loss-minimizing size.

    python docs/results/lm_compute_optimal/isoflop.py isoflop_runs.csv configs/lm_isoflop.toml OUT_PREFIX

Each run is assigned to the sweep file's budget nearest its training FLOPs (they differ by the rounding
of the steps); `bitscale.laws.isoflop` fits the parabolas and N_opt = k C^a. Writes OUT_PREFIX.md (the
table), OUT_PREFIX.json and OUT_PREFIX.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bitscale.laws.isoflop import isoflop_profiles, optimal_scaling
from bitscale.laws.plot import plot_isoflop
from bitscale.sweep.spec import load_sweep


def main(runs_csv: str, sweep_file: str, prefix: str) -> None:
    sweep, _ = load_sweep(sweep_file)
    budgets = np.array(sweep.isoflop.budgets)
    runs = pd.read_csv(runs_csv)
    runs = runs[runs["status"] == "done"]
    nearest = np.abs(np.log(runs["train_flops"].to_numpy()[:, None]) - np.log(budgets)[None, :]).argmin(axis=1)
    frame = pd.DataFrame({"label": runs["model.quant"], "budget": budgets[nearest],
                          "N": runs["n_params_non_embedding"], "loss": runs["final_test_loss"]})
    profiles = isoflop_profiles(frame)
    scaling = optimal_scaling(profiles)
    lines = ["| precision | budget C | sizes | N_opt | loss at N_opt | flags |", "|---|---:|---:|---:|---:|---|"]
    for p in profiles:
        lines.append(f"| {p.label} | {p.budget:.2g} | {p.n_sizes} | {p.N_opt:,.0f} | {p.loss_opt:.4f} | "
                     f"{', '.join(p.flags) or '–'} |")
    lines += ["", "| precision | N_opt = k C^a: a | budgets used | flagged budgets |", "|---|---:|---:|---:|"]
    for s in scaling.values():
        a = "–" if np.isnan(s.exponent) else f"{s.exponent:.3f}"
        lines.append(f"| {s.label} | {a} | {s.n_budgets} | {s.untrusted} |")
    Path(f"{prefix}.md").write_text("\n".join(lines) + "\n")
    Path(f"{prefix}.json").write_text(json.dumps({"profiles": [p.to_dict() for p in profiles],
                                                  "scaling": {k: v.to_dict() for k, v in scaling.items()}}, indent=2) + "\n")
    plot_isoflop(frame, profiles, f"{prefix}.png", ylabel="validation loss (nats/byte)",
                 title="isoFLOP profiles, WikiText-2 (byte-level), one seed")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:4])
