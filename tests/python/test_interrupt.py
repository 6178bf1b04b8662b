"""Ctrl-C: SIGINT sent to a process running a long generation raises KeyboardInterrupt within about one
token, and the Context is usable afterwards.

A process started with SIGINT ignored (`nohup`, a CI runner, cron) hands that disposition to its children and
Python keeps it, so Ctrl-C would never arrive: the subprocess and the in-process test install Python's own
handler first, as an interactive session has it."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent("""
    import signal, sys, time
    import pocketlm

    signal.signal(signal.SIGINT, signal.default_int_handler)

    model = pocketlm.Model(n_threads=1)
    mode = sys.argv[1]
    print("ready", flush=True)
    try:
        if mode == "stream":
            for i, piece in enumerate(model.stream("Once upon a time", max_tokens=0, ignore_eos=True, seed=1)):
                if i == 3:
                    print("streaming", flush=True)
        else:  # a long prompt: the interrupt lands inside one C call (the prompt's evaluation)
            print("streaming", flush=True)
            model.generate("hello world " * 1500, max_tokens=1)
        print("finished without interruption", flush=True)
    except KeyboardInterrupt:
        print("interrupted %.6f" % time.monotonic(), flush=True)
    print("after:", repr(model.generate("The capital of France is", max_tokens=4, temperature=0)), flush=True)
""")


@pytest.mark.parametrize("mode", ["stream", "prefill"])
def test_sigint_raises_keyboard_interrupt_quickly(tmp_path, mode):
    script = tmp_path / "long_run.py"
    script.write_text(SCRIPT)
    p = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert p.stdout.readline().strip() == "ready"
        assert p.stdout.readline().strip() == "streaming"
        time.sleep(0.3)                      # well inside the generation / the prompt's evaluation
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    lines = out.splitlines()
    interrupted = [l for l in lines if l.startswith("interrupted")]
    assert interrupted, out + err
    latency = float(interrupted[0].split()[1]) - sent
    # One token of this model takes a few milliseconds; allow for a loaded machine.
    assert latency < 1.0, latency
    assert "after: ' Paris.\\n\\n'" in lines[-1]


def test_interrupt_inside_a_c_call_leaves_the_context_as_it_was(model, python_sigint_handler):
    """In-process: an interrupt that lands during a long eval cancels it between layers; nothing is cached."""
    import _thread
    import threading

    tokens = (list(model.tokenize("hello world ")) * 400)[:800]
    with model.context(n_ctx=1024) as c:
        c.eval(tokens[:8])
        timer = threading.Timer(0.2, _thread.interrupt_main)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            c.eval(tokens[8:])
        timer.join()
        assert time.monotonic() - t0 < 3.0
        assert c.n_tokens == 8 and pocketlm_kv_len(c) == 8
        assert c.generate("The capital of France is", max_tokens=2, temperature=0) == " Paris."


def pocketlm_kv_len(ctx):
    from pocketlm import _core

    return _core.kv_seq_pos_max(ctx._h, 0) + 1


def test_abandoned_stream_frees_the_context_for_other_threads(model):
    import threading

    with model.context(n_ctx=256) as c:
        s = c.stream("The capital of France is", max_tokens=16, temperature=0)
        assert next(s) == " Paris"
        del s                                   # dropped unfinished
        out = []
        t = threading.Thread(target=lambda: out.append(c.generate("The capital of France is", max_tokens=2,
                                                                  temperature=0)))
        t.start()
        t.join(timeout=30)
        assert out == [" Paris."]
