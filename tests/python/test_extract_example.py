"""examples/extract.py runs as a user would run it: every record it prints validates against its schema."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "extract.py")


def load_example():
    spec = importlib.util.spec_from_file_location("extract", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_extract_script_records_validate(model_path):
    jsonschema = pytest.importorskip("jsonschema")
    ex = load_example()
    r = subprocess.run([sys.executable, SCRIPT, "--threads", "1", "--json"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row.pop("message") for row in rows] == ex.SAMPLE_MESSAGES
    for row in rows:
        assert row.pop("mood") in ex.MOODS
        jsonschema.validate(row, ex.RECORD_SCHEMA)   # an independent validator, not pocketlm's grammar
    assert f"extracted {len(ex.SAMPLE_MESSAGES)} records in" in r.stderr


def test_extract_pydantic_model_and_schema_agree(model):
    pytest.importorskip("pydantic")
    ex = load_example()
    msgs = ex.SAMPLE_MESSAGES[:2]
    Record = ex.record_type()
    assert Record is not ex.RECORD_SCHEMA
    assert ex.extract(model, msgs, Record) == ex.extract(model, msgs, ex.RECORD_SCHEMA)


def test_extract_from_stdin_as_a_table(model_path):
    ex = load_example()
    r = subprocess.run([sys.executable, SCRIPT, "--threads", "1", "--file", "-"], capture_output=True, text=True,
                       input="My kettle leaks.\n\nThe router keeps dropping the connection.\n", timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split(" | ")[0].strip() == "product" and set(lines[1]) <= {"-", "+"}
    assert len(lines) == 4 and lines[2].endswith("My kettle leaks.")
    assert all(any(m in line for m in ex.MOODS) for line in lines[2:])
