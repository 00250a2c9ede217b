"""The kinds of run, one record each: the only list of them in bitscale.

    regression   `bitscale.train.run.RunConfig`: a TwoLayerNet / MLP on a synthetic regression task
    lm           `bitscale.train.lm_config.LMRunConfig`: a Decoder language model on a text corpus
    classification  `bitscale.train.classification.ClassificationRunConfig`: a 1-D CNN or an MLP on MNIST-1D

An LM config carries `kind = "lm"`; a config without a `kind` key is a regression run, so stores and
sweep files written before LM sweeps existed read unchanged.

A `RunKind` says how to build a run's model without its weights (`skeleton`, on the meta device: what
accounting and packed files rebuild), how many samples a run sees, how to train it to a `RunOutcome`
(what `bitscale.sweep.executors.execute` calls), and how to save and load its run directory (what
`bitscale pack` reads). Adding a kind is one module with these functions and one record in `KINDS`
(see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from torch import nn

from ..limits import check_memory
from ..models.decoder import Decoder
from ..train import lm as lm_training  # train_lm looked up at call time (tests patch it)
from ..train.lm_config import LMRunConfig
from ..train.run import RunConfig, build_model, run
from ..train.checkpoint import load_model, load_run_model, save_run
from ..train.classification import ClassificationRunConfig, build_classifier, run_classification
from ..train.lm_files import load_lm, save_lm
from .outcome import RunOutcome, outcome_from_lm_result, outcome_from_result

AnyRunConfig = Union[RunConfig, LMRunConfig, ClassificationRunConfig]


@dataclass(frozen=True)
class RunKind:
    """Everything bitscale needs to know about one kind of run (see the module docstring)."""

    name: str
    config_class: type
    skeleton: Callable[[Any], nn.Module]  # config -> the model, built on the meta device
    samples_per_step: Callable[[Any], int]  # config -> samples one training step sees (LM: tokens)
    default_size: str  # the config column that names a model size (compare, report)
    # (run_id, config, checkpoint file, checkpoint_every, compile, started) -> RunOutcome: train the run,
    # resuming from the checkpoint when it exists
    train: Callable[..., RunOutcome]
    aliases: dict[str, str]  # sweep files' short axis names -> dotted config keys
    example_keys: str  # dotted keys quoted in an unknown-key error
    # (stored config dict, samples seen) -> (model, width, data): the columns of `bitscale runs list`
    summary: Callable[[dict, Any], tuple[str, str, str]]
    test_loss_note: str  # what the store's "test" loss is, when not a test loss ("" for a test split)
    load_dir: Callable[[Path], "LoadedRun"]  # a run directory -> its model (eval mode, CPU) and config
    # (directory, model, config, result, tokenizer) -> the directory: what load_dir reads back
    save_dir: Callable[..., Path]
    # config -> bytes of data and activations training holds at its peak, parameters aside (`memory_bytes`)
    activation_bytes: Callable[[Any], int] = lambda config: 0
    compiles: bool = False  # whether `compile = true` (torch.compile of the model's blocks) applies
    # whether samples are tokens of a fixed text budget, so that tokens per parameter (D/N) says
    # whether a model is undertrained (the report's check on fixed-D sweeps)
    samples_are_tokens: bool = False

    def samples_seen(self, config: Any) -> int:
        """Samples seen in training (LM: tokens): steps x samples per step."""
        return config.train.steps * self.samples_per_step(config)

    def memory_bytes(self, config: Any, n_params: int | None = None) -> int:
        """An estimate of the bytes training `config` holds at its peak: its parameters x 24 B (fp32 latent
        weight, gradient, two optimizer moments, the quantized copy, a spare) plus `activation_bytes`.
        `n_params`: the parameter count when the caller has it (the sweep's accounting), else counted
        on the skeleton."""
        if n_params is None:
            n_params = sum(p.numel() for p in {id(p): p for p in self.skeleton(config).parameters()}.values())
        return _BYTES_PER_PARAM * n_params + self.activation_bytes(config)

    def check_fits(self, config: Any, what: str, available: int | None = None, n_params: int | None = None) -> None:
        """MemoryLimitError (one line, with the estimate) when training `config` would need more memory
        than is available (`bitscale.limits.check_memory`); called before anything is allocated."""
        check_memory(self.memory_bytes(config, n_params), what, available)


@dataclass(frozen=True)
class LoadedRun:
    """A run directory read back: the trained model, its validated config, and its tokenizer (LM runs)."""

    model: nn.Module
    config: Any
    tokenizer: Any = None


def _load_regression(directory: Path) -> LoadedRun:
    model, config = load_model(directory)
    return LoadedRun(model.eval(), config)


def _save_regression(directory, model, config, result, tokenizer=None) -> Path:
    return save_run(directory, model, config, result)


def _load_lm(directory: Path) -> LoadedRun:
    model, tokenizer, config = load_lm(directory)
    return LoadedRun(model, config, tokenizer)


def _save_lm(directory, model, config, result, tokenizer=None) -> Path:
    return save_lm(directory, model, tokenizer, config, result)


def _load_classification(directory: Path) -> LoadedRun:
    model, config = load_run_model(directory, ClassificationRunConfig, _build_classifier)
    return LoadedRun(model.eval(), config)


def _build_classifier(config: ClassificationRunConfig, device=None) -> nn.Module:
    return build_classifier(config.model, config.data.length, config.train.seed, device=device)


def _regression_skeleton(config: RunConfig) -> nn.Module:
    with torch.device("meta"):
        return build_model(config.model, config.task.d, config.train.seed)


# Bytes per parameter while training: the fp32 latent weight, its gradient, two optimizer moments, the
# quantized copy the forward pass uses and a spare (grad-clip and update temporaries).
_BYTES_PER_PARAM = 6 * 4


def _regression_activations(config: RunConfig) -> int:
    """The data (n_train + n_test rows of d inputs and a target) and the activations of the largest forward
    pass (evaluation runs on the whole train or test set): about 4 fp32 tensors of rows x width per hidden
    layer (pre-activation, activation, its quantized form, its gradient)."""
    t, m = config.task, config.model
    rows = max(t.n_train, t.n_test)
    return 4 * (t.n_train + t.n_test) * (t.d + 1) + 4 * 4 * rows * (m.width * m.depth + t.d)


def _classification_activations(config: ClassificationRunConfig) -> int:
    """The data (pool examples of `length` points) and the activations of the largest forward pass (an
    evaluation over the larger split): about 4 fp32 tensors per layer of rows x width x positions."""
    d, m = config.data, config.model
    rows = max(d.n_train, d.n_test)
    per_row = m.width * m.depth * (d.length if m.kind == "cnn1d" else 1) + d.length
    return 4 * d.pool * (d.length + 1) + 4 * 4 * rows * per_row


def _lm_activations(config: LMRunConfig) -> int:
    """The activations a step keeps for its backward pass: per token and layer about 16 fp32 vectors of
    d_model and 3 of d_ff (norms, projections, attention, the MLP), and the logits with their softmax and
    gradient (3 x vocab)."""
    m = config.model
    tokens = config.train.batch_size * config.data.block_size
    return 4 * tokens * (m.n_layer * (16 * m.d_model + 3 * m.ff_dim) + 3 * m.vocab_size)


def _regression_samples(config: RunConfig) -> int:
    batch = config.train.batch_size or config.task.n_train  # full batch when None
    return min(batch, config.task.n_train)


def _classification_samples(config: ClassificationRunConfig) -> int:
    return min(config.train.batch_size or config.data.n_train, config.data.n_train)


def _lm_samples(config: LMRunConfig) -> int:
    return config.train.batch_size * config.data.block_size


def _train_regression(run_id: str, config: RunConfig, checkpoint, every, compile: bool, started: float) -> RunOutcome:
    _, _, result = run(config, checkpoint=checkpoint, checkpoint_every=every)  # compile: LM runs only
    return outcome_from_result(run_id, result, started)


def _train_classification(run_id: str, config: ClassificationRunConfig, checkpoint, every, compile: bool,
                          started: float) -> RunOutcome:
    _, _, result = run_classification(config, checkpoint=checkpoint, checkpoint_every=every)
    return outcome_from_result(run_id, result, started)


def _train_lm(run_id: str, config: LMRunConfig, checkpoint, every, compile: bool, started: float) -> RunOutcome:
    result = lm_training.train_lm(config, checkpoint=checkpoint, checkpoint_every=every, compile=compile)
    return outcome_from_lm_result(run_id, result, started)


REGRESSION_ALIASES = {
    "width": "model.width",
    "depth": "model.depth",
    "quant": "model.quant",
    "kappa": "model.kappa",
    "activation": "model.activation",
    "d": "task.d",
    "n_train": "task.n_train",
    "noise": "task.noise_std",
    "function": "task.function",
    "steps": "train.steps",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
}
CLASSIFICATION_ALIASES = {
    "width": "model.width",
    "depth": "model.depth",
    "quant": "model.quant",
    "model": "model.kind",
    "kernel_size": "model.kernel_size",
    "n_train": "data.n_train",
    "label_noise": "data.label_noise",
    "steps": "train.steps",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
}
LM_ALIASES = {
    "quant": "model.quant",
    "n_layer": "model.n_layer",
    "n_head": "model.n_head",
    "d_model": "model.d_model",
    "d_ff": "model.d_ff",
    "mlp": "model.mlp",
    "vocab_size": "model.vocab_size",
    "corpus": "data.corpus",
    "tokenizer": "data.tokenizer",
    "steps": "train.steps",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
}


def _regression_summary(config: dict, samples: Any) -> tuple[str, str, str]:
    return config["model"].get("kind", "two_layer"), str(config["model"]["width"]), str(config["task"]["n_train"])


def _classification_summary(config: dict, samples: Any) -> tuple[str, str, str]:
    model, data = config.get("model", {}), config.get("data", {})
    return model.get("kind", "cnn1d"), str(model.get("width", 32)), str(data.get("n_train", 4000))


def _lm_summary(config: dict, samples: Any) -> tuple[str, str, str]:
    return "decoder", f"{config['model']['d_model']}x{config['model']['n_layer']}", str(samples)


KINDS: dict[str, RunKind] = {
    "regression": RunKind(
        "regression", RunConfig, skeleton=_regression_skeleton, samples_per_step=_regression_samples,
        default_size="model.width", train=_train_regression, aliases=REGRESSION_ALIASES,
        example_keys="model.width, task.n_train", summary=_regression_summary, test_loss_note="",
        load_dir=_load_regression, save_dir=_save_regression, activation_bytes=_regression_activations,
    ),
    "lm": RunKind(
        "lm", LMRunConfig, skeleton=lambda c: Decoder(c.model, device="meta"), samples_per_step=_lm_samples,
        default_size="model.d_model", train=_train_lm, aliases=LM_ALIASES,
        example_keys="model.d_model, data.corpus", summary=_lm_summary,
        test_loss_note="an LM run's test loss is its validation loss",
        load_dir=_load_lm, save_dir=_save_lm, activation_bytes=_lm_activations, compiles=True, samples_are_tokens=True,
    ),
    "classification": RunKind(
        "classification", ClassificationRunConfig, skeleton=lambda c: _build_classifier(c, device="meta"),
        samples_per_step=_classification_samples, default_size="model.width", train=_train_classification,
        aliases=CLASSIFICATION_ALIASES, example_keys="model.width, data.label_noise", summary=_classification_summary,
        test_loss_note="", load_dir=_load_classification, save_dir=_save_regression,
        activation_bytes=_classification_activations,
    ),
}


def kind_of(data: Mapping[str, Any]) -> str:
    """The kind a stored config dict names: its `kind` key when that is a known kind, 'regression'
    when it has none. An unknown kind is a one-line ValueError naming the kinds that exist."""
    kind = data.get("kind")
    if kind is None:
        return "regression"
    if kind not in KINDS:
        raise ValueError(f"kind: unknown kind of run {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def config_class(kind: str) -> type:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind].config_class


def kind_for(config: AnyRunConfig) -> RunKind:
    """The record of a validated run config."""
    for kind in KINDS.values():
        if isinstance(config, kind.config_class):
            return kind
    raise ValueError(f"not a run config of a known kind ({', '.join(KINDS)}): {type(config).__name__}")


def parse_run_config(data: Mapping[str, Any]) -> AnyRunConfig:
    """Validate a stored or expanded config dict as the kind it names."""
    return config_class(kind_of(data)).model_validate(data)
