"""Model(path, vocab_only=True): the vocabulary and metadata alone, on the real default model; whatever needs the
weights raises an error saying the model was loaded vocabulary-only."""

import struct
import subprocess
import sys

import pytest

import pocketlm

TEXTS = ["Hello world", "  runs  of spaces\n\n12345", "<|im_start|>user\nHi<|im_end|>", "café 😀 中文"]


@pytest.fixture(scope="module")
def vocab(model_path):
    m = pocketlm.Model(model_path, vocab_only=True)
    yield m
    m.close()


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("parse_special", [False, True])
def test_same_tokens_as_the_whole_model(model, vocab, text, parse_special):
    want = list(model.tokenize(text, parse_special=parse_special))
    got = list(vocab.tokenize(text, parse_special=parse_special))
    assert got == want
    assert vocab.detokenize(got, special=True) == model.detokenize(want, special=True)


def test_info_and_metadata(model, vocab):
    assert vocab.n_vocab == model.n_vocab == 49152
    assert vocab.info.chat_template == model.info.chat_template != ""
    assert (vocab.info.bos, vocab.info.eos, vocab.info.eot) == (model.info.bos, model.info.eos, model.info.eot)
    assert vocab.info.file_type == "none" and vocab.info.n_layer == 0
    assert vocab.metadata == model.metadata


@pytest.mark.parametrize("call", [
    lambda m: m.context(),
    lambda m: m.generate("Hi", max_tokens=2),
    lambda m: m.chat("Hi", max_tokens=2),
    lambda m: m.classify("I love it", ["positive", "negative"]),
    lambda m: m.embed("Hi"),
], ids=["context", "generate", "chat", "classify", "embed"])
def test_weights_refused(vocab, call):
    with pytest.raises(pocketlm.InvalidArgumentError, match="vocabulary-only"):
        call(vocab)


def _gpt2_byte_chars():
    """GPT-2's byte -> character map: printable Latin-1 stands for itself, the other bytes for U+0100 on."""
    keep = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    out, nxt = [], 256
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(nxt))
            nxt += 1
    return out


def _write_vocab_file(path):
    """A vocabulary-only GGUF as llama.cpp's ggml-vocab-*.gguf are: no tensors, architecture "falcon" (which
    pocketlm does not run), byte-level BPE with "hello" (id 259) built by four merges."""
    def s(x):
        b = x.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def kv_str(k, v):
        return s(k) + struct.pack("<I", 8) + s(v)

    def kv_strs(k, vs):
        return s(k) + struct.pack("<IIQ", 9, 8, len(vs)) + b"".join(s(v) for v in vs)

    tokens = _gpt2_byte_chars() + ["he", "ll", "llo", "hello"]
    kvs = [kv_str("general.architecture", "falcon"), kv_str("tokenizer.ggml.model", "gpt2"),
           kv_str("tokenizer.ggml.pre", "gpt-2"), kv_strs("tokenizer.ggml.tokens", tokens),
           kv_strs("tokenizer.ggml.merges", ["h e", "l l", "ll o", "he llo"])]
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)
    data += b"\0" * (-len(data) % 32)
    with open(path, "wb") as f:
        f.write(data)


def test_vocabulary_file(tmp_path):
    path = str(tmp_path / "vocab-falcon.gguf")
    _write_vocab_file(path)
    with pytest.raises(pocketlm.UnsupportedError, match="'falcon'"):
        pocketlm.Model(path)
    with pocketlm.Model(path, vocab_only=True) as m:
        assert m.info.arch == "falcon" and m.n_vocab == 260
        assert list(m.tokenize("hello hello")) == [259, 32, 259]
        with pytest.raises(pocketlm.InvalidArgumentError, match="vocabulary-only"):
            m.context()
    out = subprocess.run([sys.executable, "-m", "pocketlm", "tokenize", "-m", path, "-p", "hello hello", "--ids"],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["259", "32", "259"]
