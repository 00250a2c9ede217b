"""What a run costs, computed from its config alone (no model is built), per model family.

- parameters N: every parameter of the model, trainable or not. Non-embedding parameters exclude
  token/position embeddings (Kaplan et al. 2020 count N that way); the regression models here have
  no embeddings, so the two are equal.
    two_layer (TwoLayerNet, width m, input d):  N = m*d (hidden, quantized) + m (output weights a)
    mlp (depth L, width w, input d, bias):      N = (d*w + w) + (L-1)*(w*w + w) + (w + 1)
- samples seen S = steps * B, with B = batch_size, or n_train for full-batch training.
- training FLOPs C = 6 * N * S: the dense-network estimate of Kaplan et al. 2020 (2 FLOPs per weight
  per sample forward, 4 backward). It ignores the quantizers' elementwise work and evaluation passes,
  and counts frozen parameters (TwoLayerNet's a) as if trained, so it is an upper bound for those.
- bits per weight: storage bits per weight of the quantized matrices (the BitLinear hidden layers),
  code bits plus the scales' share (`QuantConfig.bits_per_weight`); 32 for full precision. Other
  parameters (biases, the full-precision head, a) are not in this figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..quant import resolve_config
from ..train.run import RunConfig


@dataclass(frozen=True)
class Accounting:
    n_params: int
    n_params_non_embedding: int
    bits_per_weight: float
    train_flops: float
    samples_seen: int

    def to_dict(self) -> dict:
        return asdict(self)


def quantized_shapes(config: RunConfig) -> list[tuple[int, int]]:
    """(out_features, in_features) of every quantized matrix in the model."""
    m, d = config.model.width, config.task.d
    if config.model.kind == "two_layer":
        return [(m, d)]
    return [(m, d)] + [(m, m)] * (config.model.depth - 1)


def count_params(config: RunConfig) -> int:
    m, d = config.model.width, config.task.d
    if config.model.kind == "two_layer":
        return m * d + m
    return (d * m + m) + (config.model.depth - 1) * (m * m + m) + (m + 1)


def account(config: RunConfig) -> Accounting:
    """Parameters, bits per weight, samples and training FLOPs of the run `config` describes."""
    n = count_params(config)
    quant = resolve_config(config.model.quant)
    shapes = quantized_shapes(config)
    weights = sum(o * i for o, i in shapes)
    if quant.weight == "fp32":
        bits = 32.0
    else:
        bits = sum(quant.bits_per_weight((o, i)) * o * i for o, i in shapes) / weights
    batch = config.train.batch_size or config.task.n_train
    samples = config.train.steps * min(batch, config.task.n_train)
    return Accounting(n, n, bits, 6.0 * n * samples, samples)
