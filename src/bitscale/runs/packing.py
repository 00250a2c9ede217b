"""Run directories and packed files: which model a file describes, rebuilt without its weights.

`bitscale.nn.load_packed_model(path, model)` fills a skeleton it is handed; this module builds that
skeleton from a packed file's `model` metadata (a Decoder, an LM run or a regression run), on the meta
device, so that no full-precision weight of a packed layer is ever allocated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from ..data.tokenizers import BPETokenizer, ByteTokenizer
from ..kernels.packfile import PackedFileError, file_metadata, load_packed as read_packed_file
from ..models.decoder import Decoder, DecoderConfig
from ..nn.packed import load_packed_model
from ..train.checkpoint import load_model
from ..train.lm_config import LMRunConfig
from ..train.lm_files import load_lm
from ..train.run import RunConfig, build_model

# The `kind` values of a packed file's model metadata, and what each rebuilds.
SKELETON_KINDS = ("decoder", "lm", "regression")


def build_skeleton(spec: dict[str, Any]) -> nn.Module:
    """The model described by a packed file's `model` metadata, built on the meta device."""
    kind = spec.get("kind")
    if kind == "decoder":
        return Decoder(DecoderConfig.model_validate(spec["config"]), device="meta")
    if kind == "lm":
        return Decoder(LMRunConfig.model_validate(spec["run_config"]).model, device="meta")
    if kind == "regression":
        cfg = RunConfig.model_validate(spec["run_config"])
        with torch.device("meta"):
            return build_model(cfg.model, cfg.task.d, cfg.train.seed)
    raise ValueError(f"model kind {kind!r} unknown (known: {', '.join(SKELETON_KINDS)}); "
                     "pass a model skeleton to bitscale.nn.load_packed_model")


def load_packed(path, *, backend: str = "auto") -> nn.Module:
    """A packed file's model, rebuilt from its metadata (`build_skeleton`) and filled from its tensors."""
    pf = read_packed_file(path)
    try:
        skeleton = build_skeleton(pf.metadata)
    except (ValueError, KeyError, TypeError) as e:
        raise PackedFileError(f"{path}: cannot rebuild the model: {str(e).splitlines()[0]}") from None
    return load_packed_model(path, skeleton, backend=backend)


def load_run_dir(directory) -> "tuple[nn.Module, dict[str, Any]]":
    """(model, spec) of an LM run directory (`bitscale lm --out`) or a regression run directory
    (`bitscale train --out`); `spec` is the packed file's `model` metadata that rebuilds it (the run
    config, and for a BPE LM the tokenizer JSON). ValueError (one line) when it is neither."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such directory")
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise ValueError(f"{directory}: missing {name} (not a run directory of `bitscale lm --out` or `bitscale train --out`)")
    try:
        raw = json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{directory}/config.json: not JSON ({e})") from None
    try:
        if isinstance(raw, dict) and raw.get("kind") == "lm":
            model, tokenizer, cfg = load_lm(directory)
            spec = {"kind": "lm", "run_config": cfg.model_dump(mode="json")}
            if isinstance(tokenizer, BPETokenizer):
                spec["tokenizer"] = tokenizer.to_json()
            return model, spec
        RunConfig.model_validate(raw)
        model, cfg = load_model(directory)
        return model.eval(), {"kind": "regression", "run_config": cfg.model_dump(mode="json")}
    except ValidationError as e:
        raise ValueError(f"{directory}/config.json: not a run config ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:  # state_dict that does not fit the config
        raise ValueError(f"{directory}/model.safetensors: does not match config.json ({str(e).splitlines()[0]})") from None


def load_packed_lm(path, *, backend: str = "auto"):
    """(model, tokenizer, LMRunConfig) of a packed LM file written by `bitscale pack` from an LM run."""
    spec = file_metadata(path)["model"]
    if spec.get("kind") != "lm":
        raise PackedFileError(f"{path}: not a packed LM (model kind {spec.get('kind')!r})")
    cfg = LMRunConfig.model_validate(spec["run_config"])
    model = load_packed(path, backend=backend)
    if cfg.data.tokenizer == "byte":
        tokenizer = ByteTokenizer()
    else:
        import tokenizers

        tokenizer = BPETokenizer(tokenizers.Tokenizer.from_str(spec["tokenizer"]))
    return model, tokenizer, cfg
