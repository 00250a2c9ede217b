"""Accounting from the config alone must agree with the model that the config builds."""

import math

import pytest

from bitscale.sweep.accounting import account
from bitscale.train import RunConfig, build_model


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "two_layer", "width": 37, "quant": "paper-1bit"},
        {"kind": "two_layer", "width": 8, "quant": "fp32", "train_a": True},
        {"kind": "mlp", "width": 12, "depth": 1, "quant": "bitnet-b1.58"},
        {"kind": "mlp", "width": 12, "depth": 3, "quant": "xnor"},
    ],
)
def test_parameter_count_matches_the_built_model(model):
    config = RunConfig.model_validate({"model": model, "task": {"d": 5}})
    built = build_model(config.model, 5, 0)
    assert account(config).n_params == sum(p.numel() for p in built.parameters())
    assert account(config).n_params_non_embedding == account(config).n_params


def test_flops_and_samples_by_hand():
    # two_layer m=10, d=4: N = 40 + 10 = 50; full batch of 32 for 100 steps: S = 3200; C = 6 * 50 * 3200
    config = RunConfig.model_validate(
        {"model": {"width": 10}, "task": {"d": 4, "n_train": 32}, "train": {"steps": 100}}
    )
    acc = account(config)
    assert (acc.samples_seen, acc.train_flops) == (3200, 6 * 50 * 3200)
    mini = config.model_copy(update={"train": config.train.model_copy(update={"batch_size": 8})})
    assert account(mini).samples_seen == 800
    huge = config.model_copy(update={"train": config.train.model_copy(update={"batch_size": 1000})})
    assert account(huge).samples_seen == 3200  # a batch larger than the data is the data


def test_bits_per_weight():
    def acc(quant, width=64, d=64):
        return account(RunConfig.model_validate({"model": {"width": width, "quant": quant}, "task": {"d": d}}))

    def bpw(quant, width=64, d=64):
        return acc(quant, width, d).storage_bits_per_weight

    assert bpw("fp32") == 32.0 and acc("fp32").precision_bits == 32.0
    assert bpw("paper-1bit") == 1 + 32 / (64 * 64)  # sign: binary format with its float32 scale s = 1
    assert bpw("bitnet") == 1 + 32 / (64 * 64)  # one float32 scale per tensor
    assert bpw("bitnet-b1.58") == (64 * 13 * 8 + 32) / (64 * 64)  # ternary-b3: 13 bytes per row of 64
    assert bpw("bitnet-b1.58", d=65) == pytest.approx(1.6 + 32 / (64 * 65))
    assert bpw("xnor") == pytest.approx(1 + 32 / 64)  # one scale per output channel
    assert acc("bitnet-b1.58").precision_bits == math.log2(3)
    assert acc("bitnet").precision_bits == acc("paper-1bit").precision_bits == 1.0
