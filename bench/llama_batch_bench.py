"""llama.cpp's half of bench/batch_bench.c: aggregate tokens/s of batched decoding.

The same workload as build/batch-bench (-N prompts of 8 to 24 words built by the
same formula, -n greedy tokens each, end of generation ignored) run through
llama.cpp's low-level batch API (llama-cpp-python's ctypes bindings), as
llama.cpp's own `batched` example drives it: up to -P sequences at once, each
step one ``llama_decode`` holding the next token of every running sequence plus
the whole prompt of each newly admitted one (continuous batching: a prompt is
admitted as soon as another sequence ends), greedy choice from each sequence's
logits with numpy. Prompt evaluation is included in the time, as in
batch_bench.c. One JSON object on stdout::

    python3 bench/llama_batch_bench.py -t 2 -N 32 -n 32 -P 1,16
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_bench import default_model_path  # noqa: E402

WORDS = ["the", "river", "carried", "small", "boats", "past", "old", "mills", "while",
         "children", "watched", "from", "a", "stone", "bridge", "and", "counted", "sails"]


def make_prompt(i: int) -> str:
    """Prompt i of batch_bench.c: 8 to 24 words.

    >>> make_prompt(0)
    'the mills bridge small watched sails old stone'
    """
    words = 8 + (i * 5) % 17
    return " ".join(WORDS[(w * 7 + i) % len(WORDS)] for w in range(words))


def cpu_s() -> float:
    return time.process_time()


def run(model: Path, n_threads: int, n_prompts: int, n_gen: int, parallel: int, unified: bool = False) -> dict:
    import llama_cpp
    import numpy as np

    seq_len = 256 + n_gen
    # the Llama object loads the model and tokenizes; the context of the run is made here, since the
    # high-level class has no way to ask for several sequences (n_seq_max)
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=512, n_threads=n_threads, verbose=False)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = parallel * seq_len, 2048, 512
    cp.n_seq_max, cp.kv_unified = parallel, unified
    cp.n_threads = cp.n_threads_batch = n_threads
    ctx = llama_cpp.llama_init_from_model(llm._model.model, cp)
    if not ctx:
        raise RuntimeError("llama_init_from_model failed")
    n_vocab = llm.n_vocab()
    mem = llama_cpp.llama_get_memory(ctx)
    prompts = [llm.tokenize(make_prompt(i).encode(), add_bos=True) for i in range(n_prompts)]
    batch = llama_cpp.llama_batch_init(2048, 0, 1)

    def one_round() -> tuple[float, float]:
        llama_cpp.llama_memory_seq_rm(mem, -1, -1, -1)
        queue = list(range(n_prompts))
        slots: list[list[int] | None] = [None] * parallel  # [prompt index, position, generated, next token]
        t0, c0 = time.perf_counter(), cpu_s()
        while queue or any(s is not None for s in slots):
            n = 0
            rows = []  # (slot, batch row whose logits pick the next token)

            def add(tok: int, pos: int, seq: int, want: bool) -> None:
                nonlocal n
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = tok, pos, 1
                batch.seq_id[n][0], batch.logits[n] = seq, want
                n += 1

            for s, st in enumerate(slots):
                if st is not None:
                    add(st[3], st[1], s, True)
                    rows.append((s, n - 1))
            for s in range(parallel):
                if slots[s] is None and queue:
                    p = queue.pop(0)
                    toks = prompts[p]
                    for j, tok in enumerate(toks):
                        add(tok, j, s, j == len(toks) - 1)
                    slots[s] = [p, len(toks) - 1, 0, -1]
                    rows.append((s, n - 1))
            batch.n_tokens = n
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            for s, row in rows:
                st = slots[s]
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
                st[3] = int(logits.argmax())
                st[1] += 1
                st[2] += 1
                if st[2] >= n_gen:
                    llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
                    slots[s] = None
        return time.perf_counter() - t0, cpu_s() - c0

    one_round()  # warm-up: pages the weights in
    wall, cpu = one_round()
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    total = n_prompts * n_gen
    return {"parallel": parallel, "tps": total / wall, "tokens_per_cpu_s": total / cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", type=Path, default=None, help="GGUF file (default: pocketlm's default model)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-N", "--prompts", type=int, default=64)
    ap.add_argument("-n", "--gen", type=int, default=32)
    ap.add_argument("-P", "--parallel", default="1,4,8,16,32", help="comma-separated parallelism levels")
    ap.add_argument("--kv-unified", action="store_true",
                    help="one KV buffer for all sequences (default: a stream per sequence, llama.cpp's default)")
    args = ap.parse_args()
    model = args.model or default_model_path()
    out = {"engine": "llama.cpp", "kv_unified": args.kv_unified, "threads": args.threads, "prompts": args.prompts, "tokens": args.gen,
           "batched": {}, "batched_tokens_per_cpu_s": {}}
    for p in (int(x) for x in args.parallel.split(",")):
        r = run(model, args.threads, args.prompts, args.gen, p, args.kv_unified)
        out["batched"][str(p)] = round(r["tps"], 2)
        out["batched_tokens_per_cpu_s"][str(p)] = round(r["tokens_per_cpu_s"], 2)
        print(f"  llama.cpp parallel {p:<4d} {r['tps']:8.1f} tokens/s  {r['tokens_per_cpu_s']:8.1f} tokens/CPU-s",
              file=sys.stderr)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
