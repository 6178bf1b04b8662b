"""The interpreter lock is released while C computes: contexts on one model run in parallel threads."""

import threading
import time


PROMPTS = ["The capital of France is", "Once upon a time, there was a little"]


def _greedy(ctx, prompt):
    return ctx.generate(prompt, max_tokens=24, temperature=0)


def test_two_threads_two_contexts_match_sequential(model):
    sequential = []
    for p in PROMPTS:
        with model.context(n_ctx=256) as c:
            sequential.append(_greedy(c, p))

    results = [None, None]
    spans = [None, None]
    errors = []
    barrier = threading.Barrier(2)

    def work(i):
        try:
            with model.context(n_ctx=256) as c:
                barrier.wait()
                t0 = time.monotonic()
                results[i] = _greedy(c, PROMPTS[i])
                spans[i] = (t0, time.monotonic())
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == sequential
    # The two generations overlapped in time.
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]


def test_the_lock_is_released_during_a_long_call(model):
    """While one C call runs for a long time in a thread, the main thread keeps running Python."""
    tokens = (list(model.tokenize("the quick brown fox jumps over the lazy dog ")) * 30)[:256]
    with model.context(n_ctx=512) as c:
        done = threading.Event()
        t_call = []

        def work():
            t0 = time.monotonic()
            c.eval(tokens)
            t_call.append(time.monotonic() - t0)
            done.set()

        t = threading.Thread(target=work)
        t.start()
        gaps, last, ticks = [], time.monotonic(), 0
        while not done.is_set():
            sum(range(200))
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            ticks += 1
        t.join()
        # If the lock were held, the main thread would stall for the whole call.
        assert ticks > 100
        assert max(gaps) < max(0.5, 0.5 * t_call[0]), (max(gaps), t_call[0])


def test_one_context_from_two_threads_is_serialized(model):
    """Calls on one Context from two threads take turns; each gets a correct answer."""
    with model.context(n_ctx=256) as c:
        expected = [_greedy(c, p) for p in PROMPTS]
        results = {}
        errors = []

        def work(i):
            try:
                for _ in range(2):
                    results.setdefault(i, []).append(_greedy(c, PROMPTS[i]))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert results == {0: [expected[0]] * 2, 1: [expected[1]] * 2}


def test_streams_in_two_threads_on_one_context_take_turns(model):
    with model.context(n_ctx=256) as c:
        expected = _greedy(c, PROMPTS[0])
        order = []

        def work(tag):
            pieces = []
            for piece in c.stream(PROMPTS[0], max_tokens=24, temperature=0):
                order.append(tag)
                pieces.append(piece)
            results[tag] = "".join(pieces)

        results = {}
        threads = [threading.Thread(target=work, args=(k,)) for k in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {"a": expected, "b": expected}
        # One whole stream, then the other: never interleaved.
        first = order[0]
        switch = order.index("b" if first == "a" else "a")
        assert all(x == first for x in order[:switch]) and all(x != first for x in order[switch:])
