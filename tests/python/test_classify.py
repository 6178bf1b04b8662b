"""Zero-shot classification and embeddings, checked against naive references computed through the Context API."""

import os
import shutil
import subprocess
import threading

import numpy as np
import pytest

import pocketlm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = "My card was charged twice for the same order and I want the money back."
LABELS = ["billing", "technical problem", "shipping", "account access"]


def log_softmax(row):
    row = np.asarray(row, dtype=np.float64)
    m = row.max()
    return row - m - np.log(np.exp(row - m).sum())


def naive_scores(model, prompt, label_tokens):
    """Each label scored as its own full sequence: prompt + label evaluated from scratch, the log-softmax of
    every label token read from the logits of the position before it."""
    scores = []
    with model.context(n_ctx=512) as c:
        for lab in label_tokens:
            c.reset()
            c.eval(list(prompt) + list(lab), logits_all=True)
            scores.append(sum(log_softmax(c.logits_at(len(prompt) - 1 + j))[t] for j, t in enumerate(lab)))
    return np.array(scores)


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_classify_matches_naive_reference(model, mode):
    prompt, labs = model.classification_prompt(TEXT, LABELS)
    assert [len(t) for t in labs] != [1] * len(labs)   # multi-token labels are covered
    ref = naive_scores(model, prompt, labs)
    if mode == "mean":
        ref = ref / np.array([len(t) for t in labs])
    r = model.classify(TEXT, LABELS, mode=mode)
    np.testing.assert_allclose(r.scores, softmax(ref), atol=1e-4)
    np.testing.assert_allclose(r.logprobs, ref, atol=2e-3)
    assert r.label == LABELS[int(np.argmax(ref))]


def test_classify_with_a_template_matches_naive_reference(model):
    template = "Message: {text}\nTeam ({labels}):"
    prompt, labs = model.classification_prompt(TEXT, LABELS, template=template)
    assert model.detokenize(prompt) == "Message: " + TEXT + "\nTeam (" + ", ".join(LABELS) + "):"
    assert model.detokenize(labs[1]) == " technical problem"
    r = model.classify(TEXT, LABELS, template=template)
    np.testing.assert_allclose(r.scores, softmax(naive_scores(model, prompt, labs)), atol=1e-4)


def test_multi_label_matches_naive_reference(model):
    prompt, suffixes = model.classification_prompt(TEXT, LABELS, multi_label=True)
    yes, no = (int(model.tokenize(w)[0]) for w in (" yes", " no"))
    ref = []
    with model.context(n_ctx=512) as c:
        for suf in suffixes:
            c.reset()
            c.eval(list(prompt) + list(suf))
            lp = log_softmax(c.logits)
            ref.append(1.0 / (1.0 + np.exp(lp[no] - lp[yes])))
    r = model.classify(TEXT, LABELS, multi_label=True)
    assert r.multi_label
    np.testing.assert_allclose(r.scores, ref, atol=1e-4)


def test_result_shapes(model):
    r = model.classify("The parcel never arrived.", ["shipping", "billing"])
    assert set(r) == {"shipping", "billing"} and len(r) == 2
    assert abs(sum(r.values()) - 1.0) < 1e-5
    pipe = r.as_pipeline()
    assert [d["label"] for d in pipe] == sorted(r, key=lambda k: -r[k])
    assert pipe[0] == {"label": r.label, "score": r.score}
    assert dict(r) == {lab: r[lab] for lab in ("shipping", "billing")}
    assert "Classification(" in repr(r)


def test_classify_many_equals_classify(model):
    texts = ["I can't log in since yesterday.", "Where is my package?", TEXT, "The app crashes when I open it."]
    many = model.classify_many(texts, LABELS, batch_size=3, progress=False)
    assert [r.text for r in many] == texts
    for t, r in zip(texts, many):
        np.testing.assert_allclose(r.scores, model.classify(t, LABELS).scores, atol=1e-5)
    # the instruction stays cached: the classification context holds the last prompt
    assert list(model._task_context().tokens) == list(model.classification_prompt(texts[-1], LABELS)[0])


def test_classify_many_progress_without_tqdm(model, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *a, **k):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    model.classify_many(["Where is my package?"] * 2, LABELS[:2], progress=True)
    assert "classify: 2/2" in capsys.readouterr().err


def test_calibration(model):
    cf = model.classify("N/A", LABELS).scores
    raw = model.classify(TEXT, LABELS)
    cal = model.classify(TEXT, LABELS, calibrate=True)
    expected = np.array(raw.scores) / np.array(cf)
    np.testing.assert_allclose(cal.scores, expected / expected.sum(), atol=1e-5)
    assert cal.calibrated and not raw.calibrated and cal.logprobs == raw.logprobs
    both = model.classify(TEXT, LABELS, calibrate=["N/A", "nothing"])
    cf2 = (np.array(cf) + np.array(model.classify("nothing", LABELS).scores)) / 2
    expected = np.array(raw.scores) / cf2
    np.testing.assert_allclose(both.scores, expected / expected.sum(), atol=1e-5)


def test_errors(model):
    with pytest.raises(pocketlm.InvalidArgumentError, match="label list is empty"):
        model.classify(TEXT, [])
    with pytest.raises(pocketlm.InvalidArgumentError, match="text is empty"):
        model.classify("   ", LABELS)
    with pytest.raises(pocketlm.InvalidArgumentError, match="text 1 is empty"):
        model.classify_many(["ok", ""], LABELS, progress=False)
    with pytest.raises(pocketlm.InvalidArgumentError, match="label 1 is empty"):
        model.classify(TEXT, ["a", ""])
    with pytest.raises(pocketlm.InvalidArgumentError, match="not distinct"):
        model.classify(TEXT, ["a", "a"])
    with pytest.raises(pocketlm.InvalidArgumentError, match="single string"):
        model.classify(TEXT, "billing")
    with pytest.raises(pocketlm.InvalidArgumentError, match=r"no \{text\}"):
        model.classify(TEXT, LABELS, template="Category:")
    with pytest.raises(pocketlm.InvalidArgumentError, match="mode"):
        model.classify(TEXT, LABELS, mode="max")
    with pytest.raises(pocketlm.InvalidArgumentError, match="empty"):
        model.embed(["fine", ""])
    with pytest.raises(pocketlm.Error):   # the C library's own check, through the low-level API
        with model.context(n_ctx=64) as c:
            c.classify(model.tokenize("x"), [])
    with pytest.raises(pocketlm.ContextFullError):
        with model.context(n_ctx=32) as c:
            model.classify(TEXT, LABELS, context=c)


def test_embed_matches_reference_pooling(model):
    toks = list(model.tokenize("Small models earn their keep in classification."))
    with model.context(n_ctx=256) as c:
        # causal attention: the last state of each prefix is that token's state in the whole text
        states = np.array(c.embed([toks[:k + 1] for k in range(len(toks))], pooling="last", normalize=False))
        mean = model.embed([toks], normalize=False, context=c)[0]
        np.testing.assert_allclose(mean, states.mean(axis=0), rtol=1e-5, atol=1e-5)
        unit = model.embed([toks], context=c)[0]
        np.testing.assert_allclose(unit, states.mean(axis=0) / np.linalg.norm(states.mean(axis=0)), atol=1e-5)
        np.testing.assert_allclose(model.embed([toks], pooling="last", normalize=False, context=c)[0], states[-1],
                                   atol=1e-5)
        np.testing.assert_allclose(model.embed([toks], pooling="cls", normalize=False, context=c)[0], states[0],
                                   atol=1e-5)
        assert c.n_tokens == 0


def test_embed_batches_and_writes_in_place(model):
    texts = ["a cat", "a dog on a mat", "quantum chromodynamics", "a kitten", "the stock market fell"]
    one_by_one = np.stack([model.embed(t) for t in texts])
    batched = model.embed(texts, batch_size=2)
    assert batched.shape == (5, model.info.n_embd) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    sims = batched @ batched.T
    assert sims[0, 3] > sims[0, 2]          # a cat is nearer a kitten than physics
    out = np.full((5, model.info.n_embd), np.nan, dtype=np.float32)
    assert model.embed(texts, out=out) is out            # C wrote straight into the caller's array
    np.testing.assert_allclose(out, batched, atol=1e-5)
    from array import array
    flat = array("f", bytes(4 * 2 * model.info.n_embd))
    model.embed(texts[:2], out=flat)                      # any writable float32 buffer, no numpy needed
    np.testing.assert_allclose(np.frombuffer(flat, np.float32).reshape(2, -1), batched[:2], atol=1e-5)
    with pytest.raises(TypeError):
        model.embed(texts[:2], out=np.zeros((2, model.info.n_embd)))   # float64
    with pytest.raises(pocketlm.InvalidArgumentError):
        model.embed(texts, out=np.zeros((2, model.info.n_embd), np.float32))


def test_linear_probe_fits_and_round_trips(model, tmp_path):
    fruit = ["an apple", "a ripe banana", "fresh oranges", "a bowl of cherries", "sweet grapes", "a juicy pear"]
    vehicles = ["a red truck", "a fast motorcycle", "a city bus", "a sports car", "a freight train", "a bicycle"]
    probe = pocketlm.LinearProbe.fit(model, fruit + vehicles, ["fruit"] * 6 + ["vehicle"] * 6)
    assert probe.classes == ["fruit", "vehicle"]
    assert probe.score(fruit + vehicles, ["fruit"] * 6 + ["vehicle"] * 6) == 1.0
    assert probe.predict(["a plum", "a tractor"]) == ["fruit", "vehicle"]
    proba = probe.predict_proba(["a plum", "a tractor"])
    assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1.0)
    for name in ("probe.npz", "probe.json"):
        probe.save(tmp_path / name)
        back = pocketlm.LinearProbe.load(tmp_path / name, model)
        assert back.classes == probe.classes and back.pooling == probe.pooling
        np.testing.assert_allclose(back.predict_proba(["a plum", "a tractor"]), proba, rtol=1e-9)
    assert (tmp_path / "probe.npz").exists()
    emb = model.embed(["a plum"])
    assert pocketlm.LinearProbe.load(tmp_path / "probe.npz").predict(emb) == ["fruit"]   # no model: embeddings
    with pytest.raises(pocketlm.InvalidArgumentError):
        pocketlm.LinearProbe.load(tmp_path / "probe.npz").predict(["a plum"])


def test_linear_probe_on_synthetic_blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 20)) * 3
    x = np.concatenate([c + rng.normal(size=(40, 20)) for c in centers])
    y = [0] * 40 + [1] * 40 + [2] * 40
    probe = pocketlm.LinearProbe.fit_embeddings(x[::2], y[::2])
    assert probe.classes == [0, 1, 2]
    assert probe.score(x[1::2], y[1::2]) >= 0.95
    with pytest.raises(pocketlm.InvalidArgumentError):
        pocketlm.LinearProbe.fit_embeddings(x[:5], [0] * 5)        # one class


def test_threads_with_their_own_contexts(model):
    expected = model.classify(TEXT, LABELS).scores
    results = [None, None]

    def work(i):
        with model.context(n_ctx=256) as c:
            results[i] = model.classify(TEXT, LABELS, context=c).scores

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


# -- one prompt for every language ---------------------------------------------------------------------------

TINY_LLAMA = os.path.join(ROOT, "tests", "data", "tiny", "llama.gguf")
SPACES = ["", "\u00a0", "\u3000", "\t", "\n"]   # none, no-break space, ideographic space, tab, newline


def _parity_cases(default_model_path):
    """(model path, text, labels, template, multi_label, mode): every trailing space on both models, the default
    template (the chat format) on the real model, multi-label and the mean."""
    cases = []
    for sp in SPACES:
        cases.append((TINY_LLAMA, "great" + sp, ["good", "bad"], "Review: {text}", False, "sum"))
        cases.append((default_model_path, "great" + sp, ["positive", "negative"], "Review: {text}", False, "sum"))
        cases.append((default_model_path, "The food was cold" + sp, ["positive", "negative"], None, False, "sum"))
    cases.append((default_model_path, "The striker scored\u3000", ["sports", "cooking"], None, True, "sum"))
    cases.append((default_model_path, "Where is my parcel?\n", ["shipping", "technical problem"], None, False, "mean"))
    return cases


def _lua_str(s):
    return '"' + "".join(f"\\{b}" for b in s.encode("utf-8")) + '"'


def _line(logprobs, probs, prompt, labels):
    nums = " ".join(f"{a:.9g} {b:.9g}" for a, b in zip(logprobs, probs))
    toks = " ".join(map(str, prompt)) + "".join(" | " + " ".join(map(str, t)) for t in labels)
    return nums + " ; " + toks


LUA_SCRIPT = """
package.path = %(root)s .. "/lua/?.lua;" .. package.path
package.cpath = %(root)s .. "/lua/?.so;" .. package.cpath
local plm = require "pocketlm"
local models = {}
for _, c in ipairs(%(cases)s) do
    local path, text, labels, template, multi, mode = table.unpack(c, 1, 6)
    models[path] = models[path] or plm.load(path, {n_threads = 1})
    local m = models[path]
    local r = m:classify(text, labels, {template = template, multi_label = multi, mode = mode})
    local p, labs = m:classification_prompt(text, labels, {template = template, multi_label = multi})
    local nums, toks = {}, {}
    for _, lab in ipairs(labels) do
        nums[#nums + 1] = ("%%.9g %%.9g"):format(r.logprobs[lab], r.probs[lab])
    end
    for i = 1, #p do toks[#toks + 1] = tostring(p[i]) end
    for _, t in ipairs(labs) do
        toks[#toks + 1] = "|"
        for _, id in ipairs(t) do toks[#toks + 1] = tostring(id) end
    end
    print(table.concat(nums, " ") .. " ; " .. table.concat(toks, " "))
end
"""


def test_python_and_lua_score_the_same_prompt(model, model_path, tmp_path):
    """The same texts (ending in no space, a no-break space, an ideographic space, a tab, a newline) through the
    Lua module and through Python: the same prompt and label tokens, bit-identical scores, on the tiny llama and
    on the real default model."""
    lua = shutil.which("lua5.4")
    if lua is None or shutil.which("make") is None:
        pytest.skip("lua5.4 or make is missing")
    # The Lua module is built without sanitizers; ASan's preload (make python-test-asan) stays out of lua5.4.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS")}
    built = subprocess.run(["make", "-s", "-C", ROOT, "lua"], capture_output=True, text=True, env=env)
    if built.returncode != 0:
        pytest.skip("`make lua` could not build the Lua module: " + built.stderr[-500:])
    cases = _parity_cases(model_path)
    lua_cases = "{" + ", ".join(
        "{%s, %s, {%s}, %s, %s, %s}" % (_lua_str(p), _lua_str(t), ", ".join(map(_lua_str, labs)),
                                        "nil" if tmpl is None else _lua_str(tmpl), "true" if multi else "false",
                                        _lua_str(mode))
        for p, t, labs, tmpl, multi, mode in cases) + "}"
    script = tmp_path / "parity.lua"
    script.write_text(LUA_SCRIPT % {"root": _lua_str(ROOT), "cases": lua_cases})
    out = subprocess.run([lua, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    lua_lines = out.stdout.splitlines()
    assert len(lua_lines) == len(cases)
    tiny = pocketlm.Model(TINY_LLAMA, n_threads=1)
    try:
        for (path, text, labels, tmpl, multi, mode), lua_line in zip(cases, lua_lines):
            m = tiny if path == TINY_LLAMA else model
            r = m.classify(text, labels, template=tmpl, multi_label=multi, mode=mode)
            prompt, label_tokens = m.classification_prompt(text, labels, template=tmpl, multi_label=multi)
            assert lua_line == _line(r.logprobs, r.scores, prompt, label_tokens), (path, text, tmpl)
            # the rule both follow: no space before a label after Unicode whitespace (the default template ends
            # with "Answer:", the others with the text)
            if not multi:
                sep = "" if tmpl is not None and text[-1].isspace() else " "
                assert list(label_tokens[0]) == list(m.tokenize(sep + labels[0], add_special=False)), (path, text)
    finally:
        tiny.close()
