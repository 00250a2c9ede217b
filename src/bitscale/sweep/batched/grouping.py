"""Which runs can be trained together: configs that differ only in `BATCHABLE_FIELDS`."""

from __future__ import annotations

import json

from ...quant import resolve_config
from ...train.run import RunConfig

# Fields that may differ between the members of one batched group, by config section.
BATCHABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("quant", "kappa", "init_seed"),
    "train": ("seed", "lr"),
    "task": ("seed", "noise_std"),
}


def can_batch(config: RunConfig) -> str | None:
    """None if `config` can be trained in a batched group, else a short reason why not."""
    if not isinstance(config, RunConfig):
        return "not a regression run (language models train one by one)"
    quant = resolve_config(config.model.quant)
    if quant.norm:
        return "quant norm=True"
    if quant.act == "atom":
        return "quant act=atom (outlier channels chosen over the whole batch)"
    return None


def group_key(config: RunConfig) -> str | None:
    """Canonical JSON of `config` with the batchable fields blanked; None if it cannot be batched.

    Configs with equal keys differ only in `BATCHABLE_FIELDS` and can be trained by one `train_batched` call.
    """
    if can_batch(config) is not None:
        return None
    data = config.model_dump(mode="json")
    for section, fields in BATCHABLE_FIELDS.items():
        for name in fields:
            data[section][name] = None
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def group_runs(configs: list[RunConfig]) -> list[list[int]]:
    """Indices of `configs` grouped by `group_key`, groups in order of first appearance; a config that
    cannot be batched gets a group of its own."""
    groups: list[list[int]] = []
    by_key: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        key = group_key(config)
        if key is None:
            groups.append([i])
        elif key in by_key:
            by_key[key].append(i)
        else:
            by_key[key] = [i]
            groups.append(by_key[key])
    return groups
