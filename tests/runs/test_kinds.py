"""bitscale.runs.kinds: the one registry of run kinds, and accounting counted on the models they build."""

from __future__ import annotations

import pytest

from bitscale.models.decoder import Decoder
from bitscale.runs.kinds import KINDS, kind_for, kind_of, parse_run_config
from bitscale.sweep.accounting import account
from bitscale.train import RunConfig, build_model
from bitscale.train.classification import ClassificationRunConfig, build_classifier
from bitscale.train.lm_config import LMRunConfig

CONFIGS = {
    "regression": RunConfig.model_validate({"model": {"kind": "mlp", "width": 12, "depth": 3, "quant": "bitnet"},
                                            "task": {"d": 5}}),
    "lm": LMRunConfig.model_validate({"model": {"n_layer": 2, "d_model": 32, "n_head": 2, "block_size": 16,
                                                "tie_weights": True}, "data": {"block_size": 16}}),
    "classification": ClassificationRunConfig.model_validate({"model": {"width": 8}, "train": {"steps": 10}}),
}


def _real_model(config):
    if isinstance(config, LMRunConfig):
        return Decoder(config.model, seed=0)
    if isinstance(config, ClassificationRunConfig):
        return build_classifier(config.model, config.data.length, 0)
    return build_model(config.model, config.task.d, 0)


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_counts_the_parameters_of_the_model_it_builds(name):
    config = CONFIGS[name]
    assert kind_for(config) is KINDS[name]
    real = _real_model(config)
    unique = {id(p): p for p in real.parameters()}.values()
    acc = account(config)
    assert acc.n_params == sum(p.numel() for p in unique)
    skeleton = KINDS[name].skeleton(config)
    assert all(p.is_meta for p in skeleton.parameters())  # nothing allocated to count it
    if name == "lm":  # tied head: the embedding is multiplied, so every parameter is in the FLOPs
        assert acc.n_params_non_embedding == real.num_params(non_embedding=True)
        assert acc.train_flops == 6.0 * acc.n_params * acc.samples_seen
    if name == "classification":  # a CNN reuses its kernels at every position: FLOPs from its MACs
        assert acc.train_flops == 6.0 * real.macs_per_sample() * acc.samples_seen > 6.0 * acc.n_params * acc.samples_seen


def test_an_unknown_kind_is_one_line_naming_the_kinds():
    with pytest.raises(ValueError) as err:
        parse_run_config({"kind": "vision", "model": {}})
    assert str(err.value) == "kind: unknown kind of run 'vision'; expected one of regression, lm, classification"
    assert kind_of({}) == "regression" and kind_of({"kind": "lm"}) == "lm"
