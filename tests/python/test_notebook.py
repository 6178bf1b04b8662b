"""examples/quickstart.ipynb runs from top to bottom in a fresh kernel."""

import html
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quickstart_notebook_runs(model_path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(os.path.join(ROOT, "examples", "quickstart.ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    monkeypatch.setenv("POCKETLM_THREADS", "1")   # the kernel inherits it: steady on a busy 2-core machine
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()                           # raises CellExecutionError on any failing cell

    def text(cell):
        out = []
        for o in cell.get("outputs", []):
            out.append(o.get("text", ""))
            out.extend(str(v) for v in o.get("data", {}).values())
        return "".join(out)

    code = [c for c in nb.cells if c.cell_type == "code"]
    streamed = text(code[2])
    assert len(streamed.split()) >= 20        # the generation was streamed into the cell
    assert "shares the C buffer: True" in text(code[4])
    assert "<table>" in text(code[5]) and "Paris" in text(code[5])   # the top-k table
    assert "Paris" not in text(code[6])
    rows = re.findall(r"<tr>((?:<td>.*?</td>){4})</tr>", text(code[7]))   # the records, one row per message
    assert len(rows) == 2
    for row in rows:
        cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)]
        assert cells[2] in ("low", "medium", "high") and cells[3] in ("True", "False") and len(cells[1]) <= 30
