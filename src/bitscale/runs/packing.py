"""Run directories and packed files: which model a file describes, rebuilt without its weights.

`bitscale.nn.load_packed_model(path, model)` fills a skeleton it is handed; this module builds that
skeleton from a packed file's `model` metadata (a Decoder, an LM run or a regression run), on the meta
device, so that no full-precision weight of a packed layer is ever allocated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from ..data.tokenizers import BPETokenizer, ByteTokenizer
from ..kernels.packfile import PackedFileError, file_metadata, load_packed as read_packed_file
from ..models.decoder import Decoder, DecoderConfig
from ..nn.packed import load_packed_model
from ..train.checkpoint import require_run_files
from ..train.lm_config import LMRunConfig
from .kinds import KINDS, kind_of

# A packed file's `model` metadata names what rebuilds it: "decoder" (a bare Decoder, its DecoderConfig)
# or a kind of run (`bitscale.runs.kinds.KINDS`, its run config).
BARE_DECODER = "decoder"


def build_skeleton(spec: dict[str, Any]) -> nn.Module:
    """The model described by a packed file's `model` metadata, built on the meta device."""
    kind = spec.get("kind")
    if kind == BARE_DECODER:
        return Decoder(DecoderConfig.model_validate(spec["config"]), device="meta")
    if kind in KINDS:
        return KINDS[kind].skeleton(KINDS[kind].config_class.model_validate(spec["run_config"]))
    raise ValueError(f"model kind {kind!r} unknown (known: {', '.join((BARE_DECODER, *KINDS))}); "
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
    """(model, spec) of a run directory of any kind (`bitscale lm --out`, `bitscale train --out`);
    `spec` is the packed file's `model` metadata that rebuilds it (the kind, its run config, and for a
    BPE LM the tokenizer JSON). ValueError (one line) when it is not a run directory."""
    directory = Path(directory)
    require_run_files(directory)
    try:
        raw = json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{directory}/config.json: not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{directory}/config.json: expected a JSON object, got {type(raw).__name__}")
    try:
        kind = KINDS[kind_of(raw)]
    except ValueError as e:
        raise ValueError(f"{directory}/config.json: {e}") from None
    try:
        loaded = kind.load_dir(directory)
    except ValidationError as e:
        raise ValueError(f"{directory}/config.json: not a run config ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:  # state_dict that does not fit the config
        raise ValueError(f"{directory}/model.safetensors: does not match config.json ({str(e).splitlines()[0]})") from None
    spec = {"kind": kind.name, "run_config": loaded.config.model_dump(mode="json")}
    if isinstance(loaded.tokenizer, BPETokenizer):
        spec["tokenizer"] = loaded.tokenizer.to_json()
    return loaded.model, spec


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
