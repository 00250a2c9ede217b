"""LM run directories: save and load a trained decoder with its tokenizer and config, and sample text.

model.safetensors (state_dict, a verified `bitscale.tensorfile` bound to config.json and, for BPE, to
tokenizer.json), config.json (LMRunConfig), result.json (LMResult) and, for BPE, tokenizer.json; the
directory is written as a unit (`bitscale.train.checkpoint.write_run_dir`) and nothing is unpickled.
Tied weights (a head that is the embedding) are stored once, under the first of their names in sorted
order, as `safetensors.torch.save_model` stores them, so directories written before the checks still load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.tokenizers import BPETokenizer, ByteTokenizer
from ..models.decoder import Decoder
from .checkpoint import (
    CONFIG_KEY,
    TOKENIZER_KEY,
    WEIGHTS,
    config_text,
    load_weights,
    require_run_files,
    save_weights,
    sha256_text,
    write_run_dir,
)
from .lm_config import LMRunConfig


def _storage_key(t: torch.Tensor) -> tuple:
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def distinct_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict with each tensor that shares memory with another (tied weights) kept once,
    under the first of its names in sorted order."""
    state = model.state_dict()
    kept: dict[tuple, str] = {}
    for name in sorted(state):
        t = state[name]
        if t.numel():
            kept.setdefault(_storage_key(t), name)
    return {name: t.detach().contiguous().cpu() for name, t in state.items()
            if not t.numel() or kept[_storage_key(t)] == name}


def load_distinct_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load `distinct_state`'s tensors back: a name missing from the file must be tied to one it has.
    RuntimeError (one line) on a missing or unexpected tensor."""
    result = model.load_state_dict(tensors, strict=False)
    state = model.state_dict()
    present = {_storage_key(state[name]) for name in tensors if name in state}
    missing = [name for name in result.missing_keys if _storage_key(state[name]) not in present]
    if missing:
        raise RuntimeError(f"{path}: tensor {missing[0]!r}: missing from the file")
    if result.unexpected_keys:
        raise RuntimeError(f"{path}: tensor {result.unexpected_keys[0]!r}: not a tensor of the model")


def save_lm(directory: "str | Path", model: Decoder, tokenizer, cfg: LMRunConfig, result=None) -> Path:
    """Write model.safetensors, config.json, tokenizer.json (BPE only) and result.json, as one unit."""
    state = distinct_state(model)
    text = config_text(cfg)

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(text)
        bound = {CONFIG_KEY: sha256_text(text)}
        if isinstance(tokenizer, BPETokenizer):
            bound[TOKENIZER_KEY] = sha256_text(tokenizer.save(tmp / "tokenizer.json").read_bytes())
        save_weights(tmp / WEIGHTS, state, "bitscale-lm", bound)
        if result is not None:
            (tmp / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")

    return write_run_dir(directory, write)


def load_lm(directory: "str | Path") -> "tuple[Decoder, ByteTokenizer | BPETokenizer, LMRunConfig]":
    """(model in eval mode on CPU, tokenizer, config) of a saved run, its weights verified (and bound to
    its config.json and tokenizer.json) before the model is built; safetensors only, no pickle."""
    directory = Path(directory)
    require_run_files(directory)
    text = (directory / "config.json").read_text()
    cfg = LMRunConfig.model_validate_json(text)  # first: a folder that is not a run says so, unwarned
    bound = {CONFIG_KEY: ("config.json", text)}
    tokenizer_file = directory / "tokenizer.json"
    if tokenizer_file.is_file():
        bound[TOKENIZER_KEY] = ("tokenizer.json", tokenizer_file.read_bytes())
    tensors = load_weights(directory, bound)
    if cfg.data.tokenizer == "byte":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = BPETokenizer.load(tokenizer_file)
    model = Decoder(cfg.model)
    load_distinct_state(model, tensors, directory / WEIGHTS)
    model.eval()
    return model, tokenizer, cfg


def generate_text(
    model: Decoder,
    tokenizer,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: "int | None" = 50,
    seed: int = 0,
) -> str:
    """The prompt followed by `max_new_tokens` sampled tokens, decoded. An empty prompt starts from "\\n"."""
    ids = tokenizer.encode(prompt or "\n")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen)
    text = tokenizer.decode(out[0].tolist())
    return text if prompt else text[1:]
