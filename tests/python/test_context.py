"""The lower-level Context: eval, logits of every position, sampling, state, reset, lifetime."""

import pickle

import numpy as np
import pytest

import pocketlm

PROMPT = "The capital of France is"


def test_eval_then_logits(model, ctx):
    toks = model.tokenize(PROMPT)
    ctx.eval(toks)
    assert ctx.n_tokens == len(toks) and list(ctx.tokens) == list(toks)
    logits = np.asarray(ctx.logits)
    assert model.token_to_piece(int(logits.argmax())) == b" Paris"


def test_logits_all_matches_token_by_token(model):
    toks = model.tokenize(PROMPT)
    with model.context(n_ctx=64) as a, model.context(n_ctx=64) as b:
        a.eval(toks, logits_all=True)
        rows = [np.array(a.logits_at(i)) for i in range(len(toks))]
        np.testing.assert_array_equal(np.asarray(a.logits_at(-1)), rows[-1])
        np.testing.assert_array_equal(np.asarray(a.logits), rows[-1])
        for i, t in enumerate(toks):
            b.eval([t])
            np.testing.assert_allclose(np.asarray(b.logits), rows[i], rtol=1e-3, atol=1e-3)
            assert int(np.asarray(b.logits).argmax()) == int(rows[i].argmax())
        with pytest.raises(IndexError):
            a.logits_at(-len(toks) - 1)
        b.eval(toks[:2])                      # only the last of these has logits
        with pytest.raises(pocketlm.InvalidArgumentError):
            b.logits_at(0)


def test_greedy_token_loop_by_hand_matches_generate(model, ctx):
    toks = list(model.tokenize(PROMPT))
    ctx.eval(toks)
    out = []
    for _ in range(8):
        t = ctx.sample(temperature=0)
        out.append(t)
        ctx.eval([t])
    assert model.detokenize(out) == model.generate(PROMPT, max_tokens=8, temperature=0)


def test_sampler_object(model, ctx):
    ctx.eval(model.tokenize(PROMPT))
    greedy = pocketlm.Sampler(model, temperature=0)
    assert greedy.sample(ctx.logits) == int(np.asarray(ctx.logits).argmax())
    s1 = pocketlm.Sampler(model, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    s2 = pocketlm.Sampler(model, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    picks = [s1.sample(ctx.logits) for _ in range(20)]
    assert picks == [s2.sample(ctx.logits) for _ in range(20)]
    assert len(set(picks)) > 1
    s1.reset()
    assert [s1.sample(ctx.logits) for _ in range(20)] == picks
    with pytest.raises(ValueError):
        greedy.sample([0.0, 1.0])
    assert greedy.sample(np.asarray(ctx.logits).tolist()) == greedy.sample(ctx.logits)


def test_save_and_load_state(model, ctx):
    toks = model.tokenize(PROMPT)
    ctx.eval(toks)
    state = ctx.save_state()
    expected = np.array(ctx.logits)
    ctx.eval(model.tokenize(" Paris. And the capital of Spain is"))
    assert ctx.n_tokens > len(toks)
    ctx.load_state(state)
    assert list(ctx.tokens) == list(toks)
    np.testing.assert_array_equal(np.asarray(ctx.logits), expected)
    # A state moves to another context (through pickle too).
    state2 = pickle.loads(pickle.dumps(state))
    with model.context(n_ctx=64) as other:
        other.load_state(state2)
        assert list(other.tokens) == list(toks)
        np.testing.assert_array_equal(np.asarray(other.logits), expected)
        assert other.generate(toks, max_tokens=4, temperature=0) == ctx.generate(toks, max_tokens=4, temperature=0)


def test_state_is_the_c_cache(model, ctx):
    toks = model.tokenize(PROMPT)
    ctx.eval(toks)
    state = ctx.save_state()
    assert len(state) == len(toks) and state.nbytes > 0 and "bytes" in repr(state)
    expected = np.array(ctx.logits)
    with model.context(n_ctx=64) as other:
        other.eval(model.tokenize("Something else entirely, longer than the prompt"))
        other.load_state(state)                 # replaces the cache: nothing is evaluated
        assert list(other.tokens) == list(toks)
        np.testing.assert_array_equal(np.asarray(other.logits), expected)
        # a damaged state is refused and leaves the context as it was
        bad = bytearray(state.data)
        bad[0] ^= 0xFF
        with pytest.raises(pocketlm.FormatError):
            other.load_state(pocketlm.State(state.tokens, bytes(bad), state.n_logits, state.last_batch))
        with pytest.raises(pocketlm.FormatError):
            other.load_state(pocketlm.State(state.tokens, bytes(state.data[:-5]), state.n_logits, state.last_batch))
        assert list(other.tokens) == list(toks)
        np.testing.assert_array_equal(np.asarray(other.logits), expected)
    with model.context(n_ctx=4) as tiny:
        with pytest.raises(pocketlm.ContextFullError):
            tiny.load_state(state)
    with pytest.raises(TypeError):
        ctx.load_state(b"not a state")


def test_sampler_vocabulary_from_c(model, ctx):
    s = pocketlm.Sampler(model, temperature=0)
    assert s.n_vocab == model.n_vocab == pocketlm._core.sampler_n_vocab(s._h)
    with pytest.raises(pocketlm.InvalidArgumentError, match="expected 49152 logits"):
        pocketlm._core.sampler_sample_logits(s._h, [0.0] * 7)   # the C helper checks too


def test_reset(model, ctx):
    ctx.eval(model.tokenize(PROMPT))
    ctx.reset()
    assert ctx.n_tokens == 0 and len(ctx.tokens) == 0
    ctx.eval(model.tokenize(PROMPT))
    assert model.token_to_piece(ctx.sample(temperature=0)) == b" Paris"


def test_context_manager_and_close(model):
    with model.context(n_ctx=32) as c:
        assert not c.closed and "Context" in repr(c)
    assert c.closed and "closed" in repr(c)
    c.close()                                 # twice is fine
    with pytest.raises(ValueError):
        c.eval([1])
    with pytest.raises(ValueError):
        c.logits


def test_n_threads(model):
    with model.context(n_ctx=32, n_threads=1) as c:
        assert c.n_threads == 1 and c.n_ctx == 32
        c.n_threads = 2
        assert c.n_threads == 2


def test_memory_budget_refuses_an_oversized_context_up_front(model):
    # SmolLM2's KV cache is 23,040 bytes a cell: 4096 cells need more than 90 MiB, 64 cells about 1.4 MiB.
    with pytest.raises(pocketlm.OutOfMemoryError) as e:
        model.context(n_ctx=4096, memory_budget=64 << 20)
    msg = str(e.value)
    assert "context needs" in msg and "for n_ctx=4096" in msg
    assert "but the memory budget is 64.0 MiB (plm_context_params.memory_budget)" in msg
    assert isinstance(e.value, MemoryError)
    with model.context(n_ctx=64, memory_budget=64 << 20) as c:   # a small one fits the same budget
        c.eval(model.tokenize("The capital of France is"))
        assert int(np.asarray(c.logits).argmax()) == 7042       # " Paris"
    # the automatic budget (the machine's memory) refuses the largest n_ctx; past it is an argument error
    with pytest.raises(pocketlm.OutOfMemoryError, match="the machine's memory"):
        model.context(n_ctx=1 << 24)
    with pytest.raises(pocketlm.InvalidArgumentError, match=r"n_ctx must be in \[0, 16777216\]"):
        model.context(n_ctx=(1 << 24) + 1)
    with pytest.raises(pocketlm.InvalidArgumentError, match="memory_budget"):
        model.context(n_ctx=64, memory_budget=-1)


def test_contexts_keep_a_closed_model_alive(model_path):
    m = pocketlm.Model(model_path, n_threads=1)
    toks = m.tokenize("The capital of France is")
    c = m.context(n_ctx=64)
    m.close()
    assert m.closed
    with pytest.raises(ValueError):
        m.tokenize("x")
    c.eval(toks)                               # the weights are still there for the context
    assert int(np.asarray(c.logits).argmax()) == 7042   # " Paris"
    c.close()


def test_repack_false_gives_the_same_logits(model, model_path):
    """Model(repack=False) keeps every weight where the file has it; the default rearranges the ones the CPU's
    kernels read faster in their own layout (info.n_repacked bytes: the Q4_1 layer weights and the tied Q8_0 token
    embeddings with AVX-512, all but the norms; nothing with the other kernel tables). The logits are the same bits either way, prompt and single steps."""
    plain = pocketlm.Model(model_path, n_threads=2, repack=False)
    assert plain.info.n_repacked == 0
    if pocketlm.kernels_name() == "avx512":
        assert plain.info.n_bytes // 100 * 99 < model.info.n_repacked < model.info.n_bytes
    else:
        assert model.info.n_repacked == 0
    toks = model.tokenize(PROMPT)
    with model.context(n_ctx=64, n_threads=2) as a, plain.context(n_ctx=64, n_threads=2) as b:
        a.eval(toks, logits_all=True)
        b.eval(toks, logits_all=True)
        for i in range(len(toks)):
            np.testing.assert_array_equal(np.asarray(a.logits_at(i)), np.asarray(b.logits_at(i)))
        for t in (1, 2, 3):
            a.eval([t])
            b.eval([t])
            np.testing.assert_array_equal(np.asarray(a.logits), np.asarray(b.logits))
    plain.close()
    with pytest.raises(TypeError):
        pocketlm.Model(model_path, repack=False, no_such_option=1)


def test_distributed_workers_keep_the_file_layout(model_path):
    """pocketlm.distributed's workers load the model with repack=False, so that the worker processes of a machine
    share the file's mapped pages (docs/distributed.md); repack=True there is the caller's choice."""
    from pocketlm import distributed
    m = distributed.load_model(model_path, n_threads=1)
    assert m.info.n_repacked == 0
    assert distributed.load_model(model_path, n_threads=1) is m        # once per process
    if pocketlm.kernels_name() == "avx512":
        assert distributed.load_model(model_path, n_threads=1, repack=True).info.n_repacked > 0
