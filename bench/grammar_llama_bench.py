"""Structured output side by side: llama.cpp's grammar sampling (llama-cpp-python's ``LlamaGrammar``) and
pocketlm's, on the schemas and prompts of the JSON-schema suite (tests/data/json_schemas.json), greedy, on the
default model, the same threads.

For each schema picked (by default the six that bench/grammar_bench.c generates with; ``--all`` for the 61):

* llama.cpp unconstrained, and constrained twice: with ``LlamaGrammar.from_json_schema`` (llama-cpp-python's
  own converter; some schemas it cannot convert, and those are listed) and with ``LlamaGrammar.from_string`` of
  the GBNF pocketlm compiles the schema to (the same grammar for both engines);
* pocketlm unconstrained and with ``json_schema=``, when ``import pocketlm`` works (run it from a virtual
  environment that has both, or set PYTHONPATH; the llama.cpp half runs alone otherwise).

Generation speed is counted from the first generated token to the last, so the prompt's evaluation is left out
and every token's sampling (grammar included) and forward pass are in: tokens/s = (tokens - 1) / seconds.
Unconstrained runs go on to ``-n`` tokens past end-of-generation; constrained ones stop where the grammar is
complete. The runs of one schema alternate, and each keeps its best of ``-r`` (the machine may be shared).
Also timed: setting a grammar up (``LlamaGrammar.from_json_schema``, Python; pocketlm's compile, C).
Prints a table; ``--json PATH`` writes the figures. Example::

    PYTHONPATH=... python3 bench/grammar_llama_bench.py -t 2 -n 48 -r 3 --json bench/results/grammar.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from llama_bench import default_model_path  # bench/ is the script's directory
from run import cpu_model_name

ROOT = Path(__file__).resolve().parent.parent
PICKS = ["ticket", "invoice", "user_profile", "event", "array_of_objects", "recursive_tree"]
def chat_prompt(text: str) -> str:
    """The prompt grammar_bench.c builds (SmolLM2's chat format).

    >>> chat_prompt("Hi.")
    '<|im_start|>user\\nHi. Answer with JSON only.<|im_end|>\\n<|im_start|>assistant\\n'
    """
    return f"<|im_start|>user\n{text} Answer with JSON only.<|im_end|>\n<|im_start|>assistant\n"


def rate(stamps: List[float]) -> Optional[float]:
    """Tokens/s from the times each token arrived, first to last.

    >>> rate([1.0, 1.5, 2.0])
    2.0
    >>> rate([1.0]) is None
    True
    """
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def timed(tokens: Iterable[Any], stop: Callable[[Any, int], bool]) -> List[float]:
    """Times at which each item of ``tokens`` arrived, until ``stop(item, count)`` says so."""
    out: List[float] = []
    for tok in tokens:
        out.append(time.perf_counter())
        if stop(tok, len(out)):
            break
    return out


class LlamaSide:
    """llama.cpp through llama-cpp-python: token by token through ``Llama.generate``."""

    def __init__(self, model: Path, threads: int) -> None:
        from llama_cpp import Llama, LlamaGrammar  # noqa: PLC0415 (optional dependency)

        self.grammar_cls = LlamaGrammar
        self.llm = Llama(model_path=str(model), n_threads=threads, n_threads_batch=threads, n_ctx=1024,
                         n_batch=512, verbose=False)
        self.eos = self.llm.token_eos()

    def run(self, prompt: str, n: int, grammar: Any) -> List[float]:
        toks = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
        self.llm.reset()
        gen = self.llm.generate(toks, temp=0.0, top_k=1, repeat_penalty=1.0, grammar=grammar)
        if grammar is None:
            return timed(gen, lambda tok, k: k >= n)
        return timed(gen, lambda tok, k: k >= n or tok == self.eos)


class PocketSide:
    """pocketlm through its Python package: ``Model.stream``, timed by piece, counted by token."""

    def __init__(self, model: Path, threads: int) -> None:
        import pocketlm  # noqa: PLC0415

        self.pocketlm = pocketlm
        self.m = pocketlm.Model(str(model), n_threads=threads, n_ctx=1024)

    def run(self, prompt: str, n: int, schema: Optional[Dict[str, Any]]) -> List[float]:
        s = self.m.stream(prompt, max_tokens=n, temperature=0, ignore_eos=schema is None, json_schema=schema,
                          add_special=False)
        stamps = timed(s, lambda piece, k: False)
        # pieces hold back incomplete UTF-8 and stop strings: spread the time over the tokens they carry
        k = len(s.tokens)
        if len(stamps) < 2 or k < 2:
            return stamps
        t0, t1 = stamps[0], stamps[-1]
        return [t0 + (t1 - t0) * i / (k - 1) for i in range(k)]


def best(runs: List[List[float]]) -> Dict[str, Any]:
    rates = [r for r in (rate(x) for x in runs) if r]
    if not rates:
        return {"tok_s": None, "tokens": max((len(x) for x in runs), default=0)}
    return {"tok_s": round(max(rates), 2), "median_tok_s": round(statistics.median(rates), 2),
            "tokens": max(len(x) for x in runs)}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", type=Path, default=default_model_path())
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", "--tokens", type=int, default=48, help="tokens per run (at most)")
    ap.add_argument("-r", "--reps", type=int, default=3, help="runs of each kind per schema (best counts)")
    ap.add_argument("--all", action="store_true", help="every schema of the suite, not the six picks")
    ap.add_argument("--suite", type=Path, default=ROOT / "tests" / "data" / "json_schemas.json")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    suite = json.loads(args.suite.read_text(encoding="utf-8"))
    items = suite if args.all else [x for name in PICKS for x in suite if x["name"] == name]
    llama = LlamaSide(args.model, args.threads)
    try:
        pocket: Optional[PocketSide] = PocketSide(args.model, args.threads)
    except ImportError as e:
        print(f"pocketlm is not importable here ({e}): the llama.cpp half only", file=sys.stderr)
        pocket = None

    rows = []
    for item in items:
        name, schema, prompt = item["name"], item["schema"], chat_prompt(item["prompt"])
        row: Dict[str, Any] = {"name": name}
        kinds: Dict[str, Callable[[], List[float]]] = {"llama_free": lambda: llama.run(prompt, args.tokens, None)}
        t = time.perf_counter()
        try:
            g_own = llama.grammar_cls.from_json_schema(json.dumps(schema), verbose=False)
            row["llama_from_json_schema_ms"] = round(1e3 * (time.perf_counter() - t), 3)
            kinds["llama_schema"] = lambda: llama.run(prompt, args.tokens, g_own)
        except Exception as e:  # llama-cpp-python's converter refuses some keywords
            row["llama_from_json_schema_error"] = f"{type(e).__name__}: {e}"[:200]
        if pocket is not None:
            # (from_string only keeps the text: llama.cpp parses it when the sampler is made, inside the run)
            g_same = llama.grammar_cls.from_string(pocket.pocketlm.json_schema_to_gbnf(schema), verbose=False)
            t = time.perf_counter()
            pocket.pocketlm.Grammar.from_json_schema(schema)
            row["pocketlm_compile_ms"] = round(1e3 * (time.perf_counter() - t), 3)
            kinds["llama_pocketlm_gbnf"] = lambda: llama.run(prompt, args.tokens, g_same)
            kinds["pocketlm_free"] = lambda: pocket.run(prompt, args.tokens, None)
            kinds["pocketlm_schema"] = lambda: pocket.run(prompt, args.tokens, schema)
        runs: Dict[str, List[List[float]]] = {k: [] for k in kinds}
        for _ in range(args.reps):
            for k, f in kinds.items():
                runs[k].append(f())
        for k in kinds:
            row[k] = best(runs[k])
        rows.append(row)
        print(name, json.dumps({k: v for k, v in row.items() if k != "name"}), file=sys.stderr)

    def total(kind: str) -> Optional[float]:
        """Tokens/s over the schemas that ran this kind: their best rates' harmonic mean."""
        rs = [r[kind]["tok_s"] for r in rows if kind in r and r[kind]["tok_s"]]
        return round(len(rs) / sum(1 / x for x in rs), 2) if rs else None

    summary = {k: total(k) for k in ["llama_free", "llama_schema", "llama_pocketlm_gbnf", "pocketlm_free",
                                      "pocketlm_schema"]}
    for eng, own in [("llama", "llama_schema"), ("llama", "llama_pocketlm_gbnf"), ("pocketlm", "pocketlm_schema")]:
        free = summary.get(f"{eng}_free")
        if summary.get(own) and free:
            summary[f"{own}_ratio"] = round(summary[own] / free, 3)
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_model_name(), "n_cpus": os.cpu_count(),
           "load_average": os.getloadavg(),
           "settings": {"model": args.model.name, "threads": args.threads, "tokens": args.tokens,
                        "reps": args.reps, "schemas": [r["name"] for r in rows]},
           "summary": summary, "schemas": rows}
    print(f"{'kind':28} tok/s (harmonic mean over {len(rows)} schemas, best of {args.reps} each)")
    for k, v in summary.items():
        print(f"{k:28} {v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
