"""Side-by-side speed of pocketlm and llama.cpp on one GGUF file: the driver.

Runs build/plm-bench (pocketlm, bench/plm_bench.c) and bench/llama_bench.py
(llama.cpp through llama-cpp-python), each in its own process, alternating
between them for --rounds rounds (the order flips every round, so slow drift of
the machine falls on both alike). It takes the median of each figure across
rounds and prints a Markdown table with the ratios, the date, the CPU and the
thread count; the same goes to a JSON file. It also measures the machine's read
bandwidth (numpy, one slice per thread) and reports each generation figure as a
share of the bandwidth limit: a decoded token has to read every weight once, so
tokens/s can be at most bandwidth / tensor bytes.

Other work on the machine skews every figure, badly when it takes a core from a
spinning thread pool: before each run the driver waits (up to --wait-idle
seconds) for the CPUs to be idle, measures how much CPU time other processes
took during the run, repeats a disturbed run (up to --retries times), and flags
the table when one stayed disturbed.

    python3 bench/run.py --threads 2             # or: make bench
    python3 bench/run.py path/to/model.gguf --threads 4 --rounds 5 --json /tmp/r.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llama_bench import default_model_path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ENGINES = ("pocketlm", "llama.cpp")
RUN_TIMEOUT_S = 600
BUSY_WARN = 0.10  # share of the CPUs used by other processes above which results are flagged


class BenchError(RuntimeError):
    """A benchmark process failed or printed something that is not its JSON result."""


class GGUFError(ValueError):
    """The file is not a GGUF file this parser understands."""


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" if absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU-seconds over all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / hz, sum(fields) / hz


def _children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_for_idle(timeout_s: float) -> float:
    """Waits until under BUSY_WARN of the CPUs are busy (sampled over 0.5 s), or timeout_s passes.

    Returns the last busy share (0..1). Call it while this program idles.
    """
    deadline = time.monotonic() + timeout_s
    said = False
    while True:
        b0, t0 = _cpu_seconds()
        time.sleep(0.5)
        b1, t1 = _cpu_seconds()
        share = (b1 - b0) / max(1e-9, t1 - t0)
        if share <= BUSY_WARN or time.monotonic() >= deadline:
            return share
        if not said:
            print(f"  waiting: other processes keep the CPUs {share:.0%} busy", file=sys.stderr, flush=True)
            said = True
        time.sleep(2)


def gguf_tensor_data_bytes(path: Path) -> int:
    """Bytes of tensor data in a GGUF file: from the aligned end of the header to the end of the file.

    Only the header is parsed (metadata values are skipped, general.alignment is read).
    """
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:

        def read(fmt: str):
            data = f.read(struct.calcsize("<" + fmt))
            if len(data) != struct.calcsize("<" + fmt):
                raise GGUFError(f"{path}: header ends early at byte {f.tell()}")
            return struct.unpack("<" + fmt, data)[0]

        def read_str() -> bytes:
            return f.read(read("Q"))

        def skip_value(vtype: int):
            if vtype == 8:
                return read_str()
            if vtype == 9:
                etype, n = read("I"), read("Q")
                if etype in scalar:
                    f.seek(n * struct.calcsize(scalar[etype]), os.SEEK_CUR)
                else:
                    for _ in range(n):
                        skip_value(etype)
                return None
            if vtype not in scalar:
                raise GGUFError(f"{path}: unknown metadata type {vtype} at byte {f.tell()}")
            return read(scalar[vtype])

        if f.read(4) != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (bad magic)")
        version = read("I")
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = read("Q"), read("Q")
        alignment = 32
        for _ in range(n_kv):
            key = read_str()
            value = skip_value(read("I"))
            if key == b"general.alignment":
                alignment = int(value)
        for _ in range(n_tensors):
            read_str()
            n_dims = read("I")
            f.seek(8 * n_dims + 4 + 8, os.SEEK_CUR)  # dims, type, offset
        start = -(-f.tell() // alignment) * alignment
    return path.stat().st_size - start


def read_bandwidth(n_threads: int, size: int = 1 << 30, passes: int = 5) -> float:
    """Best read bandwidth in bytes/s of summing a `size`-byte float64 array, one slice per thread.

    numpy releases the GIL inside the sum, so the threads read in parallel, like the engines' workers.
    """
    import numpy as np

    a = np.ones(size // 8)  # written once, so every page is really there
    slices = np.array_split(a, n_threads)
    best = 0.0
    with ThreadPoolExecutor(n_threads) as pool:
        for _ in range(passes):
            t0 = time.perf_counter()
            list(pool.map(np.sum, slices))
            best = max(best, a.nbytes / (time.perf_counter() - t0))
    return best


def run_engine(engine: str, args: argparse.Namespace) -> dict:
    """Runs one engine's benchmark in a fresh process and returns its JSON result.

    The result gains "other_cpu_share": the share of the CPUs that processes
    other than the benchmark kept busy while it ran.
    """
    common = ["-m", str(args.model), "-t", str(args.threads), "-p", str(args.prompt), "-n", str(args.gen),
              "-r", str(args.reps)]
    if engine == "pocketlm":
        cmd = [str(args.bench_bin)] + common
    else:
        cmd = [sys.executable, str(BENCH_DIR / "llama_bench.py")] + common
    busy0, total0 = _cpu_seconds()
    own0 = _children_cpu_seconds()
    # ru_maxrss survives exec, so a benchmark started straight from this process
    # would report this process's peak (the 1 GiB bandwidth array) if it is
    # higher. A shell that forks it (the `exit` after it stops the shell from
    # exec'ing in place) starts its peak afresh.
    proc = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh"] + cmd, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    busy1, total1 = _cpu_seconds()
    other = max(0.0, (busy1 - busy0) - (_children_cpu_seconds() - own0)) / max(1e-9, total1 - total0)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr.strip()}")
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"{' '.join(cmd)} printed no JSON ({e}):\n{proc.stdout[:500]}") from e
    result["other_cpu_share"] = round(other, 3)
    return result


def run_engine_undisturbed(engine: str, args: argparse.Namespace) -> dict:
    """run_engine after waiting for idle CPUs, repeated up to args.retries times while other load disturbs it."""
    for attempt in range(args.retries + 1):
        wait_for_idle(args.wait_idle)
        result = run_engine(engine, args)
        if result["other_cpu_share"] <= BUSY_WARN:
            break
        print(f"  other processes used {result['other_cpu_share']:.0%} of the CPUs during the run"
              + ("; running it again" if attempt < args.retries else "; keeping it, flagged"),
              file=sys.stderr, flush=True)
    return result


METRICS = (
    # key, label, unit, higher is better
    ("pp_tok_s", "prompt processing, {prompt} tokens", "tok/s", True),
    ("tg_tok_s", "generation, {gen} tokens", "tok/s", True),
    ("ttft_ms", "time to first token, 64-token prompt", "ms", False),
    ("peak_rss_mib", "peak RSS", "MiB", False),
    ("own_rss_mib", "peak RSS minus RSS before loading", "MiB", False),
)


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Median across rounds of each metric, per engine."""
    out = {}
    for engine, results in runs.items():
        for r in results:
            r["own_rss_mib"] = r["peak_rss_mib"] - r["rss_before_load_mib"]
        out[engine] = {key: statistics.median(r[key] for r in results) for key, *_ in METRICS}
    return out


def ratio(a: float, b: float) -> float | None:
    """a / b, or None when b is 0."""
    return a / b if b else None


def fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def render(report: dict) -> str:
    """The Markdown table and the facts under it."""
    med, a, b = report["medians"], *ENGINES
    lines = [
        f"| metric | {a} | {b} | ratio {a}/{b} |",
        "|---|---:|---:|---|",
    ]
    for key, label, unit, higher in METRICS:
        better = ">1: pocketlm faster" if higher else ("<1: pocketlm faster" if key == "ttft_ms" else
                                                        "<1: pocketlm smaller")
        name = label.format(**report["settings"])
        lines.append(f"| {name} ({unit}) | {fmt(med[a][key])} | {fmt(med[b][key])} | "
                     f"{fmt(report['ratios'][key])} ({better}) |")
    bw = report["bandwidth"]
    share = report["bandwidth_share"]
    lines.append(f"| generation / bandwidth limit | {share[a]:.0%} | {share[b]:.0%} | "
                 f"{fmt(ratio(share[a], share[b]))} (>1: pocketlm closer) |")
    s = report["settings"]
    lines += [
        "",
        f"- date: {report['date']}; CPU: {report['cpu']}; threads: {s['threads']}; "
        f"{s['rounds']} alternating rounds of {s['reps']} repetitions; medians within and across rounds",
        f"- model: {Path(s['model']).name}, {report['model_bytes'] / 1e6:.1f} MB of tensor data",
        f"- read bandwidth: {bw['bytes_per_s'] / 1e9:.1f} GB/s (numpy sum of 1 GiB, {s['threads']} threads, "
        f"best of 5) -> at most {bw['limit_tok_s']:.0f} generated tok/s",
        f"- pocketlm {report['versions'][a]} ({report['kernels']} kernels); {report['versions'][b]}",
    ]
    if report["max_other_cpu_share"] > BUSY_WARN:
        lines.append(f"- WARNING: other processes used up to {report['max_other_cpu_share']:.0%} of the CPUs "
                     "during a run; these figures are not trustworthy")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", type=Path, default=None, help="GGUF file (default: the default model)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines (default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions inside each run (default 3)")
    ap.add_argument("--prompt", type=int, default=512, help="prompt-processing tokens (default 512)")
    ap.add_argument("--gen", type=int, default=128, help="generated tokens (default 128)")
    ap.add_argument("--json", type=Path, default=BENCH_DIR / "results" / "latest.json",
                    help="where to write the JSON report (default bench/results/latest.json)")
    ap.add_argument("--bench-bin", type=Path, default=REPO / "build" / "plm-bench", help="the plm-bench binary")
    ap.add_argument("--wait-idle", type=float, default=60.0,
                    help="seconds to wait for other processes to quiet down before each run (default 60)")
    ap.add_argument("--retries", type=int, default=2,
                    help="times to repeat a run that other processes disturbed (default 2)")
    ap.add_argument("--no-build", action="store_true", help="do not run `make build/plm-bench` first")
    args = ap.parse_args(argv)
    if min(args.threads, args.rounds, args.reps, args.prompt, args.gen) < 1:
        ap.error("--threads, --rounds, --reps, --prompt and --gen must be at least 1")
    if args.retries < 0 or args.wait_idle < 0:
        ap.error("--retries and --wait-idle cannot be negative")
    args.model = (args.model or default_model_path()).resolve()
    if not args.model.is_file():
        print(f"run.py: no model file at {args.model} (run `make model`)", file=sys.stderr)
        return 1
    if not args.no_build:
        subprocess.run(["make", "-s", "-C", str(REPO), "build/plm-bench"], check=True)

    model_bytes = gguf_tensor_data_bytes(args.model)
    wait_for_idle(args.wait_idle)
    bandwidth = read_bandwidth(args.threads)
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for rnd in range(args.rounds):
        for engine in ENGINES if rnd % 2 == 0 else ENGINES[::-1]:
            print(f"round {rnd + 1}/{args.rounds}: {engine}", file=sys.stderr, flush=True)
            runs[engine].append(run_engine_undisturbed(engine, args))

    report = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model_name(),
        "settings": {"model": str(args.model), "threads": args.threads, "rounds": args.rounds, "reps": args.reps,
                     "prompt": args.prompt, "gen": args.gen},
        "model_bytes": model_bytes,
        "bandwidth": {"bytes_per_s": bandwidth, "limit_tok_s": bandwidth / model_bytes},
        "versions": {e: runs[e][0]["version"] for e in ENGINES},
        "kernels": runs["pocketlm"][0].get("kernels", "?"),
        "max_other_cpu_share": max(r["other_cpu_share"] for e in ENGINES for r in runs[e]),
        "medians": summarize(runs),
        "runs": runs,
    }
    med = report["medians"]
    report["ratios"] = {key: ratio(med["pocketlm"][key], med["llama.cpp"][key]) for key, *_ in METRICS}
    report["bandwidth_share"] = {e: med[e]["tg_tok_s"] / report["bandwidth"]["limit_tok_s"] for e in ENGINES}
    report["table"] = render(report)
    print(report["table"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, GGUFError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"run.py: {e}", file=sys.stderr)
        sys.exit(1)
