#!/usr/bin/env python3
"""Classify many support tickets on a Ray cluster: one pocketlm model per worker process, rows streamed in batches.

Ray Data sends batches of rows to a pool of actors; each actor loads the model once (pocketlm maps the GGUF
file, so the actors of one machine share one copy of the weights) and appends ``label`` and ``scores`` to every
row. A worker that dies is restarted and its batch redone: no row is lost or repeated.

    python examples/ray_classify.py                          # sample tickets, a local Ray with 2 workers
    python examples/ray_classify.py --file tickets.txt       # one ticket per line ("-": stdin)
    python examples/ray_classify.py --address auto           # the cluster `ray start` joined this machine to
    python examples/ray_classify.py --workers 8 --threads 4  # 8 actors of 4 CPUs each (32 CPUs in all)

Needs ``pip install "pocketlm[ray]"``. On a cluster, ``--model`` must name a GGUF file readable at that path on
every node (by default the default model: ``$POCKETLM_MODEL``, else each node's cache, which
``python -m pocketlm download`` fills).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

LABELS = ["billing", "technical problem", "delivery", "account access"]

SAMPLE_TICKETS = [
    "I was charged twice for my subscription this month.",
    "The app crashes every time I upload a photo.",
    "My order still hasn't arrived after two weeks.",
    "I forgot my password and the reset email never comes.",
    "Why is there a $15 fee on my invoice?",
    "The tracking number you sent doesn't work.",
    "I get error 500 when I open the dashboard.",
    "My account is locked after too many login attempts.",
]


def read_texts(path: Optional[str]) -> List[str]:
    if path is None:
        return list(SAMPLE_TICKETS)
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with f:
        return [line.strip() for line in f if line.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", help="tickets, one per line ('-': stdin); default: a few samples")
    ap.add_argument("--labels", default=",".join(LABELS), help="comma-separated labels (default: %(default)s)")
    ap.add_argument("--address", help="a running cluster (auto, or host:port); default: start Ray here")
    ap.add_argument("--workers", type=int, default=2, help="actors, each with its own model (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="CPUs per actor = the model's n_threads (default 1)")
    ap.add_argument("--batch-size", type=int, default=16, help="rows per batch (default 16)")
    ap.add_argument("--model", help="GGUF path readable on every node (default: the default model)")
    args = ap.parse_args(argv)

    import ray
    from pocketlm.distributed import RayClassifier

    texts = read_texts(args.file)
    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.workers * args.threads, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    out = ds.map_batches(RayClassifier, fn_constructor_kwargs={"labels": labels, "model_path": args.model},
                         compute=ray.data.ActorPoolStrategy(size=args.workers), num_cpus=args.threads,
                         batch_size=args.batch_size)
    rows = sorted(out.take_all(), key=lambda r: r["id"])   # or out.write_parquet("results/") for big jobs
    dt = time.perf_counter() - t0
    for r in rows:
        print(f"[{r['label']:>{max(map(len, labels))}} {max(r['scores']):.2f}] {r['text']}")
    print(f"classified {len(rows)} texts on {args.workers} Ray workers x {args.threads} threads in {dt:.1f} s "
          f"({len(rows) / dt:.1f} texts/s, model loading included)")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
