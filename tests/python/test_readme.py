"""Every README block that shows output is produced here, by running what the README says to run.

How an output block is compared with what the run printed:
- a line `...` stands for any number of lines;
- a line that reports a time or a speed (a number followed by `ms`, `s`, `tok/s`, `requests/s`) has all its
  numbers free (and the width of the spaces between them), and the kernel table it names (`avx2`, `avx512`,
  ...) too: those depend on the machine;
- every other line must be printed exactly, in order.
So a README that shows a label, a probability (two decimals), a count or a generated text that the code no
longer produces fails here.
"""

import doctest
import os
import re
import shutil
import subprocess
import sys

import pytest

from test_generate import _c_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")

TIMING = re.compile(r"\d(?:\.\d+)? ?(?:ms|s|tok/s|requests/s)\b")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
KERNELS = re.compile(r"\b(?:scalar|avx2|avx512|amx|neon)\b")


def readme_text():
    with open(README, encoding="utf-8") as f:
        return f.read()


def fenced_blocks(text):
    """(info string, body, offset of the fence) of every fenced block."""
    return [(m.group(1), m.group(2), m.start())
            for m in re.finditer(r"^```([^\n]*)\n(.*?)^```$", text, re.M | re.S)]


def block_after(anchor, index=0):
    """The body of the index-th fenced block that follows the first occurrence of anchor in the README."""
    text = readme_text()
    at = text.find(anchor)
    assert at >= 0, "README no longer contains %r" % anchor
    after = [body for _, body, start in fenced_blocks(text) if start > at]
    return after[index]


def line_pattern(line):
    if not TIMING.search(line):
        return re.compile(re.escape(line) + r"\Z")
    parts = []
    for piece in re.split(r"(\d+(?:\.\d+)?|\b(?:scalar|avx2|avx512|amx|neon)\b)", line):
        if NUMBER.fullmatch(piece):
            parts.append(r"\d+(?:\.\d+)?")
        elif KERNELS.fullmatch(piece):
            parts.append(r"\w+")
        else:   # numbers printed in fixed-width fields change the spaces before them
            parts.append(" +".join(re.escape(word) for word in re.split(r" +", piece)))
    return re.compile("".join(parts) + r"\Z")


def assert_output_matches(expected_block, output):
    """Each expected line (or pattern) in order; `...` skips any lines. Trailing whitespace and blank lines
    around the whole output are ignored."""
    got = [l.rstrip() for l in output.strip("\n").splitlines()]
    want = [l.rstrip() for l in expected_block.strip("\n").splitlines()]
    i = 0
    skipping = False
    for w in want:
        if w == "...":
            skipping = True
            continue
        pat = line_pattern(w)
        while i < len(got) and not pat.match(got[i]):
            assert skipping, "README line %r, the run printed %r\n--- the run printed:\n%s" % (w, got[i], output)
            i += 1
        assert i < len(got), "README line %r was not printed\n--- the run printed:\n%s" % (w, output)
        i += 1
        skipping = False
    assert skipping or i == len(got), "the run printed more than the README shows: %r" % got[i:]


def test_the_matcher_is_strict():
    assert_output_matches("a\n...\nz", "a\nb\nc\nz")
    assert_output_matches("took 12 ms with avx2", "took 9.5 ms with avx512")
    for block, out in [("a\nz", "a\nb\nz"), ("0.54 / 0.46", "0.51 / 0.49"), ("7/10", "6/10"), ("x", "x\ny"),
                       ("a\n...\nz", "a\nb")]:
        with pytest.raises(AssertionError):
            assert_output_matches(block, out)


def python_blocks():
    return [body for info, body, _ in fenced_blocks(readme_text()) if info.strip() == "python" and ">>>" in body]


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_blocks_print_what_they_show(model_path, monkeypatch, index):
    monkeypatch.setenv("POCKETLM_THREADS", "1")      # steady on a busy machine; results do not depend on it
    monkeypatch.setenv("TQDM_DISABLE", "1")
    body = python_blocks()[index]
    test = doctest.DocTestParser().get_doctest(body, {}, "README python block %d" % index, README, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_main_command_output(model_path):
    cmd = block_after("## Two commands", 0)
    assert cmd.strip() == 'make model all && ./build/pocketlm generate -p "The capital of France is" -n 32'
    r = subprocess.run([_c_cli(), "generate", "-p", "The capital of France is", "-n", "32"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert_output_matches(block_after("## Two commands", 1), r.stdout + r.stderr)


def test_cli_info_output(model_path):
    body = next(body for _, body, _ in fenced_blocks(readme_text()) if body.startswith("$ ./build/pocketlm info\n"))
    expected = body.split("\n", 1)[1]
    r = subprocess.run([_c_cli(), "info"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace(os.path.expanduser("~"), "~")
    # The kernel table depends on the CPU: that line only has to name one.
    expected = re.sub(r"^kernels: .*$", "kernels: ...", expected, flags=re.M)
    out = re.sub(r"^kernels: +(scalar|avx2|avx512|amx|neon)(, [0-9.]+ MiB of weights repacked for them)?$", "kernels: ...",
                 out, flags=re.M)
    assert_output_matches(expected, out)


def test_route_tickets_block(model_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "route_tickets.py"), "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_output_matches(block_after("`examples/route_tickets.py` routes support requests"), r.stdout)


def _plain_env(**extra):
    """The environment without a preloaded sanitizer runtime (make python-test-asan sets one): make, SWIG and
    the Lua interpreter are not pocketlm's to check, and the Lua module is built without sanitizers."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS",
                                                           "UBSAN_OPTIONS")}
    env.update(extra)
    return env


def _lua_module():
    lua = os.environ.get("LUA", "lua5.4")
    if not shutil.which(lua):
        pytest.skip("skipped: %s is not installed (the Lua module's README blocks are checked where it is)" % lua)
    # make keeps the module up to date with the C sources (a stale core.so would test old code).
    r = subprocess.run(["make", "-s", "-C", ROOT, "lua"], capture_output=True, text=True, env=_plain_env())
    if r.returncode != 0:
        pytest.fail("make lua failed:\n" + r.stdout + r.stderr)
    return lua


def test_lua_quickstart_block(model_path, tmp_path):
    lua = _lua_module()
    anchor = "From the repository root (`LUA_PATH='lua/?.lua;;' LUA_CPATH='lua/?.so;;' lua5.4 quick.lua`)"
    script = tmp_path / "quick.lua"
    script.write_text(block_after(anchor, 0))
    env = _plain_env(LUA_PATH="lua/?.lua;;", LUA_CPATH="lua/?.so;;")
    r = subprocess.run([lua, str(script)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_output_matches(block_after(anchor, 1), r.stdout)


def test_npc_dialogue_block(model_path):
    lua = _lua_module()
    anchor = "`examples/npc_dialogue.lua` is a game loop"
    cmd = re.search(r"\(`(lua5\.4 examples/npc_dialogue\.lua[^`]*)`\)", readme_text()).group(1).split()
    r = subprocess.run([lua] + cmd[1:], capture_output=True, text=True, cwd=ROOT, timeout=300, env=_plain_env())
    assert r.returncode == 0, r.stderr
    assert_output_matches(block_after(anchor, 0), r.stdout)
