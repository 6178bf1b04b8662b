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

--suite runs the same comparison on the default model and on random-weight files with the
shapes of real models (tools/make_bench_models.py writes them; --make-models runs it for the
missing ones), one model after another, and prints one table of all of them (JSON in
bench/results/suite.json):

    python3 bench/run.py --suite --make-models   # or: make bench-suite
    python3 bench/run.py --suite --only Llama-3.2-1B --only Q4_0 --rounds 2 --reps 2
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

from llama_bench import GEN_PROMPT, TTFT_PROMPT, default_model_path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO / "tools"))
import make_bench_models  # noqa: E402  (the generated files' names and shapes)

ENGINES = ("pocketlm", "llama.cpp")
RUN_TIMEOUT_S = 600  # at least; a run expected to take longer gets 5 times its estimate
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


# The CPU flags that decide which kernel table pocketlm (and llama.cpp) can use, as /proc/cpuinfo spells them.
KERNEL_FLAGS = ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi",
                "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of KERNEL_FLAGS the CPU reports in /proc/cpuinfo (empty if it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in KERNEL_FLAGS if f in have]
    except OSError:
        pass
    return []


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


FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
              18: "Q6_K", 32: "BF16"}  # general.file_type (llama_ftype) -> name


def gguf_summary(path: Path) -> dict:
    """What the benchmark needs from a GGUF header, without reading tensor data.

    Returns {"tensor_bytes": bytes from the aligned end of the header to the end of the file,
    "n_params": weights in all tensors, "n_embd_params": weights of token_embd.weight,
    "tied": no output.weight tensor, "file_type": general.file_type's name or None,
    "name": general.name or None}. Metadata values other than those are skipped.
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
        alignment, file_type, name = 32, None, None
        for _ in range(n_kv):
            key = read_str()
            value = skip_value(read("I"))
            if key == b"general.alignment":
                alignment = int(value)
            elif key == b"general.file_type":
                file_type = FILE_TYPES.get(int(value), f"type {value}")
            elif key == b"general.name" and isinstance(value, bytes):
                name = value.decode(errors="replace")
        n_params = n_embd_params = 0
        tied = True
        for _ in range(n_tensors):
            tname = read_str()
            n_dims = read("I")
            count = 1
            for _ in range(n_dims):
                count *= read("Q")
            f.seek(4 + 8, os.SEEK_CUR)  # type, offset
            n_params += count
            if tname == b"token_embd.weight":
                n_embd_params = count
            elif tname == b"output.weight":
                tied = False
        start = -(-f.tell() // alignment) * alignment
    return {"tensor_bytes": path.stat().st_size - start, "n_params": n_params, "n_embd_params": n_embd_params,
            "tied": tied, "file_type": file_type, "name": name}


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
    env = None
    if engine == "pocketlm":
        cmd = [str(args.bench_bin)] + common
        if getattr(args, "kernels", None):
            env = dict(os.environ, POCKETLM_KERNELS=args.kernels)
    else:
        cmd = [sys.executable, str(BENCH_DIR / "llama_bench.py")] + common
    busy0, total0 = _cpu_seconds()
    own0 = _children_cpu_seconds()
    # ru_maxrss survives exec, so a benchmark started straight from this process
    # would report this process's peak (the 1 GiB bandwidth array) if it is
    # higher. A shell that forks it (the `exit` after it stops the shell from
    # exec'ing in place) starts its peak afresh.
    proc = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh"] + cmd, capture_output=True, text=True, env=env,
                          timeout=getattr(args, "run_timeout", RUN_TIMEOUT_S))
    busy1, total1 = _cpu_seconds()
    other = max(0.0, (busy1 - busy0) - (_children_cpu_seconds() - own0)) / max(1e-9, total1 - total0)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr.strip()}")
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"{' '.join(cmd)} printed no JSON ({e}):\n{proc.stdout[:500]}") from e
    if engine == "pocketlm" and getattr(args, "kernels", None) and result.get("kernels") != args.kernels:
        raise BenchError(f"--kernels {args.kernels}: pocketlm ran the {result.get('kernels')} table instead "
                         f"({proc.stderr.strip() or 'this CPU cannot run the one asked for'})")
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
        f"- CPU flags: {' '.join(report.get('cpu_flags', [])) or 'unknown'}",
        f"- model: {Path(s['model']).name}, {report['model_bytes'] / 1e6:.1f} MB of tensor data",
        f"- read bandwidth: {bw['bytes_per_s'] / 1e9:.1f} GB/s (numpy sum of 1 GiB, {s['threads']} threads, "
        f"best of 5) -> at most {bw['limit_tok_s']:.0f} generated tok/s",
        f"- pocketlm {report['versions'][a]} ({report['kernels']} kernels); {report['versions'][b]}",
    ]
    if report["max_other_cpu_share"] > BUSY_WARN:
        lines.append(f"- WARNING: other processes used up to {report['max_other_cpu_share']:.0%} of the CPUs "
                     "during a run; these figures are not trustworthy")
    return "\n".join(lines)


# Rough speeds for the time estimate, from the default model on this project's 2-vCPU VM
# (bench/README.md): prompt processing ran at about 28 GFLOP/s per thread (2 FLOPs per weight per token),
# generation at about 45 % of the read bandwidth. Loading costs a few seconds at most.
EST_FLOPS_PER_THREAD = 28e9
EST_BANDWIDTH_SHARE = 0.45
EST_PROCESS_START_S = 2.0


def estimate_run_s(summary: dict, args: argparse.Namespace, bandwidth: float) -> float:
    """Seconds one engine's benchmark process should take on an idle machine (a rough guide)."""
    # The token embedding is only a matrix product when it is also the output projection.
    mat_params = summary["n_params"] - (0 if summary["tied"] else summary["n_embd_params"])
    pp_tok_s = EST_FLOPS_PER_THREAD * args.threads / (2.0 * max(1, mat_params))
    tg_tok_s = EST_BANDWIDTH_SHARE * bandwidth / max(1, summary["tensor_bytes"])
    per_rep = (args.prompt + GEN_PROMPT + TTFT_PROMPT) / pp_tok_s + args.gen / tg_tok_s
    return EST_PROCESS_START_S + TTFT_PROMPT / pp_tok_s + args.reps * per_rep


def estimate_model_s(summary: dict, args: argparse.Namespace, bandwidth: float) -> float:
    """Seconds the alternating rounds of both engines should take on one model."""
    return args.rounds * len(ENGINES) * estimate_run_s(summary, args, bandwidth)


def measure_model(args: argparse.Namespace, bandwidth: float) -> dict:
    """The alternating rounds of both engines on args.model: the report (without its table)."""
    summary = gguf_summary(args.model)
    args.run_timeout = max(RUN_TIMEOUT_S, 5 * estimate_run_s(summary, args, bandwidth))
    model_bytes = summary["tensor_bytes"]
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for rnd in range(args.rounds):
        for engine in ENGINES if rnd % 2 == 0 else ENGINES[::-1]:
            print(f"round {rnd + 1}/{args.rounds}: {engine}", file=sys.stderr, flush=True)
            runs[engine].append(run_engine_undisturbed(engine, args))

    report = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model_name(),
        "cpu_flags": cpu_flags(),
        "settings": {"model": str(args.model), "threads": args.threads, "rounds": args.rounds, "reps": args.reps,
                     "prompt": args.prompt, "gen": args.gen, "kernels_forced": args.kernels},
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
    return report


# ----------------------------------------------------------------------------------- suite

SUITE_SHAPES = ("SmolLM2-135M", "Llama-3.2-1B")  # the acceptance set of issue 7; --qwen adds Qwen2.5-0.5B
DEFAULT_LABEL = "default"


def suite_entries(args: argparse.Namespace) -> list[dict]:
    """The models of the suite, in order: {"label", "shape", "type", "path"} each.

    The default model comes first, then each shape in each type. --only (repeatable) keeps the entries
    whose shape, type or label ("default") it names; shapes and types combine as a product.
    """
    shapes = list(SUITE_SHAPES) + (["Qwen2.5-0.5B"] if args.qwen else [])
    types = list(make_bench_models.TYPES)
    want_default = True
    if args.only:
        want = {o.lower() for o in args.only}
        known = {DEFAULT_LABEL} | {x.lower() for x in make_bench_models.SHAPES} | {t.lower() for t in types}
        if want - known:
            raise SystemExit(f"run.py: unknown --only value(s) {sorted(want - known)}; use {DEFAULT_LABEL!r}, "
                             f"shapes {list(make_bench_models.SHAPES)} or types {types}")
        picked_shapes = [x for x in make_bench_models.SHAPES if x.lower() in want]
        picked_types = [t for t in types if t.lower() in want]
        want_default = DEFAULT_LABEL in want
        if picked_shapes or picked_types:
            shapes = picked_shapes or shapes
            types = picked_types or types
        else:
            shapes = []
    entries = []
    if want_default:
        path = default_model_path()
        entries.append({"label": "SmolLM2-135M-Instruct (default model)", "shape": DEFAULT_LABEL, "type": None,
                        "path": path})
    for shape in shapes:
        for t in types:
            entries.append({"label": f"{shape} (random weights)", "shape": shape, "type": t,
                            "path": args.models_dir / make_bench_models.file_name(shape, t)})
    return entries


def make_missing_models(entries: list[dict], models_dir: Path) -> None:
    """Runs tools/make_bench_models.py for the shapes and types of entries whose file is missing."""
    missing = [e for e in entries if e["type"] and not e["path"].is_file()]
    if not missing:
        return
    only = sorted({e["shape"] for e in missing}) + sorted({e["type"] for e in missing})
    cmd = [sys.executable, str(REPO / "tools" / "make_bench_models.py"), "--out", str(models_dir)]
    for o in only:
        cmd += ["--only", o]
    print(f"making {len(missing)} model file(s): {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def fmt_min(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def render_suite(suite: dict) -> str:
    """One Markdown table of every model of the suite, and the facts under it."""
    s = suite["settings"]
    pp, tg = f"pp{s['prompt']}", f"tg{s['gen']}"
    lines = [
        f"| model | type | {pp} pocketlm | {pp} llama.cpp | {pp} ratio | {tg} pocketlm | {tg} llama.cpp | {tg} ratio "
        "| TTFT ms pocketlm / llama.cpp | peak RSS MiB pocketlm / llama.cpp | share of bandwidth limit pocketlm / llama.cpp |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in suite["models"]:
        med, r, share = m["medians"], m["ratios"], m["bandwidth_share"]
        a, b = med["pocketlm"], med["llama.cpp"]
        flag = " ⚠" if m["max_other_cpu_share"] > BUSY_WARN else ""
        lines.append(
            f"| {m['label']}{flag} | {m['type']} | {fmt(a['pp_tok_s'])} | {fmt(b['pp_tok_s'])} | "
            f"{fmt(r['pp_tok_s'])} | {fmt(a['tg_tok_s'])} | {fmt(b['tg_tok_s'])} | {fmt(r['tg_tok_s'])} | "
            f"{fmt(a['ttft_ms'])} / {fmt(b['ttft_ms'])} | {fmt(a['peak_rss_mib'])} / {fmt(b['peak_rss_mib'])} | "
            f"{share['pocketlm']:.0%} / {share['llama.cpp']:.0%} |")
    bw = suite["bandwidth"]
    lines += [
        "",
        f"- date: {suite['date']}; CPU: {suite['cpu']}; threads: {s['threads']}; {s['rounds']} alternating rounds "
        f"of {s['reps']} repetitions per model; medians within and across rounds",
        f"- CPU flags: {' '.join(suite.get('cpu_flags', [])) or 'unknown'}",
        f"- {pp}: prompt processing of {s['prompt']} tokens, {tg}: generation of {s['gen']} tokens (tok/s); "
        "ratios are pocketlm / llama.cpp (above 1: pocketlm faster); TTFT: time to first token after a 64-token "
        "prompt; bandwidth limit: generation tok/s x tensor bytes / read bandwidth",
        f"- read bandwidth: {bw['bytes_per_s'] / 1e9:.1f} GB/s (numpy sum of 1 GiB, {s['threads']} threads, "
        "best of 5)",
        f"- pocketlm {suite['versions']['pocketlm']} ({suite['kernels']} kernels); {suite['versions']['llama.cpp']}",
        f"- random-weight files: tools/make_bench_models.py (block types as llama-quantize picks them); "
        f"the suite took {fmt_min(suite['elapsed_s'])} (estimated {fmt_min(suite['estimated_s'])})",
    ]
    busy = [m["label"] + " " + str(m["type"]) for m in suite["models"] if m["max_other_cpu_share"] > BUSY_WARN]
    if busy:
        lines.append(f"- WARNING (⚠): other processes used over {BUSY_WARN:.0%} of the CPUs during a run of: "
                     f"{', '.join(busy)}; those figures are not trustworthy")
    return "\n".join(lines)


def run_suite(args: argparse.Namespace) -> int:
    """--suite: measure_model on every entry of suite_entries, one combined table and JSON."""
    entries = suite_entries(args)
    if not entries:
        print("run.py: --only selected no model", file=sys.stderr)
        return 1
    if args.make_models:
        make_missing_models(entries, args.models_dir)
    missing = [e["path"] for e in entries if not e["path"].is_file()]
    if missing:
        print("run.py: missing model file(s):\n  " + "\n  ".join(map(str, missing)) +
              "\nrun `python3 tools/make_bench_models.py` (or add --make-models; `make model` for the default)",
              file=sys.stderr)
        return 1
    if not args.no_build and not args.dry_run:
        subprocess.run(["make", "-s", "-C", str(REPO), "build/plm-bench"], check=True)

    t_start = time.monotonic()
    wait_for_idle(args.wait_idle)
    bandwidth = read_bandwidth(args.threads)
    summaries = [gguf_summary(e["path"]) for e in entries]
    estimates = [estimate_model_s(sm, args, bandwidth) for sm in summaries]
    print(f"suite: {len(entries)} models, {args.rounds} rounds x {args.reps} repetitions, {args.threads} threads: "
          f"estimated {fmt_min(sum(estimates))} (from the read bandwidth just measured, "
          f"{bandwidth / 1e9:.1f} GB/s; longer while other processes keep the CPUs busy)",
          file=sys.stderr, flush=True)
    for e, est in zip(entries, estimates):
        print(f"  {e['path'].name}: ~{fmt_min(est)}", file=sys.stderr)
    if args.dry_run:
        return 0

    models = []
    for i, (e, summary) in enumerate(zip(entries, summaries)):
        print(f"\n[{i + 1}/{len(entries)}] {e['path'].name}", file=sys.stderr, flush=True)
        sub = argparse.Namespace(**vars(args))
        sub.model = e["path"].resolve()
        report = measure_model(sub, bandwidth)
        report.update(label=e["label"], shape=e["shape"], type=e["type"] or summary["file_type"] or "?",
                      n_params=summary["n_params"])
        models.append(report)
        done = time.monotonic() - t_start
        # Scale the remaining estimate by how far off the estimates were so far.
        pace = done / max(1e-9, sum(estimates[:i + 1]))
        if i + 1 < len(entries):
            print(f"  {fmt_min(done)} so far; about {fmt_min(pace * sum(estimates[i + 1:]))} to go",
                  file=sys.stderr, flush=True)

    first = models[0]
    suite = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model_name(),
        "cpu_flags": cpu_flags(),
        "settings": {"threads": args.threads, "rounds": args.rounds, "reps": args.reps, "prompt": args.prompt,
                     "gen": args.gen, "models_dir": str(args.models_dir), "kernels_forced": args.kernels},
        "bandwidth": {"bytes_per_s": bandwidth},
        "versions": first["versions"],
        "kernels": first["kernels"],
        "estimated_s": round(sum(estimates), 1),
        "elapsed_s": round(time.monotonic() - t_start, 1),
        "max_other_cpu_share": max(m["max_other_cpu_share"] for m in models),
        "models": models,
    }
    for m in models:
        m["table"] = render(m)
    suite["table"] = render_suite(suite)
    print(suite["table"])
    json_path = args.json or BENCH_DIR / "results" / "suite.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(suite, indent=2) + "\n")
    print(f"\nwritten to {json_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", type=Path, default=None, help="GGUF file (default: the default model)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines (default 2)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions inside each run (default 3)")
    ap.add_argument("--prompt", type=int, default=512, help="prompt-processing tokens (default 512)")
    ap.add_argument("--gen", type=int, default=128, help="generated tokens (default 128)")
    ap.add_argument("--json", type=Path, default=None,
                    help="where to write the JSON report (default bench/results/latest.json, "
                         "with --suite bench/results/suite.json)")
    ap.add_argument("--bench-bin", type=Path, default=REPO / "build" / "plm-bench", help="the plm-bench binary")
    ap.add_argument("--wait-idle", type=float, default=60.0,
                    help="seconds to wait for other processes to quiet down before each run (default 60)")
    ap.add_argument("--retries", type=int, default=2,
                    help="times to repeat a run that other processes disturbed (default 2)")
    ap.add_argument("--no-build", action="store_true", help="do not run `make build/plm-bench` first")
    ap.add_argument("--kernels", choices=("scalar", "avx2", "avx512"), default=None,
                    help="force pocketlm's kernel table (POCKETLM_KERNELS); default: the best this CPU runs. "
                         "A table the CPU cannot run is an error, not a silent fallback")
    suite = ap.add_argument_group("suite", "several models, one table (see bench/README.md)")
    suite.add_argument("--suite", action="store_true",
                       help="the default model and the random-weight SmolLM2-135M and Llama-3.2-1B shapes in "
                            "Q4_0, Q4_1, Q8_0 and Q4_K_M, one after another")
    suite.add_argument("--qwen", action="store_true", help="with --suite: add the Qwen2.5-0.5B shape")
    suite.add_argument("--only", action="append", metavar="NAME",
                       help="with --suite: only these shapes and/or types, or 'default' (repeatable)")
    suite.add_argument("--models-dir", type=Path, default=None,
                       help="with --suite: where the random-weight files are (default: where "
                            "tools/make_bench_models.py writes them, ~/.cache/pocketlm/bench)")
    suite.add_argument("--make-models", action="store_true",
                       help="with --suite: write the missing random-weight files first")
    suite.add_argument("--dry-run", action="store_true",
                       help="with --suite: list the models and the estimated time, run nothing")
    args = ap.parse_args(argv)
    if min(args.threads, args.rounds, args.reps, args.prompt, args.gen) < 1:
        ap.error("--threads, --rounds, --reps, --prompt and --gen must be at least 1")
    if args.retries < 0 or args.wait_idle < 0:
        ap.error("--retries and --wait-idle cannot be negative")
    if args.suite:
        if args.model is not None:
            ap.error("--suite takes no model path (use --only to choose models)")
        args.models_dir = (args.models_dir or make_bench_models.default_out_dir()).expanduser()
        return run_suite(args)
    if args.qwen or args.only or args.models_dir or args.make_models or args.dry_run:
        ap.error("--qwen, --only, --models-dir, --make-models and --dry-run go with --suite")
    args.model = (args.model or default_model_path()).resolve()
    if not args.model.is_file():
        print(f"run.py: no model file at {args.model} (run `make model`)", file=sys.stderr)
        return 1
    if not args.no_build:
        subprocess.run(["make", "-s", "-C", str(REPO), "build/plm-bench"], check=True)

    wait_for_idle(args.wait_idle)
    bandwidth = read_bandwidth(args.threads)
    report = measure_model(args, bandwidth)
    report["table"] = render(report)
    print(report["table"])
    json_path = args.json or BENCH_DIR / "results" / "latest.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, GGUFError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"run.py: {e}", file=sys.stderr)
        sys.exit(1)
