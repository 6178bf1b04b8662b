#!/usr/bin/env python3
"""Sentence embeddings per second: pocketlm against sentence-transformers (torch, CPU) on all-MiniLM-L6-v2.

1,000 sentences of 8 to 128 tokens (deterministic mixtures of the words of tests/data/perplexity_gpl3.txt),
embedded in batches of 32 with the same thread count on both sides (torch.set_num_threads), each side in its
own process so that its peak RSS (ru_maxrss) is its own. pocketlm runs the GGUF files converted from the same
model (F16 by default; --types f32,f16,q8_0 for more), sentence-transformers the model zip's safetensors.
One run, no warm-up beyond one batch; the cosine of the two sides' embeddings is reported too.

    python bench/embed_bench.py --st-python /path/to/venv-with-sentence-transformers/bin/python
    python bench/embed_bench.py --threads 2 --types f16,q8_0 --json /tmp/embed.json

The model comes from the cache (python -m pocketlm download all-minilm-l6-v2, which also keeps the zip);
other GGUF types are converted into the cache on first use. Without --st-python (or when that interpreter lacks
sentence-transformers) only pocketlm is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sentences(n: int, seed: int = 7):
    words = open(os.path.join(ROOT, "tests", "data", "perplexity_gpl3.txt"), encoding="utf-8").read().split()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(5, 90)  # about 8 to 128 WordPiece tokens with [CLS] and [SEP]
        i = rng.randrange(0, len(words) - k)
        out.append(" ".join(words[i:i + k]))
    return out


CHILD_PLM = r"""
import json, resource, sys, time
import numpy as np
import pocketlm
path, threads, batch, texts_file, out_file = sys.argv[1:6]
texts = json.load(open(texts_file))
m = pocketlm.Model(path, n_threads=int(threads))
n_tok = sum(len(m.tokenize(t)) for t in texts)
m.embed(texts[:int(batch)], batch_size=int(batch))
t0 = time.perf_counter()
e = m.embed(texts, batch_size=int(batch))
dt = time.perf_counter() - t0
np.save(out_file, e)
print(json.dumps({"seconds": dt, "tokens": n_tok, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_ST = r"""
import json, resource, sys, time, zipfile, tempfile
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from sentence_transformers import SentenceTransformer
zip_path, threads, batch, texts_file, out_file = sys.argv[1:6]
texts = json.load(open(texts_file))
d = tempfile.mkdtemp()
zipfile.ZipFile(zip_path).extractall(d)
m = SentenceTransformer(d, device="cpu")
m.encode(texts[:int(batch)], batch_size=int(batch))
t0 = time.perf_counter()
e = m.encode(texts, batch_size=int(batch), normalize_embeddings=True, convert_to_numpy=True)
dt = time.perf_counter() - t0
np.save(out_file, e)
print(json.dumps({"seconds": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch": torch.__version__}))
"""


def run(python, code, args):
    r = subprocess.run([python, "-c", code] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"child failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--types", default="f16")
    ap.add_argument("--st-python", default=None, help="an interpreter with sentence-transformers and torch (CPU)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import numpy as np
    from pocketlm import registry
    from pocketlm.convert import convert

    zip_path = registry.source_path("all-minilm-l6-v2")
    results = {"threads": args.threads, "batch": args.batch, "sentences": args.n, "pocketlm": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tf = os.path.join(tmp, "texts.json")
        json.dump(sentences(args.n), open(tf, "w"))
        st = None
        if args.st_python:
            st = run(args.st_python, CHILD_ST, [zip_path, args.threads, args.batch, tf, os.path.join(tmp, "st.npy")])
            st["per_s"] = args.n / st["seconds"]
            results["sentence_transformers"] = st
            print(f"sentence-transformers (torch {st['torch']}): {st['per_s']:.1f} sentences/s, "
                  f"peak RSS {st['rss_mb']:.0f} MB")
        for kind in args.types.split(","):
            path = registry.download("all-minilm-l6-v2") if kind == "f16" else \
                os.path.join(registry.cache_dir(), f"all-MiniLM-L6-v2.{kind.upper()}.gguf")
            if not os.path.isfile(path):
                convert(zip_path, path, kind)
            out = os.path.join(tmp, f"plm-{kind}.npy")
            r = run(sys.executable, CHILD_PLM, [path, args.threads, args.batch, tf, out])
            r["per_s"] = args.n / r["seconds"]
            line = (f"pocketlm {kind}: {r['per_s']:.1f} sentences/s ({r['tokens'] / r['seconds']:.0f} tokens/s, "
                    f"{r['tokens'] / args.n:.1f} tokens per sentence), peak RSS {r['rss_mb']:.0f} MB")
            if st:
                a, b = np.load(out), np.load(os.path.join(tmp, "st.npy"))
                cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
                r["ratio"] = r["per_s"] / st["per_s"]
                r["min_cosine"] = float(cos.min())
                line += f"; {r['ratio']:.2f}x sentence-transformers, min cosine {cos.min():.6f}"
            results["pocketlm"][kind] = r
            print(line)
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
