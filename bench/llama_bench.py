"""llama.cpp's half of the side-by-side speed comparison, through llama-cpp-python.

Makes the same three measurements as bench/plm_bench.c, on the same GGUF file,
with the same thread count, batch size and token ids (the same 32-bit LCG), and
prints the same JSON shape on stdout:

* prompt processing: one ``Llama.eval`` of ``-p`` tokens on an empty cache,
  logits for the last token only -> tokens/s;
* generation: after a 16-token prompt (``-d``: a longer history), ``-n`` single-token evals, each fed the
  argmax of the previous logits -> tokens/s;
* time to first token: a 64-token prompt on an empty cache plus the argmax that
  picks the first token -> ms;
* peak RSS from ``resource.getrusage`` (this includes the Python interpreter and
  numpy; ``rss_before_load_mib`` says how much of it was there before the model).

Alternating the engines and tabulating is bench/run.py's job. Example::

    python3 bench/llama_bench.py -t 2 -p 512 -n 128 -r 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

GEN_PROMPT = 16  # prompt evaluated before the generation timing starts
TTFT_PROMPT = 64  # prompt of the time-to-first-token measurement
N_BATCH = 512  # n_batch and n_ubatch, as plm_bench.c
N_SHOW = 16  # generated ids echoed in the JSON, to check both engines agree
SEED_PP, SEED_GEN, SEED_TTFT = 1, 2, 3
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The file pocketlm loads when given no path (see plm_default_model_path).

    >>> default_model_path().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    if os.environ.get("POCKETLM_MODEL"):
        return Path(os.environ["POCKETLM_MODEL"])
    if os.environ.get("POCKETLM_CACHE"):
        cache = Path(os.environ["POCKETLM_CACHE"])
    elif os.environ.get("XDG_CACHE_HOME"):
        cache = Path(os.environ["XDG_CACHE_HOME"]) / "pocketlm"
    else:
        cache = Path.home() / ".cache" / "pocketlm"
    return cache / DEFAULT_MODEL_NAME


def bench_tokens(n: int, seed: int) -> list[int]:
    """Token ids 100 + ((s >> 8) % 9900) of the LCG s = s * 1664525 + 1013904223 (mod 2**32).

    The same formula as fill_tokens in plm_bench.c, so both engines see the same ids.

    >>> bench_tokens(3, 1)
    [7165, 7933, 5277]
    """
    s, out = seed, []
    for _ in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(100 + (s >> 8) % 9900)
    return out


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def context_size(n_prompt: int, n_gen: int, depth: int = GEN_PROMPT) -> int:
    """Cells for the longest run, rounded up to 256 as plm_bench.c does."""
    n = max(n_prompt, GEN_PROMPT + n_gen, depth + n_gen, TTFT_PROMPT)
    return (n + 255) // 256 * 256


def run(model: Path, n_threads: int = 2, n_prompt: int = 512, n_gen: int = 128, n_rep: int = 3,
        depth: int = GEN_PROMPT) -> dict:
    """Loads model with llama-cpp-python, measures, and returns the JSON-ready result."""
    rss_before_load = peak_rss_mib()
    import llama_cpp  # imported here so that importing this module stays cheap
    import numpy as np

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=str(model),
        n_ctx=context_size(n_prompt, n_gen, depth),
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        verbose=False,
    )
    load_ms = 1e3 * (time.perf_counter() - t0)
    n_vocab = llm.n_vocab()

    def argmax_last() -> int:
        """Greedy choice from the logits of the last evaluated token."""
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

    def eval_fresh(tokens: list[int]) -> None:
        llm.reset()  # n_tokens = 0, so eval drops the whole cache first
        llm.eval(tokens)

    eval_fresh(bench_tokens(TTFT_PROMPT, SEED_TTFT))  # warm-up, untimed

    pp = []
    tokens = bench_tokens(n_prompt, SEED_PP)
    for _ in range(n_rep):
        t0 = time.perf_counter()
        eval_fresh(tokens)
        pp.append(n_prompt / (time.perf_counter() - t0))

    tg, shown = [], []
    tokens = bench_tokens(depth, SEED_GEN)
    for _ in range(n_rep):
        eval_fresh(tokens)
        shown = []
        t0 = time.perf_counter()
        for i in range(n_gen):
            nxt = argmax_last()
            if i < N_SHOW:
                shown.append(nxt)
            llm.eval([nxt])
        tg.append(n_gen / (time.perf_counter() - t0))

    ttft, first = [], -1
    tokens = bench_tokens(TTFT_PROMPT, SEED_TTFT)
    for _ in range(n_rep):
        t0 = time.perf_counter()
        eval_fresh(tokens)
        first = argmax_last()
        ttft.append(1e3 * (time.perf_counter() - t0))

    return {
        "engine": "llama.cpp",
        "version": f"llama-cpp-python {llama_cpp.__version__}",
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "model": str(model),
        "model_bytes": None,
        "n_threads": n_threads,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_rep": n_rep,
        "depth": depth,
        "n_ctx": llm.n_ctx(),
        "n_batch": N_BATCH,
        "pp_tok_s": statistics.median(pp),
        "tg_tok_s": statistics.median(tg),
        "ttft_ms": statistics.median(ttft),
        "pp_tok_s_all": [round(x, 3) for x in pp],
        "tg_tok_s_all": [round(x, 3) for x in tg],
        "ttft_ms_all": [round(x, 3) for x in ttft],
        "gen_tokens": shown,
        "ttft_token": first,
        "load_ms": round(load_ms, 1),
        "rss_before_load_mib": round(rss_before_load, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", type=Path, default=None, help="GGUF file (default: pocketlm's default model)")
    ap.add_argument("-t", "--threads", type=int, default=2, help="threads for prompt and generation (default 2)")
    ap.add_argument("-p", "--prompt", type=int, default=512, help="prompt-processing tokens (default 512)")
    ap.add_argument("-n", "--gen", type=int, default=128, help="tokens generated one at a time (default 128)")
    ap.add_argument("-r", "--reps", type=int, default=3, help="repetitions; medians are reported (default 3)")
    ap.add_argument("-d", "--depth", type=int, default=GEN_PROMPT,
                    help="tokens of history before the generation is timed (default %d)" % GEN_PROMPT)
    args = ap.parse_args(argv)
    if min(args.threads, args.prompt, args.gen, args.reps, args.depth) < 1:
        ap.error("-t, -p, -n, -r and -d must be at least 1")
    model = args.model or default_model_path()
    if not model.is_file():
        print(f"llama_bench: no model file at {model} (run `make model`)", file=sys.stderr)
        return 1
    print(json.dumps(run(model, args.threads, args.prompt, args.gen, args.reps, args.depth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
