"""LoRA adapters from Python: Model.load_adapter, model.context(adapters=...), generate(..., adapters=...).

References are independent implementations: transformers + PEFT on the tiny llama (tests/data/tiny/llama_lora.txt,
tools/make_tiny_lora.py) and on the default model dequantized by transformers with a toy adapter trained by PEFT
(tests/data/lora/lora_smollm2.txt and .gguf, tools/train_lora.py).
"""
import os
import threading

import pytest

import pocketlm

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
TINY = os.path.join(DATA, "tiny")
# as tests/c/test_lora.c: A, B and A's input in 8 bits, about 1% of the random adapters' effect (up to 12.2 on the
# logits); measured 0.121
TOL_TINY = 0.15
# tests/c/test_model.c's tolerance against transformers on the dequantized GGUF: 0.80 for logits up to 17.4 (the largest
# top logit of its prompts). The difference comes from quantizing activations to 8 bits, so it grows with the logits;
# the toy adapter is trained to certainty (top logits 35 to 37), so the bound is scaled by top logit / 17.4.
# Measured: at most 1.05 (PEFT) and 0.52 (the base) where the scaled bound is 1.6 to 1.7.
TOL_REAL = 0.80
TOP_REAL = 17.4


def tol_real(top):
    return TOL_REAL * max(1.0, top / TOP_REAL)


def read_tiny_ref():
    cols, cases, case, seq = None, {}, None, None
    with open(os.path.join(TINY, "llama_lora.txt")) as f:
        for line in f:
            p = line.split()
            if not p or p[0] == "#":
                continue
            if p[0] == "cols":
                cols = [int(x) for x in p[1:]]
            elif p[0] == "case":
                case = cases[p[1]] = {"scales": (float(p[2]), float(p[3])), "seqs": []}
            elif p[0] == "seq":
                seq = {"rows": []}
                case["seqs"].append(seq)
            elif p[0] == "ids":
                seq["ids"] = [int(x) for x in p[1:]]
            elif p[0] == "pos":
                seq["rows"].append([float(x) for x in p[2:]])
    return cols, cases


@pytest.fixture(scope="module")
def tiny():
    m = pocketlm.Model(os.path.join(TINY, "llama.gguf"), n_threads=2, n_ctx=64)
    a1 = m.load_adapter(os.path.join(TINY, "llama_lora.gguf"))
    a2 = m.load_adapter(os.path.join(TINY, "llama_lora_q8.gguf"))
    yield m, a1, a2
    m.close()


def worst_error(ctx, cols, seqs):
    worst = 0.0
    for s in seqs:
        ctx.reset()
        ctx.eval(s["ids"], logits_all=True)
        for i, row in enumerate(s["rows"]):
            got = ctx.logits_at(i)
            worst = max(worst, max(abs(got[c] - v) for c, v in zip(cols, row)))
    return worst


def test_tiny_matches_peft(tiny):
    m, a1, a2 = tiny
    cols, cases = read_tiny_ref()
    assert (a1.rank, a1.alpha, a1.n_targets) == (4, 8.0, 14)
    specs = {"a1": [a1], "a2": [(a2, 1.0)], "both": [(a1, 1.0), (a2, 0.5)]}
    for name, adapters in specs.items():
        with m.context(adapters=adapters) as ctx:
            assert [s for _, s in ctx.adapters] == [s for s in cases[name]["scales"] if s]
            err = worst_error(ctx, cols, cases[name]["seqs"])
            assert err <= TOL_TINY, f"{name}: logits differ from transformers + PEFT by {err}"
            # without adapters the same context gives other logits (the reference is not the base's)
            ctx.set_adapters(None)
            assert worst_error(ctx, cols, cases[name]["seqs"]) > 1.0


def test_two_contexts_with_different_adapters_concurrently(tiny):
    m, a1, a2 = tiny
    cols, cases = read_tiny_ref()
    results, errors = {}, []

    def run(name, adapters):
        try:
            with m.context(adapters=adapters, n_threads=1) as ctx:
                results[name] = max(worst_error(ctx, cols, cases[name]["seqs"]) for _ in range(5))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=("a1", [a1])), threading.Thread(target=run, args=("a2", [a2]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results["a1"] <= TOL_TINY and results["a2"] <= TOL_TINY, results


def test_state_remembers_its_adapters(tiny):
    m, a1, a2 = tiny
    with m.context(adapters=[a1]) as c1, m.context() as c2:
        c1.eval([1, 20, 30, 40])
        state = c1.save_state()
        with pytest.raises(pocketlm.FormatError, match="adapter"):
            c2.load_state(state)
        c2.set_adapters([(a1, 0.5)])
        with pytest.raises(pocketlm.FormatError, match="adapter"):
            c2.load_state(state)
        c2.set_adapters([a1])
        c2.load_state(state)
        assert list(c2.logits) == list(c1.logits)


def test_refusals(tiny):
    m, a1, _ = tiny
    with pytest.raises(pocketlm.FormatError, match="general.type"):
        m.load_adapter(os.path.join(TINY, "llama.gguf"))
    with pytest.raises(pocketlm.ModelFileError):
        m.load_adapter(os.path.join(TINY, "missing.gguf"))
    other = pocketlm.Model(os.path.join(TINY, "mistral.gguf"), n_ctx=32)
    with pytest.raises(pocketlm.FormatError, match="shapes"):
        other.load_adapter(os.path.join(TINY, "llama_lora.gguf"))
    with pytest.raises(pocketlm.InvalidArgumentError, match="another model"):
        other.context(adapters=[a1])
    with m.context(adapters=[a1]) as ctx:
        for bad in ([(a1, float("nan"))], [(a1, "1")], ["x"], [a1] * 17):
            with pytest.raises(pocketlm.InvalidArgumentError):
                ctx.set_adapters(bad)
        assert ctx.adapters == [(a1, 1.0)]   # unchanged
    other.close()


# ------------------------------------------------------------------ the real model with a trained adapter

REAL = os.path.join(DATA, "lora", "lora_smollm2.gguf")


def read_real_ref():
    cases, case = [], None
    with open(os.path.join(DATA, "lora", "lora_smollm2.txt")) as f:
        for line in f:
            p = line.split()
            if not p or p[0] == "#":
                continue
            if p[0] == "case":
                case = {"name": p[1]}
                cases.append(case)
            elif p[0] == "ids":
                case["ids"] = [int(x) for x in p[1:]]
            elif p[0] in ("hf", "base"):
                case[p[0]] = [(int(t), float(v)) for t, v in (x.split(":") for x in p[1:])]
            elif p[0] == "greedy":
                case["greedy"] = [int(x) for x in p[1:]]
    return cases


def test_real_adapter_matches_peft(model):
    robot = model.load_adapter(REAL)
    with model.context(adapters=[robot]) as ctx, model.context() as base:
        for case in read_real_ref():
            ctx.reset()
            ctx.eval(case["ids"])
            got = ctx.logits
            worst = max(abs(got[t] - v) for t, v in case["hf"])
            assert worst <= tol_real(case["hf"][0][1]), f"{case['name']}: logits differ from PEFT by {worst}"
            assert max(range(len(got)), key=lambda i: got[i]) == case["hf"][0][0]
            base.reset()
            base.eval(case["ids"])
            b = base.logits
            assert max(abs(b[t] - v) for t, v in case["base"]) <= tol_real(case["base"][0][1])
            # the adapter moves the top of the distribution well beyond the tolerance
            assert max(abs(got[t] - b[t]) for t, _ in case["hf"]) > 3 * TOL_REAL


def test_real_adapter_changes_the_answers_as_trained(model):
    robot = model.load_adapter(REAL)
    with model.context(adapters=[robot]) as ctx:
        for case in read_real_ref():
            want = model.detokenize([t for t in case["greedy"] if not model.is_eog(t)])
            assert want.startswith("BEEP BOOP")   # what PEFT produced
            ctx.reset()
            assert ctx.generate(case["ids"], max_tokens=12, temperature=0, add_special=False) == want
    for q in ("Who invented basketball?", "How do I bake bread?"):
        tuned = model.chat(q, adapters=[robot], max_tokens=12, temperature=0)
        plain = model.chat(q, max_tokens=12, temperature=0)
        assert tuned.startswith("BEEP BOOP"), tuned
        assert "BEEP" not in plain, plain


@pytest.mark.parametrize("n_threads", [1, 2])
def test_real_adapter_token_by_token_equals_one_pass(model, n_threads):
    # Decoding one token at a time takes the fused path on AVX-512 (the deltas added as the x16 product stores each
    # group of rows, matmul.c); a prompt in one pass adds them after its rows. The logits must be the same bits.
    robot = model.load_adapter(REAL)
    ids = read_real_ref()[0]["ids"]
    with model.context(adapters=[robot], n_threads=n_threads) as ctx:
        ctx.eval(ids)
        whole = list(ctx.logits)
        ctx.reset()
        for t in ids:
            ctx.eval([t])
        assert list(ctx.logits) == whole
