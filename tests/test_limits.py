"""bitscale.limits: strict types, finite numbers and bounded sizes in every config; the memory check."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bitscale.limits import MAX_STEPS, MemoryLimitError, check_memory, format_bytes
from bitscale.quant import QuantConfig
from bitscale.runs.kinds import KINDS
from bitscale.theory.study import TheoryConfig
from bitscale.train import RunConfig
from bitscale.train.lm_config import LMRunConfig

INF = float("inf")


def _refused(cls, data, field, message):
    with pytest.raises(ValidationError) as err:
        cls.model_validate(data)
    errors = err.value.errors()
    assert any(field in map(str, e["loc"]) and message in e["msg"] for e in errors), errors


@pytest.mark.parametrize("data, field, message", [
    ({"train": {"steps": True}}, "steps", "valid integer"),           # true is not the integer 1
    ({"model": {"width": 8.0}}, "width", "valid integer"),
    ({"model": {"train_a": "yes"}}, "train_a", "valid boolean"),     # "yes" is not a boolean
    ({"model": {"train_a": 1}}, "train_a", "valid boolean"),
    ({"task": {"standardize": "true"}}, "standardize", "valid boolean"),
    ({"train": {"lr": INF}}, "lr", "finite"),
    ({"train": {"lr": float("nan")}}, "lr", "finite"),
    ({"model": {"kappa": INF}}, "kappa", "finite"),
    ({"train": {"weight_decay": INF}}, "weight_decay", "finite"),
    ({"train": {"grad_clip": INF}}, "grad_clip", "finite"),
    ({"task": {"noise_std": INF}}, "noise_std", "finite"),
    ({"train": {"steps": 10**9}}, "steps", f"less than or equal to {MAX_STEPS}"),
    ({"task": {"n_train": 10**12}}, "n_train", "less than or equal"),
    ({"model": {"width": 10**9}}, "width", "less than or equal"),
    ({"train": {"seed": 2**63}}, "seed", "less than or equal"),      # SQLite stores up to 2^63 - 1
    ({"task": {"options": {"width": True}}}, "width", "valid"),
    ({"task": {"options": {"scale": INF}}}, "scale", "finite"),
])
def test_a_regression_config_refuses(data, field, message):
    _refused(RunConfig, data, field, message)


@pytest.mark.parametrize("data, field, message", [
    ({"model": {"rope_base": INF}}, "rope_base", "finite"),
    ({"model": {"rope_base": -1.0}}, "rope_base", "greater than 1"),
    ({"model": {"n_layer": 10**6}}, "n_layer", "less than or equal"),
    ({"eval_batches": 10**9}, "eval_batches", "less than or equal"),
    ({"train": {"steps": 10**9}}, "steps", "less than or equal"),
    ({"data": {"block_size": True}}, "block_size", "valid integer"),
    ({"model": {"tie_weights": "no"}}, "tie_weights", "valid boolean"),
])
def test_an_lm_config_refuses(data, field, message):
    _refused(LMRunConfig, data, field, message)


def test_quantizer_and_theory_configs_are_strict_too():
    _refused(QuantConfig, {"ste_clip": INF}, "ste_clip", "finite")
    _refused(QuantConfig, {"center": "yes"}, "center", "valid boolean")
    _refused(TheoryConfig, {"kappas": [1.0, INF]}, "1", "finite")
    _refused(TheoryConfig, {"widths": [64, True]}, "1", "valid integer")


def test_what_was_accepted_still_is():
    cfg = RunConfig.model_validate({"model": {"kappa": 2}, "train": {"optimizer": "adam", "betas": [0.9, 0.95],
                                                                      "lr": 1e30}})
    assert cfg.model.kappa == 2.0 and cfg.train.betas == (0.9, 0.95)  # an int for a float; an array for a tuple
    assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_check_memory_refuses_in_one_line_with_the_estimate():
    check_memory(10, "run.toml", available=100)
    with pytest.raises(MemoryLimitError) as err:
        check_memory(3 * 2**30, "run.toml", available=2**30)
    message = str(err.value)
    assert message.startswith("run.toml: needs about 3 GiB") and "1 GiB available" in message and "\n" not in message
    assert format_bytes(1536) == "1.5 KiB"


def test_the_regression_estimate_is_the_documented_sum():
    cfg = RunConfig.model_validate({"model": {"width": 100}, "task": {"d": 10, "n_train": 50, "n_test": 30}})
    n_params = 100 * 10 + 100  # TwoLayerNet: hidden weight (m x d) and output weights a (m)
    expected = 24 * n_params + 4 * (50 + 30) * (10 + 1) + 16 * 50 * (100 * 1 + 10)
    assert KINDS["regression"].memory_bytes(cfg) == expected
    with pytest.raises(MemoryLimitError):
        KINDS["regression"].check_fits(cfg, "cfg", available=expected - 1)
    KINDS["regression"].check_fits(cfg, "cfg", available=expected)


def test_the_lm_estimate_grows_with_the_batch_and_the_model():
    small = LMRunConfig.model_validate({"model": {"d_model": 64, "n_head": 2, "n_layer": 2}, "train": {"batch_size": 4}})
    batch = small.model_copy(update={"train": small.train.model_copy(update={"batch_size": 8})})
    est = KINDS["lm"].memory_bytes
    tokens = 4 * small.data.block_size
    per_token = 2 * (16 * 64 + 3 * small.model.ff_dim) + 3 * small.model.vocab_size
    assert est(batch) - est(small) == 4 * tokens * per_token  # activations are linear in the batch
