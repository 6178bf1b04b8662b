#!/usr/bin/env python3
"""Embed a corpus on a Dask cluster, then find the passages nearest to a query.

The corpus is a Dask DataFrame; every worker process loads the model once (pocketlm maps the GGUF file, so the
workers of one machine share one copy of the weights) and appends a ``vector`` to each row of its partitions.
A worker that dies has its tasks rerun elsewhere: no row is lost or repeated.

    python examples/dask_embed.py                              # sample sentences, a local cluster of 2 workers
    python examples/dask_embed.py --file corpus.txt --query "my parcel is late"
    python examples/dask_embed.py --scheduler scheduler:8786   # a running cluster (dask scheduler / dask worker)
    python examples/dask_embed.py --save vectors.npy           # keep the embeddings

Needs ``pip install "pocketlm[dask]"``. On a cluster, ``--model`` must name a GGUF file readable at that path on
every worker (by default the default model: ``$POCKETLM_MODEL``, else each machine's cache, which
``python -m pocketlm download`` fills);
each worker's model runs as many threads as the worker has (``dask worker --nthreads``). The default 135M model's
embeddings are a rough measure of similarity; a larger model's are better.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

SAMPLE_CORPUS = [
    "The invoice lists a fee I did not agree to.",
    "I was charged twice for the same order.",
    "The parcel arrived with a broken box.",
    "Delivery was three days later than promised.",
    "The app closes itself when I open the camera.",
    "Error 500 appears on the dashboard after login.",
    "I cannot sign in since I changed my phone.",
    "Please send the password reset email again.",
    "How do I get my money back for a cancelled order?",
    "The courier left the package at the wrong address.",
]


def read_texts(path: Optional[str]) -> List[str]:
    if path is None:
        return list(SAMPLE_CORPUS)
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with f:
        return [line.strip() for line in f if line.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", help="passages, one per line ('-': stdin); default: a few samples")
    ap.add_argument("--query", default="I want a refund", help="what to search for (default: %(default)r)")
    ap.add_argument("--top", type=int, default=3, help="passages to show (default 3)")
    ap.add_argument("--scheduler", help="a running scheduler (host:8786); default: start a local cluster")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="threads per local worker = n_threads (default 1)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of the corpus (default 4)")
    ap.add_argument("--model", help="GGUF path readable on every worker (default: the default model)")
    ap.add_argument("--save", help="write the embeddings (rows in corpus order) to this .npy file")
    args = ap.parse_args(argv)

    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    from dask.distributed import Client, LocalCluster

    from pocketlm.distributed import dask_embed, load_model

    texts = read_texts(args.file)
    cluster = None if args.scheduler else LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                                                         dashboard_address=None)
    with Client(args.scheduler or cluster) as client:
        t0 = time.perf_counter()
        df = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=min(args.partitions, len(texts)))
        out = dask_embed(df, model_path=args.model).compute()   # or .to_parquet("vectors/") for big corpora
        dt = time.perf_counter() - t0
        vectors = np.stack(out["vector"].to_list())
        n_workers = len(client.nthreads())
    if cluster is not None:
        cluster.close()
    if args.save:
        np.save(args.save, vectors)
    # the vectors are unit length: the dot product is the cosine similarity
    query = load_model(args.model).embed(args.query)
    sims = vectors @ query
    print(f"embedded {len(texts)} texts ({vectors.shape[1]} dimensions) on {n_workers} Dask "
          f"workers in {dt:.1f} s ({len(texts) / dt:.1f} texts/s, model loading included)")
    print(f"nearest to {args.query!r}:")
    for i in np.argsort(-sims, kind="stable")[:args.top]:
        print(f"  {sims[i]:.3f}  {texts[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
