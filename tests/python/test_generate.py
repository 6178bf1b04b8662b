"""Generation through the C token loop: greedy output equal to the C CLI's, streams, stops, seeds, processors."""

import os
import shutil
import subprocess

import numpy as np
import pytest

import pocketlm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT = "The capital of France is"


def _c_cli():
    exe = os.path.join(ROOT, "build", "pocketlm")
    if not os.path.exists(exe) and shutil.which("make"):
        subprocess.run(["make", "-s", "-C", ROOT, "build/pocketlm"], check=False, capture_output=True)
    if not os.path.exists(exe):
        pytest.skip("the C CLI (build/pocketlm) is not built and `make` could not build it")
    return exe


def test_greedy_equals_the_c_cli(model_path):
    # One thread on both sides only to keep a busy machine quick: the output does not depend on it.
    out = subprocess.run([_c_cli(), "generate", "-p", PROMPT, "-n", "16", "-t", "1"], capture_output=True,
                         check=True).stdout.decode("utf-8")
    assert out.endswith("\n")
    expected = out[:-1]                         # the CLI ends its output with a newline
    assert pocketlm.Model(n_threads=1).generate(PROMPT, max_tokens=16, temperature=0) == expected


def test_stream_pieces_join_to_generate(model):
    text = model.generate(PROMPT, max_tokens=24, temperature=0)
    stream = model.stream(PROMPT, max_tokens=24, temperature=0)
    pieces = list(stream)
    assert "".join(pieces) == text
    assert all(isinstance(p, str) and p for p in pieces)
    assert stream.stop_reason == "length" and len(stream.tokens) == 24


def test_utf8_pieces_are_whole_characters(model):
    """Emoji take several tokens; pieces never split a character (each decodes on its own exactly as the
    whole text does)."""
    s = model.stream("Les élèves français écrivent: « Bonjour, ça va? » 😀", max_tokens=32, temperature=0.9, seed=3)
    pieces = list(s)
    assert "".join(pieces) == model.detokenize(s.tokens)
    assert sum(p.count("😀") for p in pieces) >= 1


def test_stop_strings(model):
    full = model.generate(PROMPT, max_tokens=16, temperature=0)      # ' Paris.\n\nThe United States ...'
    s = model.stream(PROMPT, max_tokens=16, temperature=0, stop=["United"])
    text = "".join(s)
    assert s.stop_reason == "stop"
    assert text == full[:full.index("United")]
    assert model.generate(PROMPT, max_tokens=16, temperature=0, stop="\n\n") == " Paris."


def test_max_tokens(model):
    s = model.stream(PROMPT, max_tokens=3, temperature=0)
    assert "".join(s) == " Paris.\n" and len(s.tokens) == 3


def test_seed_makes_sampling_reproducible(model):
    a = model.generate("Once upon a time", max_tokens=20, temperature=1.0, seed=42)
    b = model.generate("Once upon a time", max_tokens=20, temperature=1.0, seed=42)
    c = model.generate("Once upon a time", max_tokens=20, temperature=1.0, seed=43)
    assert a == b
    assert a != c


def test_logits_processor_edits_logits_in_place(model):
    banned = list(model.tokenize(" Paris"))
    calls = []

    def ban(tokens, logits):
        calls.append(len(tokens))
        arr = np.asarray(logits)              # the C buffer itself
        arr[banned] = -np.inf

    text = model.generate(PROMPT, max_tokens=8, temperature=0, logits_processor=ban)
    assert not text.startswith(" Paris")
    n_prompt = len(model.tokenize(PROMPT))
    assert calls[:3] == [n_prompt, n_prompt + 1, n_prompt + 2]   # prompt + generated so far


def test_logits_processor_may_return_new_logits(model):
    forced = model.tokenize(" Lyon")[0]

    def force(tokens, logits):
        out = np.full(len(logits), -1e9, dtype=np.float32)
        out[forced] = 0.0
        return out

    assert model.generate(PROMPT, max_tokens=3, temperature=0, logits_processor=force) == " Lyon" * 3


def test_logit_bias(model):
    paris = model.tokenize(" Paris")[0]
    assert not model.generate(PROMPT, max_tokens=2, temperature=0, logit_bias={paris: -100.0}).startswith(" Paris")


def test_cache_prefix_is_reused(model):
    with model.context(n_ctx=256) as c:
        s = c.stream(PROMPT, max_tokens=4, temperature=0)
        first = "".join(s)
        assert s.n_prompt == len(model.tokenize(PROMPT))
        s2 = c.stream(PROMPT + first, max_tokens=4, temperature=0)
        "".join(s2)
        assert s2.n_prompt <= 2                  # only what was not cached yet is evaluated


def test_unfinished_stream_is_ended_by_the_next_call(model):
    with model.context(n_ctx=256) as c:
        s = c.stream(PROMPT, max_tokens=16, temperature=0)
        assert next(s) == " Paris"
        assert c.generate(PROMPT, max_tokens=2, temperature=0) == " Paris."   # same thread: supersedes
        with pytest.raises(RuntimeError):
            next(s)


def test_generate_from_tokens(model):
    toks = model.tokenize(PROMPT)
    assert model.generate(np.asarray(toks), max_tokens=4, temperature=0) == model.generate(PROMPT, max_tokens=4,
                                                                                           temperature=0)
