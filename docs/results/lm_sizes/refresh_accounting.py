"""Recompute the accounting columns of this sweep's runs.csv from each run's config, with today's
bits-per-weight figures (precision_bits = log2 of the code levels, storage_bits_per_weight = the packed
format's bits), the same recomputation the store's schema-2 migration applies to a store. The file was
exported before those columns existed (it had one `bits_per_weight`, 2 bits for a ternary weight).

    python docs/results/lm_sizes/refresh_accounting.py docs/results/lm_sizes/runs.csv

Each row's config is rebuilt from its dotted columns and validated; the recomputed parameter count and
FLOPs must equal the stored ones, or the script stops and writes nothing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from bitscale.atomic import atomic_write
from bitscale.sweep.accounting import account
from bitscale.sweep.kinds import parse_run_config

CONFIG_PREFIXES = ("data.", "model.", "train.")
CONFIG_KEYS = ("kind", "device", "eval_batches", "eval_seed")


def config_of(row: pd.Series) -> dict:
    config: dict = {}
    for column, value in row.items():
        if not (column in CONFIG_KEYS or column.startswith(CONFIG_PREFIXES)):
            continue
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, str) and value.startswith("["):
            value = json.loads(value)
        if hasattr(value, "item"):
            value = value.item()
        node = config
        *parents, leaf = column.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def main(path: Path) -> None:
    runs = pd.read_csv(path)
    fresh = []
    for i, row in runs.iterrows():
        acc = account(parse_run_config(config_of(row)))
        for key in ("n_params", "n_params_non_embedding", "train_flops"):
            if not math.isclose(getattr(acc, key), row[key], rel_tol=1e-9):
                sys.exit(f"{path}: row {i + 1}: recomputed {key} {getattr(acc, key)} != stored {row[key]}; nothing written")
        fresh.append({"precision_bits": acc.precision_bits, "storage_bits_per_weight": acc.storage_bits_per_weight})
    runs = runs.drop(columns=[c for c in ("bits_per_weight", "precision_bits", "storage_bits_per_weight") if c in runs])
    at = runs.columns.get_loc("n_params_non_embedding") + 1
    for j, key in enumerate(("precision_bits", "storage_bits_per_weight")):
        runs.insert(at + j, key, [f[key] for f in fresh])
    atomic_write(path, lambda tmp: runs.to_csv(tmp, index=False))
    print(f"{path}: {len(runs)} rows; precision_bits and storage_bits_per_weight recomputed from the configs")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
