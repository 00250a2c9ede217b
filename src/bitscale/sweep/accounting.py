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
- two bits-per-weight figures, each weighted over the quantized matrices (the BitLinear hidden layers);
  32 for full precision. Other parameters (biases, the full-precision head, a) are in neither.
  - precision bits P (`QuantConfig.precision_bits`): information bits per weight, log2 of the code
    levels: sign / binary 1, ternary log2(3) = 1.585, int-k k. The scaling laws' precision variable.
  - storage bits per weight (`QuantConfig.storage_bits_per_weight`): what bitscale stores, from the
    packed format (`bitscale.kernels.formats.bits_per_weight`, row padding and float32 scales
    included: ternary-b3 about 1.6); the figure `summary(model)` and `bitscale pack` report.

Language models (`LMRunConfig`, a `Decoder`; d = d_model, f = d_ff, L = n_layer, V = vocab_size):
- N counts every parameter (`bitscale.models.decoder.count_params`); non-embedding N leaves out the
  token embedding and an untied head (Kaplan et al. 2020).
- samples seen S = tokens = steps * batch_size * block_size.
- C = 6 * N_matmul * tokens, where N_matmul = N minus the token-embedding table (a lookup, no
  multiply; when the head is tied to it, the head's multiply is counted): the 6ND of Kaplan et al.
  2020 with the head's FLOPs in and attention's context-length term (2 * L * T * d per token forward)
  left out, as Kaplan and Hoffmann do.
- both bits-per-weight figures over the BitLinear matrices: per layer W_q, W_k, W_v, W_o (d x d) and
  the MLP's W_gate, W_up (f x d) and W_down (d x f) (relu2: no W_gate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..models.decoder import DecoderConfig
from ..models.decoder import count_params as decoder_params
from ..quant import resolve_config
from ..train.lm_config import LMRunConfig
from ..train.run import RunConfig


@dataclass(frozen=True)
class Accounting:
    n_params: int
    n_params_non_embedding: int
    precision_bits: float
    storage_bits_per_weight: float
    train_flops: float
    samples_seen: int

    def to_dict(self) -> dict:
        return asdict(self)


def decoder_shapes(cfg: DecoderConfig) -> list[tuple[int, int]]:
    """(out_features, in_features) of every BitLinear matrix of a Decoder."""
    d, f = cfg.d_model, cfg.ff_dim
    mlp = [(f, d), (f, d), (d, f)] if cfg.mlp == "swiglu" else [(f, d), (d, f)]
    return ([(d, d)] * 4 + mlp) * cfg.n_layer


def quantized_shapes(config: "RunConfig | LMRunConfig") -> list[tuple[int, int]]:
    """(out_features, in_features) of every quantized matrix in the model."""
    if isinstance(config, LMRunConfig):
        return decoder_shapes(config.model)
    m, d = config.model.width, config.task.d
    if config.model.kind == "two_layer":
        return [(m, d)]
    return [(m, d)] + [(m, m)] * (config.model.depth - 1)


def count_params(config: RunConfig) -> int:
    """Parameters of a regression run's model (see the module docstring)."""
    m, d = config.model.width, config.task.d
    if config.model.kind == "two_layer":
        return m * d + m
    return (d * m + m) + (config.model.depth - 1) * (m * m + m) + (m + 1)


def precision_bits(config: "RunConfig | LMRunConfig") -> float:
    """P of the run's quantized matrices (`QuantConfig.precision_bits`; 32 for full precision). They all
    share the run's one QuantConfig, so the weighted mean is that config's P, taken as is (exactly)."""
    return resolve_config(config.model.quant).precision_bits


def storage_bits_per_weight(config: "RunConfig | LMRunConfig") -> float:
    """Stored bits per weight of the run's quantized matrices (`QuantConfig.storage_bits_per_weight`),
    weighted by size; 32 for full precision."""
    quant = resolve_config(config.model.quant)
    if quant.weight == "fp32":
        return 32.0
    shapes = quantized_shapes(config)
    return sum(quant.storage_bits_per_weight((o, i)) * o * i for o, i in shapes) / sum(o * i for o, i in shapes)


def account(config: "RunConfig | LMRunConfig") -> Accounting:
    """Parameters, precision and storage bits per weight, samples and training FLOPs of the run `config`
    describes."""
    bits = (precision_bits(config), storage_bits_per_weight(config))
    if isinstance(config, LMRunConfig):
        m = config.model
        n = decoder_params(m, non_embedding=False)
        tokens = config.train.steps * config.train.batch_size * config.data.block_size
        n_matmul = n - (0 if m.tie_weights else m.vocab_size * m.d_model)
        return Accounting(n, decoder_params(m, non_embedding=True), *bits, 6.0 * n_matmul * tokens, tokens)
    n = count_params(config)
    batch = config.train.batch_size or config.task.n_train
    samples = config.train.steps * min(batch, config.task.n_train)
    return Accounting(n, n, *bits, 6.0 * n * samples, samples)
