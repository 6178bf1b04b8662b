"""Every public entry point checks its numbers at the call: a wrong type is a TypeError, a value out of range an
InvalidArgumentError (also a ValueError), both naming the parameter; no SWIG OverflowError/TypeError text reaches the
user. The same for the command line's options (exit status 2, one line, no traceback). And one meaning of
``max_tokens <= 0``: until the context is full."""

import io
import math
import os
import subprocess
import sys

import pytest

import pocketlm
from pocketlm import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BIG = (2 ** 31, 2 ** 63, -(2 ** 31) - 1, -(2 ** 63) - 1)      # outside any int32 field
WRONG_INT_TYPES = (True, False, 2.5, 8.0, "8", b"8", [1], math.nan)
WRONG_FLOAT_TYPES = (True, "0.5", b"1", [0.5])
BAD_FLOATS = (math.nan, math.inf, -math.inf, 1e39, -1e39, 2 ** 200)   # not a finite C float

# Each int parameter: (None allowed?, out-of-range values beyond BIG). Ranges come from C: n_ctx [0, PLM_N_CTX_MAX],
# n_threads [0, PLM_N_THREADS_MAX], n_seq_max [1, PLM_N_SEQ_MAX], n_batch >= 1, penalty_last_n [-1, 1 << 20].
CONTEXT_INTS = {
    "n_ctx": (True, (-1, -5, 2 ** 24 + 1, 2 ** 40)),
    "n_threads": (True, (-1, 513, 10 ** 6)),
    "n_batch": (True, (0, -1)),
    "n_seq_max": (True, (0, -1, 65)),
    "memory_budget": (True, (-1, 2 ** 64)),
}
SAMPLING_INTS = {
    "top_k": (True, ()),
    "penalty_last_n": (True, (-2, (1 << 20) + 1)),
}
SAMPLING_FLOATS = {   # C's own ranges, beyond "a finite C float"
    "temperature": (),
    "top_p": (-0.5,),
    "min_p": (1.5,),
    "repeat_penalty": (0.0, -1.0),
    "frequency_penalty": (),
    "presence_penalty": (),
}
GENERATE_INTS = {"max_tokens": (True, ())}
SEED_OUT = (2 ** 64, -(2 ** 63) - 1)


def _int_cases(spec):
    for name, (none_ok, out) in spec.items():
        for v in WRONG_INT_TYPES + (() if none_ok else (None,)):
            yield name, v, TypeError
        for v in out + BIG:
            if name == "memory_budget" and 0 < v < 2 ** 64:
                continue   # a size_t: 2**31 and 2**63 are in range (a context that large is an OutOfMemoryError)
            yield name, v, pocketlm.InvalidArgumentError


def _float_cases(spec):
    for name, out in spec.items():
        for v in WRONG_FLOAT_TYPES:
            yield name, v, TypeError
        for v in BAD_FLOATS + out:
            yield name, v, pocketlm.InvalidArgumentError


def _seed_cases():
    for v in (True, 1.5, "1", math.nan):
        yield "seed", v, TypeError
    for v in SEED_OUT:
        yield "seed", v, pocketlm.InvalidArgumentError


SAMPLING_CASES = list(_int_cases(SAMPLING_INTS)) + list(_float_cases(SAMPLING_FLOATS)) + list(_seed_cases())
GENERATE_CASES = SAMPLING_CASES + list(_int_cases(GENERATE_INTS))
CONTEXT_CASES = list(_int_cases(CONTEXT_INTS))
MODEL_CASES = [c for c in CONTEXT_CASES if c[0] in ("n_ctx", "n_threads")]


def check_raises(call, name, value, exc):
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    assert name in msg, f"{name}={value!r}: the message does not name the parameter: {msg}"
    assert "in method" not in msg, msg   # no SWIG wrapper text
    if exc is pocketlm.InvalidArgumentError:
        assert isinstance(e.value, ValueError) and isinstance(e.value, pocketlm.Error)
        assert e.value.status_name == "PLM_ERR_ARG"
    return msg


# -- the matrix ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,value,exc", MODEL_CASES)
def test_model_checks_its_context_defaults_at_construction(model_path, name, value, exc):
    check_raises(lambda: pocketlm.Model(model_path, **{name: value}), name, value, exc)


@pytest.mark.parametrize("name,value,exc", CONTEXT_CASES)
def test_context_parameters(model, name, value, exc):
    check_raises(lambda: model.context(**{name: value}), name, value, exc)
    check_raises(lambda: pocketlm.Context(model, **{name: value}), name, value, exc)


@pytest.mark.parametrize("name,value,exc", GENERATE_CASES)
@pytest.mark.parametrize("entry", ["Model.generate", "Model.stream", "Model.chat", "Context.generate",
                                   "Context.stream"])
def test_generation_parameters(model, ctx, entry, name, value, exc):
    obj = model if entry.startswith("Model") else ctx
    fn = getattr(obj, entry.split(".")[1])
    prompt = [{"role": "user", "content": "Hi"}] if entry.endswith("chat") else "Hi"
    check_raises(lambda: fn(prompt, **{name: value}), name, value, exc)
    assert ctx.n_tokens == 0   # failed before anything was evaluated


@pytest.mark.parametrize("name,value,exc", SAMPLING_CASES)
def test_sampler_parameters(model, ctx, name, value, exc):
    check_raises(lambda: pocketlm.Sampler(model, **{name: value}), name, value, exc)
    ctx.eval(model.tokenize("Hi"))
    check_raises(lambda: ctx.sample(**{name: value}), name, value, exc)


TOKEN_CASES = [(v, TypeError) for v in WRONG_INT_TYPES + (None,)] + [(v, pocketlm.InvalidArgumentError) for v in BIG]


@pytest.mark.parametrize("value,exc", TOKEN_CASES)
def test_token_parameters(model, ctx, value, exc):
    check_raises(lambda: model.token_to_piece(value), "token", value, exc)
    check_raises(lambda: model.is_eog(value), "token", value, exc)
    s = pocketlm.Sampler(model)
    check_raises(lambda: s.accept(value), "token", value, exc)
    check_raises(lambda: pocketlm.Sampler(model, logit_bias=[(value, 1.0)]), "logit_bias", value, exc)
    ctx.eval(model.tokenize("Hi"))
    check_raises(lambda: ctx.logits_at(value), "i", value, exc)
    for kw in ("yes_token", "no_token") if value is not None else ():   # None: the tokens of " yes" / " no"
        check_raises(lambda: ctx.classify(model.tokenize("Hi"), [[1]], multi_label=True, **{kw: value}), kw, value,
                     exc)
    if value is not None:
        check_raises(lambda: model.detokenize([5, value]), "tokens[1]", value, exc)
        check_raises(lambda: ctx.eval([value]), "tokens[0]", value, exc)
        check_raises(lambda: model.generate([1, value]), "prompt[1]", value, exc)


@pytest.mark.parametrize("value", [math.nan, math.inf, True, "1"])
def test_logit_bias_values(model, value):
    exc = TypeError if isinstance(value, (bool, str)) else pocketlm.InvalidArgumentError
    check_raises(lambda: pocketlm.Sampler(model, logit_bias={5: value}), "logit_bias", value, exc)
    pocketlm.Sampler(model, logit_bias={5: -math.inf})   # -inf bans the token: allowed, as in C


@pytest.mark.parametrize("value,exc", [(v, TypeError) for v in WRONG_INT_TYPES + (None,)]
                         + [(v, pocketlm.InvalidArgumentError) for v in (0, -1) + BIG])
def test_batch_sizes_and_vocabulary_sizes(model, value, exc):
    check_raises(lambda: model.classify_many(["a"], ["x", "y"], batch_size=value, progress=False), "batch_size",
                 value, exc)
    check_raises(lambda: model.embed(["a"], batch_size=value), "batch_size", value, exc)
    check_raises(lambda: pocketlm.Sampler(value), "vocab", value, exc)


@pytest.mark.parametrize("value,exc", [(v, TypeError) for v in WRONG_INT_TYPES + (None,)]
                         + [(v, pocketlm.InvalidArgumentError) for v in (-1, 513) + BIG])
def test_thread_count_setter(ctx, value, exc):
    def set_threads():
        ctx.n_threads = value
    check_raises(set_threads, "n_threads", value, exc)


@pytest.mark.parametrize("kw,value,exc", [("max_iter", 0, pocketlm.InvalidArgumentError),
                                          ("max_iter", 2.5, TypeError), ("max_iter", True, TypeError),
                                          ("l2", -1.0, pocketlm.InvalidArgumentError),
                                          ("l2", math.nan, pocketlm.InvalidArgumentError),
                                          ("tol", math.inf, pocketlm.InvalidArgumentError),
                                          ("tol", "1e-5", TypeError)])
def test_linear_probe_parameters(model, kw, value, exc):
    pytest.importorskip("numpy")
    x = [[0.0, 1.0], [1.0, 0.0]]
    check_raises(lambda: pocketlm.LinearProbe.fit_embeddings(x, ["a", "b"], **{kw: value}), kw, value, exc)
    check_raises(lambda: pocketlm.LinearProbe.fit(model, ["a", "b"], ["x", "y"], **{kw: value}), kw, value, exc)


def test_text_that_is_not_text(model):
    for bad in (5, None, 2.5, ["a"]):
        check_raises(lambda: model.tokenize(bad), "text", bad, TypeError)


def test_good_values_still_work(model, ctx):
    """The checker accepts what it should: numpy integers, ints for floats, None for defaults, the edges."""
    np = pytest.importorskip("numpy")
    assert model.generate("The capital of France is", max_tokens=np.int64(2), temperature=0, top_k=np.int32(5),
                          top_p=1, seed=np.uint64(2 ** 64 - 1)) == " Paris."
    assert model.generate("The capital of France is", max_tokens=2, temperature=None, top_k=None, seed=-1,
                          penalty_last_n=-1, repeat_penalty=1.1) != ""
    with model.context(n_ctx=0, n_threads=0, n_seq_max=64, n_batch=1, memory_budget=0) as c:
        assert c.n_ctx == 4096
    s = pocketlm.Sampler(model.n_vocab, temperature=0, logit_bias=[(5, -math.inf), (np.int64(6), 1)])
    assert s.n_vocab == model.n_vocab
    assert pocketlm.sampling.DEFAULTS == dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                                              frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64)


# -- max_tokens <= 0 ----------------------------------------------------------------------------------------


def test_max_tokens_zero_or_negative_means_until_the_context_is_full(model):
    """The one meaning of max_tokens <= 0 (C header, Python, Lua, both command lines): no limit but the context."""
    prompt = "The capital of France is"
    with model.context(n_ctx=40) as c:
        n_prompt = len(model.tokenize(prompt))
        runs = {}
        for mt in (0, -1, -(2 ** 31)):
            s = c.stream(prompt, max_tokens=mt, ignore_eos=True, temperature=0)
            runs[mt] = "".join(s)
            assert s.stop_reason == "context_full", mt
            assert len(s.tokens) == 40 - n_prompt + 1, mt   # every cell filled; the last token is not evaluated
        assert runs[0] == runs[-1] == runs[-(2 ** 31)]
        s = c.stream(prompt, max_tokens=3, ignore_eos=True, temperature=0)
        assert runs[0].startswith("".join(s)) and s.stop_reason == "length" and len(s.tokens) == 3


def test_max_tokens_is_documented_everywhere():
    note = "<= 0"
    for doc in (pocketlm.Context.stream.__doc__, pocketlm.Model.generate.__doc__, pocketlm.Model.chat.__doc__):
        assert note in doc and "until the context is full" in doc
    help_text = subprocess.run([sys.executable, "-m", "pocketlm", "generate", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "<= 0: until the context is full" in " ".join(help_text.split())
    with open(os.path.join(ROOT, "csrc", "include", "pocketlm.h")) as f:
        assert "<= 0 means until the context is full" in f.read()


# -- the command line -------------------------------------------------------------------------------------------


def run_main(*argv, stdin=b""):
    """cli.main in this process, on byte streams as a process has: (exit status, stdout, stderr); an exception
    escaping it fails the test."""
    streams = [io.TextIOWrapper(io.BytesIO(b), encoding="utf-8") for b in (stdin, b"", b"")]
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        try:
            rc = cli.main(list(argv))
        except SystemExit as e:
            rc = e.code
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = (s.buffer.getvalue().decode("utf-8", "replace") for s in streams[1:])
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return rc, out, err


CLI_BAD = [
    ("-n", "2.5"), ("-n", "abc"), ("-n", ""), ("-n", "99999999999"), ("-n", str(2 ** 63)), ("-n", "nan"),
    ("-c", "-5"), ("-c", "99999999999"), ("-c", str(2 ** 24 + 1)), ("-c", "1.5"),
    ("-t", "-1"), ("-t", "513"), ("-t", "99999999999"), ("-t", "two"),
    ("--top-k", str(2 ** 31)), ("--top-k", "4.0"),
    ("--temp", "nan"), ("--temp", "inf"), ("--temp", "1e39"), ("--temp", "hot"),
    ("--top-p", "-1"), ("--top-p", "nan"), ("--min-p", "2"), ("--repeat-penalty", "0"), ("--repeat-penalty", "x"),
    ("--seed", str(2 ** 64)), ("--seed", "1.5"),
]
CLI_NAMES = {"-n": "max-tokens", "-c": "ctx-size", "-t": "threads", "--temp": "temp", "--top-k": "top-k",
             "--top-p": "top-p", "--min-p": "min-p", "--repeat-penalty": "repeat", "--seed": "seed"}


@pytest.mark.parametrize("command", ["generate", "chat"])
@pytest.mark.parametrize("opt,value", CLI_BAD)
def test_cli_refuses_bad_option_values(model_path, command, opt, value):
    args = [command, "-m", model_path, opt, value] + (["-p", "Hi"] if command == "generate" else [])
    rc, out, err = run_main(*args, stdin=b"Hello\n")
    assert rc == 2, (args, rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pocketlm {command}: error:"), err
    name = CLI_NAMES[opt]
    assert name in lines[0] or name.replace("-", "_") in lines[0], err
    assert "Traceback" not in err and out == ""


def test_cli_bad_value_in_a_subprocess_has_no_traceback():
    r = subprocess.run([sys.executable, "-m", "pocketlm", "generate", "-p", "Hi", "-c", "99999999999"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("pocketlm generate: error: argument -c/--ctx-size: must be in [0, 16777216], got 99999999999 "
                        "(see --help)\n")
