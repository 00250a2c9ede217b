"""The kinds of run a sweep can hold, and how a stored config dict says which it is.

    regression   `bitscale.train.run.RunConfig`: a TwoLayerNet / MLP on a synthetic regression task
    lm           `bitscale.train.lm_config.LMRunConfig`: a Decoder language model on a text corpus

An LM config carries `kind = "lm"`; a config without a `kind` key is a regression run, so stores and
sweep files written before LM sweeps existed read unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

from ..train.lm_config import LMRunConfig
from ..train.run import RunConfig

AnyRunConfig = Union[RunConfig, LMRunConfig]
KINDS: dict[str, type] = {"regression": RunConfig, "lm": LMRunConfig}


def kind_of(data: Mapping[str, Any]) -> str:
    """'lm' for a dict with kind = "lm", else 'regression'."""
    return "lm" if data.get("kind") == "lm" else "regression"


def config_class(kind: str) -> type:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind]


def parse_run_config(data: Mapping[str, Any]) -> AnyRunConfig:
    """Validate a stored or expanded config dict as the kind it names."""
    return config_class(kind_of(data)).model_validate(data)
