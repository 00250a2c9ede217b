"""What a run costs, counted on the model its config builds (on the meta device: no weight is allocated).

The model comes from the run's kind (`bitscale.runs.kinds`: TwoLayerNet / MLP for a regression run, a
Decoder for an LM run), so a change to a model is reflected here with nothing to mirror.

- parameters N: every parameter of the model, each shared one once, trainable or not. Non-embedding
  parameters (Kaplan et al. 2020) are the model's own `num_params(non_embedding=True)` when it has one
  (a Decoder leaves out the token embedding and an untied head), else N: the regression models have no
  embeddings.
- samples seen S: steps * B, with B = batch_size, or n_train for full-batch training (at most n_train);
  for an LM, tokens = steps * batch_size * block_size.
- training FLOPs C = 6 * N_matmul * S: the dense-network estimate of Kaplan et al. 2020 (2 FLOPs per
  weight per sample forward, 4 backward), where N_matmul is N without the embedding tables that are only
  looked up (a table tied to an output head is multiplied, so it counts). A model whose weights are
  used more than once per sample (a CNN, at every position) says so with `macs_per_sample()`, and
  C = 6 * MACs * S. It ignores the quantizers'
  elementwise work, evaluation passes and attention's context-length term (2 L T d per token forward,
  left out as Kaplan and Hoffmann do), and counts frozen parameters (TwoLayerNet's a) as if trained.
- two bits-per-weight figures, each weighted over the model's quantized BitLinear matrices and BitConv
  kernels (a kernel as its (out, in / groups * kernel) matrix); 32 for full precision. Other parameters (biases, full-precision heads, embeddings, a) are in neither.
  - precision bits P (`QuantConfig.precision_bits`): information bits per weight, log2 of the code
    levels: sign / binary 1, ternary log2(3) = 1.585, int-k k. The scaling laws' precision variable.
  - storage bits per weight (`QuantConfig.storage_bits_per_weight`): what bitscale stores, from the
    packed format (`bitscale.kernels.formats.bits_per_weight`, row padding and float32 scales
    included: ternary-b3 about 1.6); the figure `summary(model)` and `bitscale pack` report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from ..models.decoder import Decoder, DecoderConfig
from ..nn import BitConv1d, BitConv2d, BitLinear
from ..quant import resolve_config
from ..runs.kinds import AnyRunConfig, kind_for


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


def _parameters(model: nn.Module) -> list[nn.Parameter]:
    return list({id(p): p for p in model.parameters()}.values())


def _quantized_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(rows, columns) of every quantized weight (a convolution's kernel flattened past its first dim)."""
    layers = {id(m.weight): m for m in model.modules()
              if isinstance(m, (BitLinear, BitConv1d, BitConv2d)) and m.config.weight != "fp32"}.values()
    return [(m.weight.shape[0], m.weight[0].numel()) for m in layers]


def decoder_shapes(cfg: DecoderConfig) -> list[tuple[int, int]]:
    """(out_features, in_features) of every BitLinear matrix of a Decoder."""
    return _quantized_shapes(Decoder(cfg, device="meta"))


def _storage_bits(config: AnyRunConfig, shapes: list[tuple[int, int]]) -> float:
    """Stored bits per weight of the quantized matrices (`QuantConfig.storage_bits_per_weight`), weighted
    by size; 32 for full precision."""
    quant = resolve_config(config.model.quant)
    if quant.weight == "fp32" or not shapes:
        return 32.0
    return sum(quant.storage_bits_per_weight((o, i)) * o * i for o, i in shapes) / sum(o * i for o, i in shapes)


def account(config: AnyRunConfig) -> Accounting:
    """Parameters, precision and storage bits per weight, samples and training FLOPs of the run `config`
    describes, counted on its model built on the meta device."""
    kind = kind_for(config)
    model = kind.skeleton(config)
    params = _parameters(model)
    n = sum(p.numel() for p in params)
    own_count = getattr(model, "num_params", None)
    n_non_embedding = own_count(non_embedding=True) if callable(own_count) else n
    multiplied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    lookup_only = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} - multiplied
    n_matmul = n - sum(p.numel() for p in params if id(p) in lookup_only)
    samples = kind.samples_seen(config)
    macs = getattr(model, "macs_per_sample", None)
    flops_per_sample = 6.0 * (macs() if callable(macs) else n_matmul)
    # P of the quantized matrices: they all share the run's one QuantConfig, so it is that config's P.
    bits = (resolve_config(config.model.quant).precision_bits, _storage_bits(config, _quantized_shapes(model)))
    return Accounting(n, n_non_embedding, *bits, flops_per_sample * samples, samples)
