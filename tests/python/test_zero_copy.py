"""Logits and tokens cross between C and Python without copies, and views keep their owner alive."""

import array
import ctypes
import gc
import threading
import time
import weakref

import numpy as np
import pytest

import pocketlm
from pocketlm import _core

PROMPT = "The capital of France is"


def test_logits_view_shares_the_c_buffer(model, ctx):
    ctx.eval(model.tokenize(PROMPT))
    view = ctx.logits
    c_pointer = int(_core.context_logits(ctx._h, -1))     # the float* plm_context_logits returns
    assert isinstance(view, pocketlm.Buffer)
    assert view.address == c_pointer
    a = np.asarray(view)
    assert a.dtype == np.float32 and a.shape == (model.n_vocab,)
    assert a.ctypes.data == c_pointer
    assert np.shares_memory(a, np.asarray(ctx.logits))
    assert not a.flags.owndata


def test_memoryview_without_numpy(model, ctx):
    ctx.eval(model.tokenize(PROMPT))
    view = ctx.logits
    mv = memoryview(view)
    assert mv.format == "f" and mv.itemsize == 4 and mv.shape == (model.n_vocab,)
    assert not mv.readonly and mv.c_contiguous
    assert mv.obj is view
    assert mv[123] == view[123] == pytest.approx(float(np.asarray(view)[123]))
    assert len(view) == model.n_vocab and view.nbytes == 4 * model.n_vocab


def test_c_side_changes_are_visible_through_the_view(model, ctx):
    toks = model.tokenize(PROMPT)
    ctx.eval(toks[:-1])
    view = ctx.logits
    a = np.asarray(view)
    before = a.copy()
    ctx.eval(toks[-1:])                       # C writes the new logits into the same memory
    assert ctx.logits.address == view.address
    assert not np.array_equal(before, a)
    np.testing.assert_array_equal(a, np.asarray(ctx.logits))
    # A write through the raw C pointer is seen by every view.
    ctypes.cast(view.address, ctypes.POINTER(ctypes.c_float))[7] = 1234.5
    assert view[7] == 1234.5 and a[7] == 1234.5 and memoryview(view)[7] == 1234.5


def test_python_writes_are_seen_by_c(model, ctx):
    ctx.eval(model.tokenize(PROMPT))
    a = np.asarray(ctx.logits)
    assert ctx.sample(temperature=0) == int(a.argmax())
    a[:] = -np.inf
    a[4242] = 0.0                             # only token 4242 remains possible
    assert ctx.sample(temperature=0) == 4242
    assert ctx.sample(temperature=1.0, seed=1) == 4242


def test_view_keeps_its_owner_alive(model):
    c = model.context(n_ctx=64)
    c.eval(model.tokenize(PROMPT))
    view = c.logits
    arr = np.asarray(view)
    expected = arr.copy()
    handle = weakref.ref(c._h)
    del c
    gc.collect()
    assert handle() is not None               # the C context lives on for the views
    np.testing.assert_array_equal(arr, expected)
    del view
    gc.collect()
    assert handle() is not None               # the numpy array alone keeps it too
    assert float(arr[0]) == float(expected[0])
    del arr
    gc.collect()
    assert handle() is None                   # and the last view frees it


def test_closed_context_memory_stays_valid_for_views(model):
    c = model.context(n_ctx=64)
    c.eval(model.tokenize(PROMPT))
    arr = np.asarray(c.logits)
    expected = arr.copy()
    c.close()
    with pytest.raises(ValueError):
        c.eval([1])
    np.testing.assert_array_equal(arr, expected)


def test_growing_the_logits_buffer_is_refused_while_views_live(model, ctx):
    toks = model.tokenize(PROMPT)
    ctx.eval(toks)
    view = ctx.logits
    with pytest.raises(BufferError):
        ctx.eval(toks, logits_all=True)      # C would reallocate the buffer under the view
    assert ctx.n_tokens == len(toks)           # nothing was evaluated
    del view
    gc.collect()
    ctx.eval(toks, logits_all=True)
    assert ctx.n_tokens == 2 * len(toks)


def test_tokens_are_a_buffer_owning_the_c_array(model):
    toks = model.tokenize("Hello world")
    assert isinstance(toks, pocketlm.Buffer)
    assert toks == [19556, 905] and list(toks) == [19556, 905] and toks.tolist() == [19556, 905]
    assert toks.owner is None                 # it owns the array C wrote
    a = np.asarray(toks)
    assert a.dtype == np.int32 and a.ctypes.data == toks.address
    assert memoryview(toks).format == "i"
    assert toks[1:].address == toks.address + 4 and toks[1:] == [905]   # slices are views too
    assert toks[-1] == 905


@pytest.mark.parametrize("make", [
    lambda t: t,                                   # pocketlm.Buffer
    lambda t: np.asarray(t, dtype=np.int32),       # numpy int32: read in place
    lambda t: array.array("i", t),                 # array('i'): read in place
    lambda t: list(t),                             # lists are converted
    lambda t: tuple(t),
    lambda t: np.asarray(t, dtype=np.int64),       # other integer types are converted
])
def test_token_inputs(model, make):
    toks = model.tokenize(PROMPT)
    assert model.detokenize(make(toks)) == PROMPT
    with model.context(n_ctx=64) as c:
        c.eval(make(toks))
        assert list(c.tokens) == list(toks)


def test_input_buffer_is_held_by_c_during_the_call(model):
    """The tokens of a long decode are read in place while the lock is released: the exporter cannot be
    resized until the C call is over (pybuffer.i would have released it before the call)."""
    arr = array.array("i", (list(model.tokenize("the quick brown fox jumps over the lazy dog ")) * 60)[:256])
    with model.context(n_ctx=512) as c:
        done = threading.Event()

        def work():
            try:
                _core.decode(c._h, arr, 0, False)
            finally:
                done.set()

        t = threading.Thread(target=work)
        t.start()
        blocked = False
        while not done.is_set():
            try:
                arr.append(0)
                arr.pop()
            except BufferError:
                blocked = True
                break
            time.sleep(0.0005)
        t.join()
        assert blocked, "the C call did not hold the input buffer"
        arr.append(0)                        # released after the call
        assert _core.kv_seq_pos_max(c._h, 0) == 255


def test_bad_token_inputs(model):
    with pytest.raises(TypeError):
        model.detokenize("not tokens")
    with pytest.raises(TypeError):
        model.detokenize([1.5, 2.0])
    with pytest.raises(ValueError):
        model.detokenize(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(pocketlm.InvalidArgumentError):
        model.detokenize([model.n_vocab + 5])


def test_buffer_reads_like_a_sequence(model, ctx):
    ctx.eval(model.tokenize(PROMPT))
    view = ctx.logits
    view[0] = 2.5
    assert view[0] == 2.5
    view[1:3] = [1.0, -1.0]
    assert view[1:3].tolist() == [1.0, -1.0]
    assert view[0:6:2] == [2.5, -1.0, view[4]]
    with pytest.raises(IndexError):
        view[model.n_vocab]
    assert "float32" in repr(view)
    assert sum(1 for _ in view[:10]) == 10
