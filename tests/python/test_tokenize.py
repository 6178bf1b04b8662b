"""Tokens through the Python API equal the reference ids (llama.cpp, checked against Hugging Face)."""

import os

import numpy as np
import pytest

import pocketlm

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tokens_smollm2.tsv")


def _cases():
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip("\n"):
                continue
            name, parse_special, add_special, hex_text, ids = (line.rstrip("\n").split("\t") + [""])[:5]
            yield pytest.param(bytes.fromhex(hex_text), parse_special == "1", add_special == "1",
                               [int(x) for x in ids.split()], id=name)


@pytest.mark.parametrize("text, parse_special, add_special, ids", list(_cases()))
def test_reference_tokens(model, text, parse_special, add_special, ids):
    toks = model.tokenize(text, add_special=add_special, parse_special=parse_special)
    assert list(toks) == ids
    try:
        as_str = text.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert list(model.tokenize(as_str, add_special=add_special, parse_special=parse_special)) == ids


def test_special_tokens(model):
    text = "<|im_start|>user\nHi<|im_end|>"
    special = model.tokenize(text, parse_special=True)
    assert list(special) == [1, 4093, 198, 26843, 2]
    assert len(model.tokenize(text)) > len(special)      # default: plain text
    assert model.detokenize(special) == "user\nHi"
    assert model.detokenize(special, special=True) == text
    assert model.is_eog(2) and not model.is_eog(26843)
    assert model.token_to_piece(26843) == b"Hi"


def test_round_trip(model):
    text = "Hello, world! Ünïcödé, emoji 🐍, code `x = 1`\n\n\tand   spaces."
    toks = model.tokenize(text)
    assert model.detokenize(toks) == text
    assert model.detokenize_bytes(toks) == text.encode("utf-8")
    assert model.detokenize(np.asarray(toks)) == text
    assert model.tokenize(text.encode("utf-8")) == toks
    assert model.tokenize(bytearray(text.encode("utf-8"))) == toks


def test_long_text(model):
    text = "pocketlm " * 20000
    toks = model.tokenize(text)
    assert len(toks) > 20000
    assert model.detokenize(toks) == text


def test_metadata_and_info(model):
    info = model.info
    assert info.arch == "llama" and info.file_type == "Q4_1"
    assert info.n_vocab == model.n_vocab == 49152
    assert info.n_layer == 30 and info.n_embd == 576
    assert "<|im_start|>" in info.chat_template
    assert "chat_template" not in repr(info)
    assert os.path.basename(info.path) == "SmolLM2-135M-Instruct.Q4_1.gguf"
    meta = model.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.chat_template"] == info.chat_template
    assert pocketlm.kernels_name() in ("avx2", "avx512", "scalar")
    assert pocketlm.__version__ == pocketlm._core.VERSION
