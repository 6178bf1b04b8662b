#!/usr/bin/env python3
"""Write the model fixtures under tests/data from independent implementations.

A development tool, not a CI step: it needs llama-cpp-python (pip builds it from
source) and, for a second opinion, transformers with the CPU build of torch.

    python3 tools/make_fixtures.py --model path/to/SmolLM2-135M-Instruct.Q4_1.gguf

Writes, for the default model:
  tests/data/logits_smollm2.txt      top-20 logits at the last position of 5 prompts
                                     (llama.cpp, and transformers as "hf" lines)
  tests/data/greedy_smollm2.txt      greedy 48-token continuations of 5 prompts (llama.cpp, with
                                     its top-1 minus top-2 logit margin at each step;
                                     transformers' continuation as an "hf" line)
  tests/data/perplexity_smollm2.txt  llama.cpp's perplexity of tests/data/perplexity_gpl3.txt
                                     computed exactly as llama-perplexity does (ctx 512)

Prompts are stored as token ids (llama.cpp's tokenization), so these fixtures test
the forward pass independently of the tokenizer (tokens_smollm2.tsv tests that).
"""
import argparse
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

PROMPTS = [
    ("capital", "The capital of France is", False),
    ("story", "Once upon a time, in a small village,", False),
    ("code", "def fibonacci(n):\n    ", False),
    ("chat", "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n", True),
    ("colors", "The three primary colors are", False),
]
N_TOP = 20
N_GREEDY = 48
PPL_CTX = 512


def llama_cpp_model(path, n_ctx):
    import llama_cpp

    return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_threads=2, logits_all=True,
                           verbose=False, seed=0)


def top(logits, k=N_TOP):
    idx = np.argsort(-logits, kind="stable")[:k]
    return [(int(i), float(logits[i])) for i in idx]


def fmt_top(pairs):
    return " ".join(f"{i}:{v:.6f}" for i, v in pairs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("POCKETLM_MODEL"), help="the default model's GGUF")
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers second opinion")
    args = ap.parse_args()
    if not args.model:
        sys.exit("give --model or set POCKETLM_MODEL")

    import llama_cpp

    llm = llama_cpp_model(args.model, 1024)
    cases = []
    for name, text, special in PROMPTS:
        ids = llm.tokenize(text.encode(), add_bos=True, special=special)
        cases.append((name, text, special, ids))

    # llama.cpp: logits at the last prompt position, and greedy continuations.
    lc_top, lc_greedy, lc_margin = {}, {}, {}
    for name, text, special, ids in cases:
        llm.reset()
        llm.eval(ids)
        lc_top[name] = top(np.array(llm.scores[len(ids) - 1], dtype=np.float32))
        out, margins = [], []
        for _ in range(N_GREEDY):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            tok = int(np.argmax(row))
            second = np.partition(row, -2)[-2]
            out.append(tok)
            margins.append(float(row[tok] - second))
            if tok == llm.token_eos():
                break
            llm.eval([tok])
        lc_greedy[name] = out
        lc_margin[name] = margins

    hf_top, hf_greedy = {}, {}
    if not args.no_hf:
        import torch
        from transformers import AutoModelForCausalLM

        d, f = os.path.split(os.path.abspath(args.model))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        model.eval()
        for name, text, special, ids in cases:
            with torch.no_grad():
                x = torch.tensor([ids])
                hf_top[name] = top(model(x).logits[0, -1].numpy())
                g = model.generate(x, max_new_tokens=N_GREEDY, do_sample=False, eos_token_id=llm.token_eos(),
                                   pad_token_id=llm.token_eos())
                hf_greedy[name] = [int(t) for t in g[0, len(ids):]]

    version = getattr(llama_cpp, "__version__", "?")
    with open(os.path.join(DATA, "logits_smollm2.txt"), "w") as fh:
        fh.write(f"# top-{N_TOP} logits at the last prompt position; llama-cpp-python {version} (lc), "
                 "transformers reading the GGUF in float32 (hf)\n")
        for name, text, special, ids in cases:
            fh.write(f"case {name}\n")
            fh.write("ids " + " ".join(map(str, ids)) + "\n")
            fh.write("lc " + fmt_top(lc_top[name]) + "\n")
            if name in hf_top:
                fh.write("hf " + fmt_top(hf_top[name]) + "\n")
    with open(os.path.join(DATA, "greedy_smollm2.txt"), "w") as fh:
        fh.write(f"# greedy continuations ({N_GREEDY} tokens or until EOS); llama-cpp-python {version} (lc), "
                 "transformers float32 (hf)\n")
        for name, text, special, ids in cases:
            fh.write(f"case {name}\n")
            fh.write("ids " + " ".join(map(str, ids)) + "\n")
            fh.write("lc " + " ".join(map(str, lc_greedy[name])) + "\n")
            fh.write("margin " + " ".join(f"{m:.4f}" for m in lc_margin[name]) + "\n")
            if name in hf_greedy:
                fh.write("hf " + " ".join(map(str, hf_greedy[name])) + "\n")
            same = hf_greedy.get(name) == lc_greedy[name]
            print(f"{name}: greedy lc vs hf identical: {same}")
            print("   ", repr(llm.detokenize(lc_greedy[name]).decode(errors="replace")))

    # Perplexity as llama-perplexity computes it: chunks of PPL_CTX tokens, the
    # first token replaced by BOS when the model adds one, the second half scored.
    text = open(os.path.join(DATA, "perplexity_gpl3.txt"), encoding="utf-8").read()
    del llm
    llm = llama_cpp_model(args.model, PPL_CTX)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
    toks = llm.tokenize(text.encode(), add_bos=add_bos, special=False)
    n_chunk = len(toks) // PPL_CTX
    first = PPL_CTX // 2
    nll, count = 0.0, 0
    for c in range(n_chunk):
        chunk = toks[c * PPL_CTX:(c + 1) * PPL_CTX]
        if add_bos:
            chunk = [llm.token_bos()] + chunk[1:]
        llm.reset()
        llm.eval(chunk)
        scores = np.array(llm.scores[:PPL_CTX], dtype=np.float64)
        for j in range(first, PPL_CTX - 1):
            row = scores[j]
            mx = row.max()
            lse = mx + math.log(np.exp(row - mx).sum())
            nll -= row[toks[c * PPL_CTX + j + 1]] - lse
            count += 1
    ppl = math.exp(nll / count)
    with open(os.path.join(DATA, "perplexity_smollm2.txt"), "w") as fh:
        fh.write(f"# llama.cpp (llama-cpp-python {version}) perplexity of perplexity_gpl3.txt, "
                 "computed as llama-perplexity does\n")
        fh.write(f"ctx {PPL_CTX}\nchunks {n_chunk}\ntokens {len(toks)}\nppl {ppl:.6f}\n")
    print(f"perplexity {ppl:.4f} over {n_chunk} chunks of {PPL_CTX} ({len(toks)} tokens)")


if __name__ == "__main__":
    main()
