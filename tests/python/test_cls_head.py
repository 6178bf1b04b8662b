"""Classification heads (llama.cpp's cls.* tensors) through Model.classify, against transformers.

tools/make_cls_model.py gave two tiny models a head and stored transformers' scores for four token
sequences (tests/data/tiny/cls.txt): qwen3_cls.gguf is a Qwen3 reranker as llama.cpp's converter writes one
(cls.output.weight only, pooling "rank", labels yes/no), qwen2_cls.gguf a full head (dense + tanh + output,
pooling "mean", three labels). Variants with header bytes patched in place give a one-output head and
malformed heads.
"""

import math
import os
import struct

import pytest

import pocketlm

TINY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tiny")
# max |pocketlm - transformers| over the scores (which spread 3 to 8 units); measured 0.0018. The difference is
# pocketlm's F16 rounding of activations and of the KV cache; another pooling than the file's moves scores by 2-9.
TOL_SCORE = 0.02
TEXTS = ["the parcel never came", "refund please", "my app crashes on start", "hello", "x y z w v u t s"]


def load_refs():
    refs, cur, seq = {}, None, None
    with open(os.path.join(TINY, "cls.txt")) as fh:
        for line in fh:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            if w[0] == "model":
                cur = refs[w[1]] = {"n_out": int(w[2]), "pooling": w[3], "labels": [], "seqs": []}
            elif w[0] == "label":
                cur["labels"].append(w[1])
            elif w[0] == "seq":
                seq = {"ids": None, "scores": {}}
                cur["seqs"].append(seq)
            elif w[0] == "ids":
                seq["ids"] = [int(x) for x in w[1:]]
            elif w[0] == "scores":
                seq["scores"][w[1]] = [float(x) for x in w[2:]]
    return refs


REFS = load_refs()


@pytest.fixture(scope="module")
def reranker():
    m = pocketlm.Model(os.path.join(TINY, "qwen3_cls.gguf"), n_threads=1)
    yield m
    m.close()


@pytest.fixture(scope="module")
def full_head():
    m = pocketlm.Model(os.path.join(TINY, "qwen2_cls.gguf"), n_threads=1)
    yield m
    m.close()


def patched(tmp_path, name, *edits):
    """A copy of tests/data/tiny/<name> with header edits: ("dim", tensor, d, value), ("u32", key, value),
    ("rename", old, new) (same length)."""
    data = bytearray(open(os.path.join(TINY, name), "rb").read())

    def find(s):
        pat = struct.pack("<Q", len(s)) + s.encode()
        at = data.find(pat, 0, 65536)
        assert at >= 0, s
        return at + len(pat)

    for e in edits:
        if e[0] == "dim":
            at = find(e[1]) + 4 + 8 * e[2]
            data[at:at + 8] = struct.pack("<Q", e[3])
        elif e[0] == "u32":
            at = find(e[1]) + 4
            data[at:at + 4] = struct.pack("<I", e[2])
        else:
            at = find(e[1])
            data[at - len(e[1]):at] = e[2].encode()
    path = tmp_path / f"patched-{name}"
    path.write_bytes(bytes(data))
    return str(path)


def softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("name", ["qwen3_cls.gguf", "qwen2_cls.gguf"])
def test_scores_match_transformers(name, reranker, full_head):
    model = reranker if name.startswith("qwen3") else full_head
    ref = REFS[name]
    assert model.info.n_cls_out == ref["n_out"] and model.has_classifier_head
    assert model.classifier_labels == tuple(ref["labels"])
    pooling = "last" if ref["pooling"] == "rank" else ref["pooling"]
    assert model.classifier_pooling == pooling
    with model.context(n_ctx=64, n_seq_max=3) as ctx:   # four texts in two decodes
        scores, probs = ctx.classify_head([s["ids"] for s in ref["seqs"]])
    worst = max(abs(a - b) for s, row in zip(ref["seqs"], scores) for a, b in zip(row, s["scores"][pooling]))
    assert worst <= TOL_SCORE, worst
    for row, p in zip(scores, probs):
        assert p == pytest.approx(softmax(row), abs=1e-6)


def test_classify_uses_the_head(reranker):
    r = reranker.classify(TEXTS[0])
    assert isinstance(r, pocketlm.Classification)
    assert r.labels == ("yes", "no") and set(r) == {"yes", "no"}
    assert sum(r.values()) == pytest.approx(1.0, abs=1e-6)
    with reranker.context(n_ctx=64) as ctx:
        (scores,), (probs,) = ctx.classify_head([reranker.tokenize(TEXTS[0])])
    assert r.logits == pytest.approx(scores, abs=1e-6)
    assert [r["yes"], r["no"]] == pytest.approx(probs, abs=1e-6)
    assert r.logprobs == pytest.approx([math.log(p) for p in probs], abs=1e-6)
    pipe = r.as_pipeline()
    assert [d["label"] for d in pipe] == sorted(r, key=lambda k: -r[k]) and pipe[0]["score"] >= pipe[1]["score"]
    assert r.label == pipe[0]["label"]


def test_labels_subset_and_order(full_head):
    full = full_head.classify(TEXTS[2])
    sub = full_head.classify(TEXTS[2], ["other", "billing"])
    assert sub.labels == ("other", "billing")
    assert sub.logits == pytest.approx([full.logits[2], full.logits[0]], abs=1e-6)
    assert list(sub.values()) == pytest.approx(softmax(sub.logits), abs=1e-6)
    assert full_head.classify(TEXTS[2], ["billing", "technical", "other"]).scores == pytest.approx(full.scores)
    multi = full_head.classify(TEXTS[2], multi_label=True)
    assert multi.scores == pytest.approx([1 / (1 + math.exp(-z)) for z in full.logits], abs=1e-6)
    with pytest.raises(pocketlm.InvalidArgumentError, match="'refunds' are not outputs of the model's classification head"):
        full_head.classify(TEXTS[2], ["billing", "refunds"])


def test_classify_many_equals_classify(full_head):
    many = full_head.classify_many(TEXTS, batch_size=2, progress=False)
    assert len(many) == len(TEXTS)
    for text, r in zip(TEXTS, many):
        one = full_head.classify(text)
        assert r.text == text and r.logits == pytest.approx(one.logits, abs=1e-5)
        assert r.scores == pytest.approx(one.scores, abs=1e-6)
    sub = full_head.classify_many(TEXTS[:2], ["technical"], multi_label=True, progress=False)
    assert [r.labels for r in sub] == [("technical",)] * 2


def test_zero_shot_still_available(reranker):
    # a template means zero-shot scoring (the tiny model's context of 64 is too short for the default prompt)
    r = reranker.classify(TEXTS[1], ["yes", "no"], template="{text}:")
    assert r.logits is None and sum(r.values()) == pytest.approx(1.0, abs=1e-5)
    r2 = reranker.classify(TEXTS[1], ["yes", "no"], template="{text}:", use_head=False)
    assert r2.scores == pytest.approx(r.scores, abs=1e-6)
    # which needs labels
    with pytest.raises(pocketlm.InvalidArgumentError, match="needs labels"):
        reranker.classify(TEXTS[1], template="Text: {text}\nAnswer:")
    with pytest.raises(pocketlm.InvalidArgumentError, match="template"):
        reranker.classify(TEXTS[1], template="Text: {text}", use_head=True)


def test_model_without_head():
    with pocketlm.Model(os.path.join(TINY, "qwen3.gguf"), n_threads=1) as m:
        assert not m.has_classifier_head and m.classifier_labels == () and m.classifier_pooling is None
        assert m.info.n_cls_out == 0
        with pytest.raises(pocketlm.UnsupportedError, match="no classification head"):
            m.classify("hello", use_head=True)
        with pytest.raises(pocketlm.InvalidArgumentError, match="needs labels"):
            m.classify("hello")
        with m.context(n_ctx=32) as ctx, pytest.raises(pocketlm.UnsupportedError, match="no classification head"):
            ctx.classify_head([[1, 50, 60]])


def test_bad_input(reranker):
    with pytest.raises(pocketlm.InvalidArgumentError, match="empty"):
        reranker.classify("   ")
    with reranker.context(n_ctx=16) as ctx:
        with pytest.raises(pocketlm.InvalidArgumentError, match="text 1 is empty"):
            ctx.classify_head([[1, 50], []])
        with pytest.raises(pocketlm.InvalidArgumentError, match="no texts"):
            ctx.classify_head([])
        with pytest.raises(pocketlm.ContextFullError):
            ctx.classify_head([[50] * 20])


def test_single_output_head(tmp_path):
    """The reranker cut to its first output and stripped of label names: one score, its sigmoid."""
    path = patched(tmp_path, "qwen3_cls.gguf", ("dim", "cls.output.weight", 1, 1),
                   ("rename", "qwen3.classifier.output_labels", "qwen3.classifier.output_label_"))
    ref = REFS["qwen3_cls.gguf"]
    with pocketlm.Model(path, n_threads=1) as m:
        assert m.classifier_labels == ("LABEL_0",)
        with m.context(n_ctx=64) as ctx:
            scores, probs = ctx.classify_head([s["ids"] for s in ref["seqs"]])
        for s, z, p in zip(ref["seqs"], scores, probs):
            assert abs(z[0] - s["scores"]["last"][0]) <= TOL_SCORE
            assert p[0] == pytest.approx(1 / (1 + math.exp(-z[0])), abs=1e-6)
        r = m.classify(TEXTS[0])
        assert r.multi_label and r.scores == pytest.approx([1 / (1 + math.exp(-r.logits[0]))], abs=1e-6)


@pytest.mark.parametrize("edits, error, message", [
    ([("dim", "cls.weight", 0, 32)], pocketlm.FormatError, "'cls.weight' has shape \\[32, 64"),
    ([("dim", "cls.output.weight", 1, 2), ("dim", "cls.output.bias", 0, 2)], pocketlm.FormatError,
     "'qwen2.classifier.output_labels' names 3 labels but the classifier head 'cls.output.weight' has 2 outputs"),
    ([("u32", "qwen2.pooling_type", 9)], pocketlm.UnsupportedError, "'qwen2.pooling_type' = 9"),
])
def test_malformed_head(tmp_path, edits, error, message):
    path = patched(tmp_path, "qwen2_cls.gguf", *edits)
    with pytest.raises(error, match=message):
        pocketlm.Model(path)
