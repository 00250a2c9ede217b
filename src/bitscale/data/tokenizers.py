"""Tokenizers for the language-model data: a built-in byte-level one (no dependencies, vocabulary 256)
and byte-level BPE trained locally with the Hugging Face `tokenizers` library (optional extra `hf`).

Both map str -> list[int] and back. Token ids fit in uint16 (vocabulary <= 65536), the storage type
of `bitscale.data.text`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from bitscale.atomic import atomic_write

MAX_VOCAB = 65536  # ids are stored as uint16
_BPE_HINT = "BPE needs tokenizers: pip install 'bitscale[hf]'"


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, every str round-trips exactly."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """Like encode, as a uint16 numpy array (fast for whole corpora)."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def decode(self, ids: Iterable[int]) -> str:
        # A window cut from the middle of a multi-byte character decodes to U+FFFD, never raises.
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def _require_tokenizers():
    try:
        import tokenizers  # the HF library (absolute import: not this module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_BPE_HINT) from e
    return tokenizers


def _chunks(text: str, lines_per_chunk: int = 2000) -> Iterator[str]:
    lines = text.splitlines(keepends=True)
    for i in range(0, len(lines), lines_per_chunk):
        yield "".join(lines[i : i + lines_per_chunk])


class BPETokenizer:
    """Byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer and decoder, no special tokens), trained
    locally on a text with `tokenizers`; nothing is downloaded. Training is deterministic: the same
    text and vocab_size give the same vocabulary and merges (BPE training has no random choices,
    so there is no seed)."""

    def __init__(self, tokenizer) -> None:
        self._tok = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int, *, min_frequency: int = 2) -> "BPETokenizer":
        """Train on `text` up to `vocab_size` tokens (256 byte tokens + merges). A small text may
        stop short: `vocab_size` of the result is the size actually reached."""
        tk = _require_tokenizers()
        vocab_size = int(vocab_size)
        if not 256 <= vocab_size <= MAX_VOCAB:
            raise ValueError(f"BPE vocab_size must be in [256, {MAX_VOCAB}] (uint16 ids), got {vocab_size}")
        alphabet = tk.pre_tokenizers.ByteLevel.alphabet()
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=alphabet,
            special_tokens=[],
            show_progress=False,
        )
        tok.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: "str | Path") -> "BPETokenizer":
        """Load a tokenizer.json written by `save` (or any byte-level BPE tokenizer.json)."""
        tk = _require_tokenizers()
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no tokenizer file at {path}")
        return cls(tk.Tokenizer.from_file(str(path)))

    def save(self, path: "str | Path") -> Path:
        """Write tokenizer.json atomically; `path` may be a file or a directory."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        atomic_write(path, lambda tmp: self._tok.save(tmp))
        return path

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    @property
    def name(self) -> str:
        return f"bpe:{self.vocab_size}"

    def get_vocab(self) -> dict[str, int]:
        return dict(self._tok.get_vocab())

    def to_json(self) -> str:
        return self._tok.to_str()

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.uint16)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def get_tokenizer(spec: str, text: "str | None" = None) -> "ByteTokenizer | BPETokenizer":
    """`"byte"` -> ByteTokenizer; `"bpe:<vocab>"` -> BPE trained on `text` (required);
    `"bpe:<path to tokenizer.json>"` -> a saved BPE tokenizer."""
    spec = spec.strip()
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("bpe:"):
        arg = spec[4:]
        if arg.isdigit():
            if text is None:
                raise ValueError(f"tokenizer {spec!r} is trained on a text: pass text=")
            return BPETokenizer.train(text, int(arg))
        if arg and Path(arg).exists():
            return BPETokenizer.load(arg)
        raise ValueError(f"bad BPE tokenizer spec {spec!r}: use 'bpe:<vocab size>' or 'bpe:<tokenizer.json path>'")
    raise ValueError(f"unknown tokenizer {spec!r}: use 'byte' or 'bpe:<vocab size>'")


__all__ = ["MAX_VOCAB", "BPETokenizer", "ByteTokenizer", "get_tokenizer"]
