"""LM run directories: save and load a trained decoder with its tokenizer and config, and sample text.

model.safetensors (state_dict), config.json (LMRunConfig), result.json (LMResult) and, for BPE,
tokenizer.json; every write is atomic and nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import atomic_write, atomic_write_json
from ..data.tokenizers import BPETokenizer, ByteTokenizer
from ..models.decoder import Decoder
from .checkpoint import require_run_files
from .lm_config import LMRunConfig


def save_lm(directory: "str | Path", model: Decoder, tokenizer, cfg: LMRunConfig, result=None) -> Path:
    """Write model.safetensors, config.json, tokenizer.json (BPE only) and result.json atomically."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu") if next(model.parameters()).device.type != "cpu" else model
    atomic_write(directory / "model.safetensors", lambda tmp: save_model(model, tmp, metadata={"format": "bitscale-lm"}))
    if isinstance(tokenizer, BPETokenizer):
        tokenizer.save(directory / "tokenizer.json")
    atomic_write_json(directory / "config.json", cfg.model_dump(mode="json"))
    if result is not None:
        atomic_write_json(directory / "result.json", result.to_dict())
    return directory


def load_lm(directory: "str | Path") -> "tuple[Decoder, ByteTokenizer | BPETokenizer, LMRunConfig]":
    """(model in eval mode on CPU, tokenizer, config) of a saved run; safetensors only, no pickle."""
    from safetensors.torch import load_model

    directory = Path(directory)
    require_run_files(directory)
    cfg = LMRunConfig.model_validate_json((directory / "config.json").read_text())
    if cfg.data.tokenizer == "byte":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = BPETokenizer.load(directory / "tokenizer.json")
    model = Decoder(cfg.model)
    load_model(model, directory / "model.safetensors", strict=True)
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
