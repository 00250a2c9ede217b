import numpy as np
import pytest
import torch

from bitscale.data.text import (
    CORPORA,
    TextDataset,
    TokenStream,
    corpus_paths,
    load_bin,
    load_text,
    write_bin,
)


# -- corpora -------------------------------------------------------------------------------------
def test_corpora_ship_with_the_package():
    assert set(CORPORA) == {"tinyshakespeare", "wikitext2-valid", "wikitext2-test", "wikitext2"}
    for name in CORPORA:
        assert all(path.is_file() for path in corpus_paths(name))
    shakespeare = load_text("tinyshakespeare")
    assert 1_000_000 < len(shakespeare) < 1_200_000
    assert shakespeare.startswith("First Citizen:")
    for name in ("wikitext2-valid", "wikitext2-test"):
        text = load_text(name)
        assert 1_000_000 < len(text) < 1_400_000
        assert " = " in text
    # the combined corpus is the two splits in order, nothing added or lost
    assert load_text("wikitext2") == load_text("wikitext2-valid") + load_text("wikitext2-test")


def test_license_note():
    lic = (corpus_paths("tinyshakespeare")[0].parent / "LICENSE.md").read_text()
    assert "CC BY-SA" in lic
    assert "public domain" in lic
    assert "Merity" in lic and "Wikipedia contributors" in lic


def test_unknown_corpus_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="known corpora") as e:
        corpus_paths("nope")
    assert "tinyshakespeare" in str(e.value)
    with pytest.raises(ValueError, match="neither a known corpus") as e:
        load_text("shakespeare")
    assert "tinyshakespeare" in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xff\xfe not utf-8")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_text(bad)


def test_user_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    text = "my own corpus, with ünïcode 😀\n" * 50
    path.write_text(text, encoding="utf-8")
    assert load_text(path) == text
    assert load_text(str(path)) == text
    stream = TokenStream.from_text(load_text(path), "byte")
    assert stream.n_tokens == len(text.encode())
    assert stream.vocab_size == 256 and stream.tokenizer == "byte"


# -- split and batches ---------------------------------------------------------------------------
def _stream(n=1000, vocab=1000):
    return TokenStream(np.arange(n) % vocab, vocab)


def test_split_is_contiguous_without_leakage():
    stream = _stream(1000)  # token i == position i: values tell where windows come from
    train, val = stream.split(0.1)
    assert (train.n_tokens, val.n_tokens) == (900, 100)
    assert train.tokens.tolist() == list(range(900))
    assert val.tokens.tolist() == list(range(900, 1000))
    assert set(train.tokens.tolist()).isdisjoint(val.tokens.tolist())
    g = torch.Generator().manual_seed(0)
    for _, (x, y) in zip(range(50), train.batches(16, 32, g)):
        assert int(torch.cat([x, y]).max()) < 900  # never crosses into val
    for _, (x, y) in zip(range(50), val.batches(16, 32, g)):
        assert int(torch.cat([x, y]).min()) >= 900
    with pytest.raises(ValueError):
        stream.split(0.0)
    with pytest.raises(ValueError):
        stream.split(1.0)


def test_batches_shape_and_shift():
    stream = _stream(500)
    x, y = next(stream.batches(8, 16, torch.Generator().manual_seed(1)))
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y, x + 1)  # tokens are positions here


def test_windows_cover_the_whole_stream():
    stream = _stream(20)
    seen = set()
    for _, (x, y) in zip(range(200), stream.batches(4, 5, torch.Generator().manual_seed(0))):
        seen |= set(x.flatten().tolist()) | set(y.flatten().tolist())
    assert seen == set(range(20))  # first and last tokens are reachable


def test_same_seed_same_batches_different_seed_different():
    stream = _stream(5000)

    def take(seed, n=5):
        it = stream.batches(4, 32, torch.Generator().manual_seed(seed))
        return [b for _, b in zip(range(n), it)]

    a, b, c = take(0), take(0), take(1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    # an int seed works too
    x_int, _ = next(stream.batches(4, 32, 0))
    assert torch.equal(x_int, a[0][0])


def test_block_size_too_large():
    with pytest.raises(ValueError, match="needs at least"):
        _stream(10).batches(2, 10)


# -- .bin files ----------------------------------------------------------------------------------
def test_bin_round_trip_memmap(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 65536, size=10_000)
    path = write_bin(ids, tmp_path / "train.bin", vocab_size=65536, tokenizer="bpe:65536")
    assert path.stat().st_size == 2 * ids.size
    assert np.array_equal(np.fromfile(path, dtype="<u2"), ids)  # raw uint16, no header (nanoGPT)
    mm = load_bin(path)
    assert isinstance(mm, np.memmap) and mm.dtype == np.uint16
    assert np.array_equal(mm, ids)
    stream = TokenStream.from_bin(path)
    assert isinstance(stream.tokens, np.memmap)
    assert stream.vocab_size == 65536 and stream.tokenizer == "bpe:65536"
    train, val = stream.split(0.2)
    assert isinstance(train.tokens, np.memmap)
    x, y = next(train.batches(2, 8, 0))
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_bin_without_sidecar_and_stream_to_bin(tmp_path):
    write_bin([1, 2, 3, 9], tmp_path / "a.bin")
    assert not (tmp_path / "a.json").exists()
    assert TokenStream.from_bin(tmp_path / "a.bin").vocab_size == 10
    s = TokenStream.from_text("hello", "byte")
    s.to_bin(tmp_path / "b.bin")
    back = TextDataset.from_bin(tmp_path / "b.bin")
    assert back.tokens.tolist() == list(b"hello") and back.vocab_size == 256


def test_uint16_overflow_is_refused(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_bin([0, 65536], tmp_path / "x.bin")
    with pytest.raises(ValueError, match="uint16"):
        write_bin([-1, 3], tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()
    with pytest.raises(ValueError, match="uint16"):
        TokenStream([70_000], 70_001)


def test_load_bin_errors(tmp_path):
    with pytest.raises(ValueError, match="no token file"):
        load_bin(tmp_path / "missing.bin")
    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(ValueError, match="not a uint16"):
        load_bin(tmp_path / "odd.bin")


def test_from_text_bpe():
    text = load_text("tinyshakespeare")[:50_000]
    stream = TokenStream.from_text(text, "bpe:400")
    assert stream.vocab_size == 400 and stream.tokenizer == "bpe:400"
    assert stream.n_tokens < len(text)
    assert int(stream.tokens.max()) < 400
