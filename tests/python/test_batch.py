"""Many prompts at once (Model.generate_many / stream_many / chat_many, pocketlm.Batch) on the default model: each
output equals the one-at-a-time generate()/chat() (greedy and seeded, 64 prompts of different lengths at parallel 16),
streams add up to the texts, per-item options, a prompt that can never fit fails alone, Ctrl-C cancels and leaves the
model usable."""

import os
import threading
import time
import _thread

import pytest

import pocketlm

TOPICS = ["the sea", "a red bicycle", "bread", "the moon", "winter", "a small dog", "chess", "rain in the city",
          "an old library", "coffee", "mountains", "a train journey", "the color blue", "gardening", "a lost key",
          "music"]
FORMS = ["Write one sentence about {}.", "Here is a short story about {}. Once upon a time,",
         "Q: What is the most important thing about {}?\nA:",
         "List three words related to {}, separated by commas, and explain why each of them fits:"]


# Under the sanitizers (make python-test-asan sets POCKETLM_TEST_QUICK=1) the equality tests take 24 prompts, still
# more than the 16 running at once: the same code paths, a third of the tokens (64 there took 11 of its 26 minutes).
N_PROMPTS = 24 if os.environ.get("POCKETLM_TEST_QUICK") == "1" else 64


def prompts(n=N_PROMPTS):
    return [FORMS[(i // 16) % 4].format(TOPICS[i % 16]) + " Be precise." * (i % 5) for i in range(n)]


def test_generate_many_greedy_equals_generate(model):
    ps = prompts()
    many = model.generate_many(ps, max_tokens=12, temperature=0, parallel=16, progress=False)
    one = [model.generate(p, max_tokens=12, temperature=0) for p in ps]
    assert many == one
    assert len(set(many)) > len(ps) // 2   # the prompts really differ


def test_generate_many_seeded_equals_generate(model):
    ps = prompts()
    many = model.generate_many(ps, max_tokens=10, temperature=0.8, seed=7, parallel=16, progress=False)
    one = [model.generate(p, max_tokens=10, temperature=0.8, seed=7) for p in ps]
    assert many == one
    # a different seed gives different texts: the seed is really used
    other = model.generate_many(ps[:16], max_tokens=10, temperature=0.8, seed=8, parallel=16, progress=False)
    assert other != many[:16]


def test_per_item_options_stops_and_stream_many(model):
    ps = prompts(24)
    items = [{"prompt": p, "max_tokens": 3 + i % 9, "stop": [".", ","] if i % 2 else None} for i, p in enumerate(ps)]
    many = model.generate_many(items, temperature=0, parallel=8, progress=False)
    one = [model.generate(p, max_tokens=3 + i % 9, temperature=0, stop=[".", ","] if i % 2 else None)
           for i, p in enumerate(ps)]
    assert many == one
    streamed = [""] * len(items)
    for i, piece in model.stream_many(items, temperature=0, parallel=8):
        assert isinstance(piece, str) and piece
        streamed[i] += piece
    assert streamed == many


def test_chat_many_equals_chat(model):
    convs = [[{"role": "user", "content": f"Name one fact about {t}."}] for t in TOPICS[:10]]
    many = model.chat_many(convs, max_tokens=16, temperature=0, parallel=5, progress=False)
    one = [model.chat(c, max_tokens=16, temperature=0) for c in convs]
    assert many == one


def test_a_prompt_that_cannot_fit_fails_alone(model):
    ps = ["The capital of France is", "word " * 5000, "The capital of Italy is"]
    with pytest.raises(pocketlm.ContextFullError, match="request 1") as e:
        model.generate_many(ps, max_tokens=2, temperature=0, progress=False)
    assert e.value.results == [" Paris.", None, " Rome."]
    assert model.generate_many(ps, max_tokens=2, temperature=0, progress=False, errors="none") == \
        [" Paris.", None, " Rome."]


def test_bad_arguments(model):
    with pytest.raises(TypeError, match="list of prompts"):
        model.generate_many("one prompt")
    with pytest.raises(TypeError, match="temprature"):
        model.generate_many(["a"], temprature=0)
    with pytest.raises(TypeError, match="'prompt' key"):
        model.generate_many([{"text": "a"}])
    with pytest.raises(ValueError, match="parallel"):
        model.generate_many(["a"], parallel=0)
    with pytest.raises(pocketlm.InvalidArgumentError, match="top_p"):
        model.generate_many(["a"], top_p=-1, progress=False)


def test_batch_step_by_step(model):
    with pocketlm.Batch(model, parallel=2, n_ctx=512) as b:
        a = b.submit("The capital of France is", max_tokens=3, temperature=0)
        c = b.submit("The capital of Italy is", max_tokens=3, temperature=0)
        d = b.submit("Once upon a time", max_tokens=50, temperature=0)
        text = {a: "", c: ""}
        while b.result(a).stop_reason is None or b.result(c).stop_reason is None:
            for i, piece in b.step():
                if i in text:
                    text[i] += piece
        b.cancel(d)
        assert b.result(d).stop_reason == "caller" and b.n_left == 0
        ra = b.result(a)
        assert ra.text == text[a] == model.generate("The capital of France is", max_tokens=3, temperature=0)
        assert ra.stop_reason == "length" and ra.n_generated == 3 and len(b.tokens(a)) == 3
    assert b.closed


def test_ctrl_c_cancels_and_leaves_the_model_usable(model, python_sigint_handler):
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        # 32 x 400 tokens: tens of seconds, so the interrupt lands mid-run; finite, so a lost one fails, not hangs
        model.generate_many(prompts(32), max_tokens=400, ignore_eos=True, parallel=16, progress=False)
    timer.join()
    assert time.monotonic() - t0 < 10
    assert model.generate("The capital of France is", max_tokens=2, temperature=0) == " Paris."
