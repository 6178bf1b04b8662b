"""The command line: `python -m pocketlm` and the `pocketlm` console script."""

import os
import subprocess
import sys

import pytest

import pocketlm


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pocketlm", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_help():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("generate", "chat", "tokenize", "info"):
        assert cmd in r.stdout
        sub = run(cmd, "--help")
        assert sub.returncode == 0 and "usage: pocketlm " + cmd in sub.stdout
    assert run().returncode == 2
    assert run("--version").stdout.strip() == f"pocketlm {pocketlm.__version__}"


def test_generate_matches_the_api(model):
    r = run("generate", "The capital of France is", "-n", "16", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == model.generate("The capital of France is", max_tokens=16, temperature=0) + "\n"
    r2 = run("generate", "-p", "-", "-n", "4", "-t", "1", "--stats", stdin="The capital of France is")
    assert r2.stdout == " Paris.\n\n\n" and "tok/s" in r2.stderr


def test_tokenize_and_info():
    r = run("tokenize", "Hello world", "--ids")
    assert r.stdout.split() == ["19556", "905"]
    r = run("tokenize", "<|im_start|>Hi", "--special")
    assert "'<|im_start|>'" in r.stdout and r.stderr.strip() == "2 tokens"   # the count on stderr, as in C
    r = run("info")
    assert r.returncode == 0 and "architecture:  llama" in r.stdout and "chat format:   chatml" in r.stdout
    assert "general.architecture" in run("info", "-v").stdout


def test_chat_repl_reads_standard_input():
    r = run("chat", "-n", "12", "--temp", "0", "-t", "1", stdin="What is 2 + 2?\n/reset\nSay hello.\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert len([l for l in r.stdout.splitlines() if l.strip()]) >= 2


def test_errors_are_reported_not_raised(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    r = run("info", "-m", str(bad))
    assert r.returncode == 1
    assert "pocketlm: error:" in r.stderr and "PLM_ERR_FORMAT" in r.stderr and "Traceback" not in r.stderr


def test_console_script():
    exe = os.path.join(os.path.dirname(sys.executable), "pocketlm")
    if not os.path.exists(exe):
        pytest.skip("the package is not installed with its console script (pip install .)")
    r = subprocess.run([exe, "tokenize", "Hello world", "--ids"], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["19556", "905"]
