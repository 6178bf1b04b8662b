#!/usr/bin/env python3
"""Rows per second of pocketlm.distributed on Ray Data and Dask with 1 and 2 worker processes, and what each
worker costs in memory.

The job: zero-shot classification of short support tickets into 3 labels with the default model, each worker
process one model with ``--threads`` threads (default 1: one worker per core). Each worker appends, to every row
it returns, its pid and the figures of /proc/self/smaps_rollup (RSS, PSS) and of its mappings of the GGUF file
(/proc/self/smaps). The table shows, per worker, the largest figures seen: PSS counts a page shared by N processes
as 1/N, so the model's PSS halving with 2 workers, while its RSS stays whole, shows that the weights are one copy
in the page cache, mapped by both. Any other process that maps the same file (another job, a notebook) takes
its share too: RSS / PSS of the model file estimates how many processes map it.

Times are wall-clock seconds from submitting the job to holding every row, with the cluster already started; the
actors' or tasks' start and the model loads are included (a few seconds: they are why a short job's rows/s is
below the steady rate).

    python bench/distributed_bench.py                         # 2,000 texts, Ray and Dask, 1 and 2 workers
    python bench/distributed_bench.py --texts 400 --engines dask --json /tmp/dist.json

Needs ``pip install "pocketlm[ray,dask]"``. Run it on an otherwise idle machine: the workers' threads compete with
any other process for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Dict, List, Optional

LABELS = ["billing", "technical problem", "shipping"]
_WHO = ["My", "Our", "The", "A customer's", "This"]
_WHAT = ["invoice", "laptop", "parcel", "refund", "router", "password", "delivery", "card", "app", "order"]
_HOW = ["is wrong", "will not start", "never arrived", "was charged twice", "keeps crashing", "is late",
        "got lost", "shows an error", "was damaged", "needs a change"]


def tickets(n: int) -> List[str]:
    return [f"{_WHO[i % 5]} {_WHAT[i // 5 % 10]} {_HOW[i // 50 % 10]} (#{i})" for i in range(n)]


def memory(model_path: str) -> Dict[str, int]:
    """This process's RSS and PSS, and those of its mappings of the model file, in KiB (Linux)."""
    out = {"rss": 0, "pss": 0, "model_rss": 0, "model_pss": 0}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(line.split()[1])
    real = os.path.realpath(model_path)
    in_model = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):   # a mapping's header line
                in_model = len(head) >= 6 and os.path.realpath(head[5]) == real
            elif in_model and head[0] in ("Rss:", "Pss:"):
                out["model_" + head[0][:-1].lower()] += int(head[1])
    return out


def _with_memory(columns: Dict[str, Any], n: int, model_path: str) -> Dict[str, Any]:
    mem = memory(model_path)
    columns["pid"] = [os.getpid()] * n
    for k, v in mem.items():
        columns[k] = [v] * n
    return columns


def run_ray(texts: List[str], workers: int, threads: int, batch_size: int, model_path: str) -> Dict[str, Any]:
    import ray

    from pocketlm.distributed import RayClassifier

    class Measured(RayClassifier):
        def __call__(self, batch):
            out = super().__call__(batch)
            n = len(out["label"])
            for k, v in _with_memory({}, n, model_path).items():
                out[k] = v
            return out

    ds = ray.data.from_items([{"text": t} for t in texts])
    t0 = time.perf_counter()
    rows = ds.map_batches(Measured, fn_constructor_kwargs={"labels": LABELS, "model_path": model_path},
                          compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads,
                          batch_size=batch_size, batch_format="pandas").take_all()
    return {"seconds": time.perf_counter() - t0, "rows": rows}


def _classify_measured(part, model_path, **kwargs):
    from pocketlm.distributed import classify_partition

    out = classify_partition(part, model_path=model_path, **kwargs)
    for k, v in _with_memory({}, len(out), model_path).items():
        out[k] = v
    return out


def run_dask(client: Any, texts: List[str], batch_size: int, model_path: str) -> Dict[str, Any]:
    import dask.dataframe as dd
    import pandas as pd

    df = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=max(1, len(texts) // batch_size))
    meta = df._meta.assign(label=pd.Series([], dtype=object), scores=pd.Series([], dtype=object),
                           pid=pd.Series([], dtype="int64"), rss=pd.Series([], dtype="int64"),
                           pss=pd.Series([], dtype="int64"), model_rss=pd.Series([], dtype="int64"),
                           model_pss=pd.Series([], dtype="int64"))
    t0 = time.perf_counter()
    out = df.map_partitions(_classify_measured, model_path, labels=LABELS, meta=meta).compute()
    return {"seconds": time.perf_counter() - t0, "rows": out.to_dict("records")}


def summarize(engine: str, workers: int, threads: int, result: Dict[str, Any], n: int) -> Dict[str, Any]:
    rows = result["rows"]
    if len(rows) != n:
        raise SystemExit(f"{engine}: {len(rows)} rows came back for {n} texts")
    per: Dict[int, Dict[str, int]] = {}
    for r in rows:
        w = per.setdefault(int(r["pid"]), {"rows": 0, "rss": 0, "pss": 0, "model_rss": 0, "model_pss": 0})
        w["rows"] += 1
        for k in ("rss", "pss", "model_rss", "model_pss"):
            w[k] = max(w[k], int(r[k]))
    return {"engine": engine, "workers": workers, "threads": threads, "texts": n,
            "seconds": round(result["seconds"], 2), "rows_per_s": round(n / result["seconds"], 2),
            "per_worker": [dict(pid=pid, **w) for pid, w in sorted(per.items())],
            "labels": sorted((r["text"], r["label"]) for r in rows)}


def busy_share(t0: float, cpu0: float) -> Optional[float]:
    """The share of all CPUs busy (any process) since (t0, cpu0), from /proc/stat."""
    try:
        return (cpu_busy() - cpu0) / ((time.monotonic() - t0) * os.sysconf("SC_CLK_TCK") * os.cpu_count())
    except OSError:
        return None


def cpu_busy() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return float(sum(v) - v[3] - v[4])   # all but idle and iowait, in clock ticks


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=2000, help="texts to classify (default 2000)")
    ap.add_argument("--workers", default="1,2", help="worker counts to run (default 1,2)")
    ap.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")
    ap.add_argument("--batch-size", type=int, default=50, help="rows per batch or partition (default 50)")
    ap.add_argument("--engines", default="ray,dask", help="ray, dask or both (default ray,dask)")
    ap.add_argument("--model", help="GGUF file (default: the default model)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)

    import pocketlm

    model_path = os.path.realpath(args.model or pocketlm.default_model_path())
    texts = tickets(args.texts)
    counts = [int(w) for w in args.workers.split(",")]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    report: Dict[str, Any] = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": platform.processor()
                              or platform.machine(), "cpus": os.cpu_count(), "model": os.path.basename(model_path),
                              "model_bytes": os.path.getsize(model_path), "runs": []}
    for engine in engines:
        for workers in counts:
            t0, cpu0 = time.monotonic(), cpu_busy()
            if engine == "ray":
                import ray

                ray.init(num_cpus=workers * args.threads, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
                ray.data.DataContext.get_current().enable_progress_bars = False
                try:
                    res = run_ray(texts, workers, args.threads, args.batch_size, model_path)
                finally:
                    ray.shutdown()
            elif engine == "dask":
                from dask.distributed import Client, LocalCluster

                with LocalCluster(n_workers=workers, threads_per_worker=args.threads,
                                  dashboard_address=None) as cluster, Client(cluster) as client:
                    res = run_dask(client, texts, args.batch_size, model_path)
            else:
                raise SystemExit(f"unknown engine {engine!r} (ray or dask)")
            run = summarize(engine, workers, args.threads, res, len(texts))
            share = busy_share(t0, cpu0)
            run["cpu_busy_share"] = None if share is None else round(share, 2)
            report["runs"].append(run)
            print(f"{engine:>4} {workers} worker(s) x {args.threads} thread(s): {run['rows_per_s']:7.2f} rows/s "
                  f"({len(texts)} texts in {run['seconds']:.1f} s; CPUs busy {share:.0%} meanwhile)", flush=True)
            for w in run["per_worker"]:
                print(f"       pid {w['pid']:>7}: {w['rows']:5d} rows  RSS {w['rss'] / 1024:6.1f} MiB  "
                      f"PSS {w['pss'] / 1024:6.1f} MiB  model file: RSS {w['model_rss'] / 1024:5.1f} MiB  "
                      f"PSS {w['model_pss'] / 1024:5.1f} MiB (~{w['model_rss'] / max(w['model_pss'], 1):.1f} processes "
                      "map it)", flush=True)
    labels = {tuple(r.pop("labels")) for r in report["runs"]}
    report["same_labels_in_every_run"] = len(labels) == 1
    print(f"same labels in every run: {len(labels) == 1}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
