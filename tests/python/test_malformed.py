"""Malformed model files never crash the process: every case of the malformed-GGUF generator raises the exception of
its status, with a message naming the file and what is wrong.

The cases come from ``build/plm-malformed DIR`` (tests/c/malformed_gguf.c: the same files the C and Lua tests load),
which writes one file per defect and ``manifest.tsv`` (file, status, needles, category, defect; the message must
contain every ``|``-separated needle). After each category the valid base model still loads and generates.
"""

import csv
import os
import subprocess
from typing import Dict, List, Optional

import pytest

import pocketlm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The exception each status must raise: the contract of pocketlm.errors, stated independently here.
EXPECTED_CLASS = {
    "PLM_ERR_IO": pocketlm.ModelFileError,
    "PLM_ERR_FORMAT": pocketlm.FormatError,
    "PLM_ERR_UNSUPPORTED": pocketlm.UnsupportedError,
    "PLM_ERR_OOM": pocketlm.OutOfMemoryError,
}

CATEGORIES = ["valid", "truncation", "header", "counts", "lengths", "overflow", "alignment", "types", "duplicates",
              "size-mismatch", "missing", "nan-inf", "metadata"]


def _generator() -> str:
    """The generator program: $POCKETLM_MALFORMED, else build/plm-malformed (made by make, which also rebuilds it
    when its sources changed)."""
    exe = os.environ.get("POCKETLM_MALFORMED")
    if exe:
        return exe
    subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "build/plm-malformed"], check=True)
    return os.path.join(ROOT, "build", "plm-malformed")


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Dict[str, List[dict]]:
    out = tmp_path_factory.mktemp("malformed")
    run = subprocess.run([_generator(), str(out)], check=True, capture_output=True, text=True)
    print(run.stdout.strip())
    with open(out / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    by_cat: Dict[str, List[dict]] = {}
    for row in rows:
        row["path"] = str(out / row["file"])
        by_cat.setdefault(row["category"], []).append(row)
    return by_cat


def _run_base(path: str) -> None:
    """The valid base model (8 tokens, one block) tokenizes and generates."""
    with pocketlm.Model(path, n_threads=1, n_ctx=32) as m:
        assert m.info.arch == "llama" and m.n_vocab == 8
        tokens = list(m.tokenize("ab a"))
        assert tokens[0] == 1 and len(tokens) >= 2 and all(0 <= t < 8 for t in tokens)
        text = m.generate("ab", max_tokens=4, temperature=0, ignore_eos=True)
        assert isinstance(text, str)


def _check(row: dict, use_mmap: bool) -> Optional[str]:
    """None if loading the case behaves as its row says, else what went wrong."""
    path, want = row["path"], row["status"]
    try:
        m = pocketlm.Model(path, n_threads=1, use_mmap=use_mmap)
    except pocketlm.Error as e:
        msg = str(e)
        if want == "PLM_OK":
            return f"raised {type(e).__name__}: {msg}"
        if type(e) is not EXPECTED_CLASS[want] or e.status_name != want:
            return f"raised {type(e).__name__} ({e.status_name}), want {EXPECTED_CLASS[want].__name__}: {msg}"
        missing = [n for n in row["needles"].split("|") if n not in msg]
        if missing or path not in msg:
            return f"message {msg!r} lacks {missing or [path]}"
        return None
    try:
        if want != "PLM_OK":
            return f"loaded, want {want}"
        _run_base(path)
        return None
    finally:
        m.close()


@pytest.mark.parametrize("category", CATEGORIES)
def test_malformed_category(cases, category):
    rows = cases.get(category, [])
    assert rows, f"the generator made no {category} case"
    failures = []
    for row in rows:
        for use_mmap in (True, False):
            problem = _check(row, use_mmap)
            if problem:
                failures.append(f"{row['file']} ({row['defect']}; mmap={use_mmap}): {problem}")
    assert not failures, f"{len(failures)} of {2 * len(rows)} loads:\n" + "\n".join(failures[:20])
    # The process and the library are fine after all those errors.
    _run_base(cases["valid"][0]["path"])


def test_cases_cover_every_category(cases):
    assert sorted(cases) == sorted(CATEGORIES)
    total = sum(len(v) for v in cases.values())
    assert total >= 500
    assert len(cases["truncation"]) >= 300
    # Every file the generator wrote is in the manifest, and the other way round.
    directory = os.path.dirname(cases["valid"][0]["path"])
    listed = {r["file"] for rows in cases.values() for r in rows}
    assert listed == set(os.listdir(directory)) - {"manifest.tsv"}
