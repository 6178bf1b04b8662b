#!/usr/bin/env python3
"""Write the Gemma 3 270M forward-pass fixtures under tests/data from llama.cpp.

A development tool, not a CI step: it needs llama-cpp-python (and, for a second
opinion on the logits, transformers with the CPU build of torch reading the GGUF).
It reuses the helpers of tools/make_fixtures.py and writes the same formats:

    python3 tools/make_gemma3_fixtures.py [--model ~/.cache/pocketlm/gemma-3-270m-q4_k_m.gguf]

  tests/data/logits_gemma3.txt      top-20 logits at the last position of 6 prompts (llama.cpp
                                    "lc", transformers "hf"); the "long" prompt is the first
                                    LONG_TOKENS tokens of perplexity_gpl3.txt, longer than the
                                    model's sliding window, so the local layers' window matters
  tests/data/greedy_gemma3.txt      greedy 48-token continuations of 5 prompts with llama.cpp's
                                    top-1 minus top-2 margin at each step
  tests/data/perplexity_gemma3.txt  llama.cpp's perplexity of perplexity_gpl3.txt computed as
                                    llama-perplexity does (ctx 512, BOS first, second half scored),
                                    and transformers' float32 one ("hf_ppl")

Prompts are stored as token ids (llama.cpp's tokenization): these fixtures test the
forward pass; tokens_gemma3.tsv tests the tokenizer.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import DATA, N_GREEDY, N_TOP, PPL_CTX, fmt_top, llama_cpp_model, top  # noqa: E402

PROMPTS = [
    ("capital", "The capital of France is", False),
    ("story", "Once upon a time, in a small village,", False),
    ("code", "def fibonacci(n):\n    ", False),
    ("chat", "<start_of_turn>user\nWhat is the boiling point of water?<end_of_turn>\n<start_of_turn>model\n", True),
    ("colors", "The three primary colors are", False),
]
LONG_TOKENS = 800  # > the 512-token sliding window of Gemma 3 270M's local layers


def transformers_version():
    import transformers

    return transformers.__version__


def default_model():
    cache = os.environ.get("POCKETLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pocketlm")
    return os.environ.get("POCKETLM_GEMMA3") or os.path.join(cache, "gemma-3-270m-q4_k_m.gguf")


def is_eog(llm, tok):
    """End of generation as llama.cpp decides it (EOS, <end_of_turn>, ...)."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))


def greedy(llm, ids):
    llm.reset()
    llm.eval(ids)
    out, margins = [], []
    for _ in range(N_GREEDY):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tok = int(np.argmax(row))
        out.append(tok)
        margins.append(float(row[tok] - np.partition(row, -2)[-2]))
        if is_eog(llm, tok):
            break
        llm.eval([tok])
    return out, margins


def perplexity(path, text):
    """llama-perplexity's number: chunks of PPL_CTX, BOS first, second half scored."""
    llm = llama_cpp_model(path, PPL_CTX)
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
            nll -= row[toks[c * PPL_CTX + j + 1]] - (mx + math.log(np.exp(row - mx).sum()))
            count += 1
    return math.exp(nll / count), n_chunk, len(toks)


def hf_perplexity(model, toks, add_bos, bos):
    """The same number from transformers' float32 forward pass."""
    import torch

    n_chunk, first, nll, count = len(toks) // PPL_CTX, PPL_CTX // 2, 0.0, 0
    for c in range(n_chunk):
        chunk = toks[c * PPL_CTX:(c + 1) * PPL_CTX]
        if add_bos:
            chunk = [bos] + chunk[1:]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([chunk])).logits[0].double(), -1)
        for j in range(first, PPL_CTX - 1):
            nll -= lp[j, toks[c * PPL_CTX + j + 1]].item()
            count += 1
    return math.exp(nll / count)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=default_model(), help="gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers second opinion")
    args = ap.parse_args()
    if not os.path.exists(args.model):
        sys.exit(f"no model at {args.model}: run tools/fetch_gemma3.sh")

    import llama_cpp

    version = getattr(llama_cpp, "__version__", "?")
    text = open(os.path.join(DATA, "perplexity_gpl3.txt"), encoding="utf-8").read()
    llm = llama_cpp_model(args.model, 1024)
    cases = []
    for name, prompt, special in PROMPTS:
        cases.append((name, llm.tokenize(prompt.encode(), add_bos=True, special=special)))
    long_ids = llm.tokenize(text.encode(), add_bos=True, special=False)[:LONG_TOKENS]

    lc_top = {}
    for name, ids in cases + [("long", long_ids)]:
        llm.reset()
        llm.eval(ids)
        lc_top[name] = top(np.array(llm.scores[len(ids) - 1], dtype=np.float32))
    lc_greedy = {name: greedy(llm, ids) for name, ids in cases}
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
    ppl_toks, bos = llm.tokenize(text.encode(), add_bos=add_bos, special=False), llm.token_bos()

    hf_top, hf_ppl = {}, None
    if not args.no_hf:
        import torch
        from transformers import AutoModelForCausalLM

        d, f = os.path.split(os.path.abspath(args.model))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        model.eval()
        for name, ids in cases + [("long", long_ids)]:
            with torch.no_grad():
                hf_top[name] = top(model(torch.tensor([ids])).logits[0, -1].numpy())
        hf_ppl = hf_perplexity(model, ppl_toks, add_bos, bos)

    with open(os.path.join(DATA, "logits_gemma3.txt"), "w") as fh:
        fh.write(f"# Gemma 3 270M Q4_K_M: top-{N_TOP} logits at the last prompt position; llama-cpp-python {version} "
                 "(lc), transformers reading the GGUF in float32 (hf). 'long' is the first "
                 f"{LONG_TOKENS} tokens of perplexity_gpl3.txt (beyond the sliding window)\n")
        for name, ids in cases + [("long", long_ids)]:
            fh.write(f"case {name}\n")
            fh.write("ids " + " ".join(map(str, ids)) + "\n")
            fh.write("lc " + fmt_top(lc_top[name]) + "\n")
            if name in hf_top:
                fh.write("hf " + fmt_top(hf_top[name]) + "\n")
    with open(os.path.join(DATA, "greedy_gemma3.txt"), "w") as fh:
        fh.write(f"# Gemma 3 270M Q4_K_M: greedy continuations ({N_GREEDY} tokens or until end of generation); "
                 f"llama-cpp-python {version}, with its top-1 minus top-2 logit margin at each step\n")
        for name, ids in cases:
            out, margins = lc_greedy[name]
            fh.write(f"case {name}\n")
            fh.write("ids " + " ".join(map(str, ids)) + "\n")
            fh.write("lc " + " ".join(map(str, out)) + "\n")
            fh.write("margin " + " ".join(f"{m:.4f}" for m in margins) + "\n")
            print(f"{name}: {llm.detokenize(out).decode(errors='replace')!r}")
    del llm

    ppl, n_chunk, n_tok = perplexity(args.model, text)
    with open(os.path.join(DATA, "perplexity_gemma3.txt"), "w") as fh:
        fh.write(f"# Gemma 3 270M Q4_K_M: llama.cpp (llama-cpp-python {version}) perplexity of perplexity_gpl3.txt, "
                 "computed as llama-perplexity does\n")
        fh.write(f"ctx {PPL_CTX}\nchunks {n_chunk}\ntokens {n_tok}\nppl {ppl:.6f}\n")
        if hf_ppl is not None:
            fh.write(f"# the same computed by transformers {transformers_version()} in float32 from the dequantized GGUF\n")
            fh.write(f"hf_ppl {hf_ppl:.6f}\n")
    print(f"perplexity {ppl:.4f} over {n_chunk} chunks of {PPL_CTX} ({n_tok} tokens); transformers {hf_ppl}")


if __name__ == "__main__":
    main()
