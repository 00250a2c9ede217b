"""Text data for language models: the corpora that ship with the package, any user UTF-8 text file,
token streams held as uint16 arrays (or memory-mapped nanoGPT-style `.bin` files for large corpora),
a contiguous train/validation split, and random (x, y) windows drawn by a seeded torch.Generator.

    text = load_text("tinyshakespeare")
    stream = TokenStream.from_text(text, "byte")          # or "bpe:4096", or a tokenizer object
    train, val = stream.split(0.1)
    x, y = next(train.batches(32, 128, torch.Generator().manual_seed(0)))

`.bin` files follow nanoGPT: raw little-endian uint16 token ids, no header. `write_bin` may add a
`<name>.json` sidecar with vocab_size and the tokenizer's name, which `TokenStream.from_bin` reads.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from bitscale.atomic import atomic_write, atomic_write_json

# Each corpus is one file, or several files read in order as one text.
CORPORA: dict[str, tuple[str, ...]] = {
    "tinyshakespeare": ("tinyshakespeare.txt",),  # public domain (char-rnn collection, A. Karpathy)
    "wikitext2-valid": ("wikitext2-valid.txt",),  # CC BY-SA 3.0, Merity et al. 2016 / Wikipedia contributors
    "wikitext2-test": ("wikitext2-test.txt",),  # CC BY-SA 3.0, see corpora/LICENSE.md
    # Both shipped WikiText-2 splits, valid then test (2.4 MB): the least repetitive text here, so the
    # validation tail (the end of the test split) is unseen articles.
    "wikitext2": ("wikitext2-valid.txt", "wikitext2-test.txt"),
}

_DTYPE = np.dtype("<u2")  # little-endian uint16, the nanoGPT convention
_MAX_ID = 65535


def corpus_paths(name: str) -> list[Path]:
    """Paths of a shipped corpus's files in `bitscale/data/corpora/`, in reading order."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))}")
    folder = resources.files("bitscale.data").joinpath("corpora")
    return [Path(str(folder.joinpath(file))) for file in CORPORA[name]]


def load_text(name_or_path: "str | Path") -> str:
    """A shipped corpus by name (see CORPORA) or any UTF-8 text file by path."""
    if isinstance(name_or_path, str) and name_or_path in CORPORA:
        paths = corpus_paths(name_or_path)
        for path in paths:
            if not path.is_file():
                raise ValueError(f"corpus {name_or_path!r} is missing from the installed package ({path.name})")
        return "".join(_read_utf8(path) for path in paths)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"{str(name_or_path)!r} is neither a known corpus ({', '.join(sorted(CORPORA))}) nor an existing file"
        )
    return _read_utf8(path)


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (bad byte at offset {e.start})") from None


def _as_uint16(tokens: "Sequence[int] | np.ndarray") -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
    if arr.dtype == np.uint16:
        return arr
    if arr.size == 0:
        return arr.astype(np.uint16)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > _MAX_ID:
        raise ValueError(
            f"token ids must be in [0, {_MAX_ID}] to be stored as uint16, got range [{lo}, {hi}]; "
            "use a vocabulary of at most 65536"
        )
    return arr.astype(np.uint16)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def write_bin(
    tokens: "Sequence[int] | np.ndarray",
    path: "str | Path",
    *,
    vocab_size: "int | None" = None,
    tokenizer: "str | None" = None,
) -> Path:
    """Write token ids as raw little-endian uint16 (nanoGPT `.bin`), atomically. Ids outside
    [0, 65535] are refused. With vocab_size or tokenizer, also writes a `<name>.json` sidecar."""
    path = Path(path)
    arr = _as_uint16(tokens).astype(_DTYPE, copy=False)
    atomic_write(path, lambda tmp: arr.tofile(tmp))
    if vocab_size is not None or tokenizer is not None:
        meta = {"dtype": "uint16", "n_tokens": int(arr.size)}
        if vocab_size is not None:
            meta["vocab_size"] = int(vocab_size)
        if tokenizer is not None:
            meta["tokenizer"] = str(tokenizer)
        atomic_write_json(_sidecar(path), meta)
    return path


def load_bin(path: "str | Path") -> np.memmap:
    """Memory-map a `.bin` file of uint16 token ids (read-only)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no token file at {path}")
    size = path.stat().st_size
    if size == 0 or size % 2:
        raise ValueError(f"{path} is not a uint16 token file ({size} bytes)")
    return np.memmap(path, dtype=_DTYPE, mode="r")


class TokenStream:
    """A 1-D stream of token ids (numpy uint16, or np.memmap for `.bin` files) and its vocab_size."""

    def __init__(self, tokens: "Sequence[int] | np.ndarray", vocab_size: int, *, tokenizer: "str | None" = None):
        self.tokens = tokens if isinstance(tokens, np.memmap) else _as_uint16(tokens)
        if self.tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {self.tokens.shape}")
        self.vocab_size = int(vocab_size)
        if not 1 <= self.vocab_size <= _MAX_ID + 1:
            raise ValueError(f"vocab_size must be in [1, 65536], got {self.vocab_size}")
        self.tokenizer = tokenizer

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, tokenizer="byte") -> "TokenStream":
        """Tokenize `text`. `tokenizer` is a tokenizer object or a spec for get_tokenizer
        ("byte", "bpe:<vocab>" — trained on this text)."""
        if isinstance(tokenizer, str):
            from bitscale.data.tokenizers import get_tokenizer

            tokenizer = get_tokenizer(tokenizer, text=text)
        if hasattr(tokenizer, "encode_array"):
            ids = tokenizer.encode_array(text)
        else:
            ids = np.asarray(tokenizer.encode(text))
        return cls(ids, tokenizer.vocab_size, tokenizer=getattr(tokenizer, "name", None))

    @classmethod
    def from_bin(cls, path: "str | Path", vocab_size: "int | None" = None) -> "TokenStream":
        """Memory-map a `.bin` file. vocab_size: given, else from the `.json` sidecar, else max id + 1."""
        path = Path(path)
        tokens = load_bin(path)
        name = None
        meta_path = _sidecar(path)
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            name = meta.get("tokenizer")
            if vocab_size is None:
                vocab_size = meta.get("vocab_size")
        if vocab_size is None:
            vocab_size = int(tokens.max()) + 1
        return cls(tokens, vocab_size, tokenizer=name)

    def to_bin(self, path: "str | Path") -> Path:
        return write_bin(self.tokens, path, vocab_size=self.vocab_size, tokenizer=self.tokenizer)

    # -- access --------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        kind = "memmap" if isinstance(self.tokens, np.memmap) else "array"
        return f"TokenStream(n_tokens={self.n_tokens}, vocab_size={self.vocab_size}, {kind})"

    def split(self, val_fraction: float = 0.1) -> "tuple[TokenStream, TokenStream]":
        """Contiguous split: train = the first (1 - f) of the stream, val = the last f. The parts
        share no token positions, and windows drawn from one never reach into the other."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if self.n_tokens < 2:
            raise ValueError(f"cannot split {self.n_tokens} tokens")
        n_val = int(round(self.n_tokens * val_fraction))
        n_val = min(max(n_val, 1), self.n_tokens - 1)
        cut = self.n_tokens - n_val
        return (
            TokenStream(self.tokens[:cut], self.vocab_size, tokenizer=self.tokenizer),
            TokenStream(self.tokens[cut:], self.vocab_size, tokenizer=self.tokenizer),
        )

    def sample_positions(self, batch_size: int, block_size: int, generator: torch.Generator) -> torch.Tensor:
        """Window starts, uniform over [0, n_tokens - block_size - 1]."""
        n_starts = self.n_tokens - block_size
        if block_size < 1 or n_starts < 1:
            raise ValueError(
                f"block_size {block_size} needs at least {block_size + 1} tokens; this stream has {self.n_tokens}"
            )
        return torch.randint(0, n_starts, (batch_size,), generator=generator)

    def get_batch(self, starts: "torch.Tensor | Sequence[int]", block_size: int) -> "tuple[torch.Tensor, torch.Tensor]":
        """x[b] = tokens[s : s + T], y[b] = tokens[s + 1 : s + T + 1], int64 tensors (B, T)."""
        rows = np.stack([np.asarray(self.tokens[int(s) : int(s) + block_size + 1]) for s in starts])
        rows = torch.from_numpy(rows.astype(np.int64))
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    def batches(
        self, batch_size: int, block_size: int, generator: "torch.Generator | int | None" = None
    ) -> Iterator["tuple[torch.Tensor, torch.Tensor]"]:
        """Endless (x, y) batches of windows at uniformly random positions; y is x shifted by one.
        The same seeded generator gives the same batches. An int is taken as a seed."""
        if generator is None or isinstance(generator, int):
            generator = torch.Generator().manual_seed(0 if generator is None else generator)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if block_size < 1 or self.n_tokens < block_size + 1:
            raise ValueError(
                f"block_size {block_size} needs at least {block_size + 1} tokens; this stream has {self.n_tokens}"
            )

        def gen() -> Iterator["tuple[torch.Tensor, torch.Tensor]"]:
            while True:
                yield self.get_batch(self.sample_positions(batch_size, block_size, generator), block_size)

        return gen()


TextDataset = TokenStream

__all__ = [
    "CORPORA",
    "TextDataset",
    "TokenStream",
    "corpus_paths",
    "load_bin",
    "load_text",
    "write_bin",
]
