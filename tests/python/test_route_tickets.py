"""examples/route_tickets.py runs as a user would run it, and routes every request to a known handler."""

import importlib.util
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "route_tickets.py")


def load_example():
    spec = importlib.util.spec_from_file_location("route_tickets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_route_tickets_script(model_path):
    r = subprocess.run([sys.executable, SCRIPT, "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    ex = load_example()
    routed = re.findall(r"^\[\s*(\w+) (\d\.\d\d)\] (.*)$", out, re.M)
    assert [text for _, _, text in routed] == [t for t, _ in ex.SAMPLE_TICKETS]
    assert all(intent in ex.HANDLERS for intent, _, _ in routed)
    assert out.count("-> ") == len(ex.SAMPLE_TICKETS)
    assert re.search(r"routed 10 requests in \d+ ms: [\d.]+ requests/s", out)
    assert "each next one:" in out and "the fixed part is cached" in out
    agree = int(re.search(r"agreement with the person's choice: (\d+)/10", out).group(1))
    assert agree >= 5        # fifteen examples in the cached prompt: most requests go to the right team


def test_route_tickets_probe_from_stdin(model_path, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("POCKETLM_THREADS", "1")
    tickets = tmp_path / "tickets.txt"
    tickets.write_text("My parcel is lost\n\nI was charged twice\n")
    assert load_example().main(["--method", "probe", "--file", str(tickets)]) == 0
    out = capsys.readouterr().out
    assert out.count("-> ") == 2 and "probe trained on 15 examples" in out and "agreement" not in out
