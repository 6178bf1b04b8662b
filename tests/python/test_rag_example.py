"""examples/rag.py runs as a user would run it: the embedder retrieves the passage that answers each sample
question, and the default chat model answers from it."""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("gguf")  # the embedder is converted on first use

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "rag.py")


def test_rag_script(model_path):
    r = subprocess.run([sys.executable, SCRIPT, "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^embedded 8 passages in \d+ ms$", out, re.M)
    blocks = re.findall(r"^Q: (.*)\n  \[(\d\.\d\d)\] (.*)\n  \[(\d\.\d\d)\] .*\nA: (.*)$", out, re.M)
    assert [q for q, *_ in blocks] == ["Where does the Danube river end?", "How tall is the Eiffel Tower?",
                                       "How do bees tell each other where flowers are?"]
    firsts = [p for _, _, p, _, _ in blocks]
    assert firsts[0].startswith("The Danube") and firsts[1].startswith("The Eiffel Tower") \
        and firsts[2].startswith("Honey bees")
    # the right passage is far ahead of the next one
    assert all(float(a) > float(b) + 0.3 for _, a, _, b, _ in blocks)
    assert all(ans.strip() for *_, ans in blocks)
    assert re.search(r"Romania|Black Sea", blocks[0][4])   # greedy answer from the retrieved passage
