"""The C command-line tool's argument checks that the Python tests can see from outside."""

import subprocess

import pytest

from test_generate import _c_cli


@pytest.mark.parametrize("value", ["0", "1", "-5"])
def test_perplexity_rejects_a_chunk_size_below_two(tmp_path, value):
    text = tmp_path / "short.txt"
    text.write_text("hello world, this is a short text\n")
    r = subprocess.run([_c_cli(), "perplexity", "-f", str(text), "-c", value], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "pocketlm perplexity: -c %s: the chunk size must be at least 2 tokens (default 512)" % value


def test_perplexity_names_the_default_chunk_when_the_text_is_short(tmp_path, model_path):
    text = tmp_path / "short.txt"
    text.write_text("hello world, this is a short text\n")
    r = subprocess.run([_c_cli(), "perplexity", "-f", str(text)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "fewer than one chunk of 512" in r.stderr
