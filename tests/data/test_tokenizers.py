import pytest

from bitscale.data.text import load_text
from bitscale.data.tokenizers import BPETokenizer, ByteTokenizer, get_tokenizer

UNICODE = "Héllo, wörld! Ελληνικά, 日本語, emoji 😀🚀 and a tab\tand newline\n"


def test_byte_round_trip_unicode():
    tok = ByteTokenizer()
    ids = tok.encode(UNICODE)
    assert tok.vocab_size == 256
    assert all(0 <= i < 256 for i in ids)
    assert len(ids) == len(UNICODE.encode("utf-8"))
    assert tok.decode(ids) == UNICODE
    assert tok.encode_array(UNICODE).tolist() == ids


def test_byte_decode_partial_character_does_not_raise():
    ids = ByteTokenizer().encode("😀")
    assert ByteTokenizer().decode(ids[:2]) == "\ufffd"


@pytest.fixture(scope="module")
def shakespeare():
    return load_text("tinyshakespeare")[:200_000]


@pytest.fixture(scope="module")
def bpe(shakespeare):
    return BPETokenizer.train(shakespeare, 512)


def test_bpe_round_trip_on_shakespeare(bpe, shakespeare):
    assert bpe.vocab_size == 512
    lines = shakespeare.splitlines(keepends=True)[:300]
    for line in lines:
        assert bpe.decode(bpe.encode(line)) == line
    chunk = "".join(lines)
    ids = bpe.encode(chunk)
    assert len(ids) < len(chunk.encode())  # it compresses
    assert max(ids) < bpe.vocab_size
    assert bpe.decode(ids) == chunk
    assert bpe.decode(bpe.encode(UNICODE)) == UNICODE  # byte-level: no unknown tokens


def test_bpe_training_is_deterministic(bpe, shakespeare):
    again = BPETokenizer.train(shakespeare, 512)
    assert again.get_vocab() == bpe.get_vocab()
    assert again.to_json() == bpe.to_json()


def test_bpe_save_load(bpe, tmp_path):
    path = bpe.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = BPETokenizer.load(path)
    text = "To be, or not to be: that is the question."
    assert loaded.encode(text) == bpe.encode(text)
    assert loaded.vocab_size == bpe.vocab_size
    assert get_tokenizer(f"bpe:{path}").encode(text) == bpe.encode(text)


def test_bpe_vocab_bounds(shakespeare):
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(shakespeare, 100)
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(shakespeare, 70_000)


def test_get_tokenizer(shakespeare):
    assert isinstance(get_tokenizer("byte"), ByteTokenizer)
    tok = get_tokenizer("bpe:300", text=shakespeare[:20_000])
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 300 and tok.name == "bpe:300"
    with pytest.raises(ValueError, match="text="):
        get_tokenizer("bpe:300")
    with pytest.raises(ValueError, match="unknown tokenizer"):
        get_tokenizer("wordpiece")
    with pytest.raises(ValueError, match="bad BPE"):
        get_tokenizer("bpe:nope")


def test_missing_library_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tokenizers":
            raise ImportError("no module")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'bitscale\[hf\]'"):
        BPETokenizer.train("some text", 300)
