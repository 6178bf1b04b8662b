#!/usr/bin/env python3
"""Write random-weight GGUF files with the shapes of real models, for the speed benchmark (bench/run.py --suite).

Decoding speed depends on the shapes and block types of the weights, not on their values, so a file
with random weights measures an engine as well as the real model would, without downloading it.
This tool writes, for each shape below, one file per type (Q4_0, Q4_1, Q8_0, Q4_K_M):

  shape          arch   n_embd layers heads kv  head ffn   vocab   rope theta rms eps ctx
  SmolLM2-135M   llama    576   30     9    3   64  1536   49152   1e5        1e-5    8192
  Llama-3.2-1B   llama   2048   16    32    8   64  8192  128256   5e5        1e-5    131072
  Qwen2.5-0.5B   qwen2    896   24    14    2   64  4864  151936   1e6        1e-6    32768  (Q, K, V biases)

(from each model's config.json; all three tie the output projection to the token embedding). Llama 3.2's
rope_freqs tensor (its "llama3" RoPE scaling, factor 32) is left out: both engines treat it as optional,
it changes which frequencies RoPE uses, not how much work it does.

Weights are random bytes in the block data with a valid, moderate F16 scale in every block: each
matrix's values have a standard deviation of about 1/sqrt(n_in) (so activations keep their size from
layer to layer), norm weights are 1 (F32), biases small. The block bytes are drawn directly (no float
quantization), so even the 1B shape takes seconds per file, most of it writing.

The block types per tensor follow llama.cpp's llama-quantize (src/llama-quant.cpp) for these ftypes,
with no importance matrix, as a file from llama-quantize would have them:

- the tied token embedding (which is also the output projection) takes the output tensor's rule:
  Q8_0 for Q8_0 files, otherwise Q6_K, which falls back to Q8_0 when n_embd is not a multiple of
  256 (SmolLM2, Qwen2.5): so Llama-3.2-1B's Q4_0/Q4_1/Q4_K_M files have a Q6_K embedding;
- Q4_K_M: Q4_K for the matrices, except attn_v and ffn_down on the layers llama.cpp's use_more_bits
  picks (i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2), which take Q6_K;
- a K-quant on a matrix whose row length (n_in) is not a multiple of 256 falls back as llama.cpp does:
  Q4_K -> Q5_0, Q6_K -> Q8_0. SmolLM2 (576) and Qwen2.5 (896) therefore run most of their Q4_K_M
  matrices in Q5_0 and Q8_0, exactly like the Q4_K_M files of these models one downloads.

--pure writes every matrix (embedding included) in the file's base type instead (Q4_K for Q4_K_M,
where the row length allows), like llama-quantize --pure.

The tokenizer is the default model's (SmolLM2-135M-Instruct: byte-level BPE, pre-tokenizer "smollm",
its merges, token types and special ids), padded to the shape's vocabulary size with CONTROL tokens
"<|reserved_N|>", so both pocketlm and llama.cpp load and tokenize every file.

    python3 tools/make_bench_models.py                       # all shapes and types into ~/.cache/pocketlm/bench
    python3 tools/make_bench_models.py --only SmolLM2-135M --only Q8_0
    python3 tools/make_bench_models.py --check               # also load each file in both engines
    python3 tools/make_bench_models.py --list                # the files and whether they exist

A file is skipped when it exists and its sidecar (<file>.json) records the same parameters. --check
loads each file in pocketlm (build/pocketlm generate -n 4, and the Python package's logits when it is
importable) and in llama.cpp (llama-cpp-python: logits and a 4-token completion), each in a child
process, and requires finite logits.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_VERSION = 1  # bump when the bytes written for the same parameters change
TYPES = ("Q4_0", "Q4_1", "Q8_0", "Q4_K_M")
QK_K = 256


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    arch: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    rope_theta: float
    rms_eps: float
    n_ctx: int
    qkv_bias: bool = False


SHAPES = {s.name: s for s in (
    Shape("SmolLM2-135M", "llama", 576, 30, 9, 3, 64, 1536, 49152, 1e5, 1e-5, 8192),
    Shape("Llama-3.2-1B", "llama", 2048, 16, 32, 8, 64, 8192, 128256, 5e5, 1e-5, 131072),
    Shape("Qwen2.5-0.5B", "qwen2", 896, 24, 14, 2, 64, 4864, 151936, 1e6, 1e-6, 32768, qkv_bias=True),
)}


def cache_dir() -> Path:
    """pocketlm's model cache: $POCKETLM_CACHE, else $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm."""
    if os.environ.get("POCKETLM_CACHE"):
        return Path(os.environ["POCKETLM_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "pocketlm"
    return Path.home() / ".cache" / "pocketlm"


def default_out_dir() -> Path:
    """Where the files go unless --out says otherwise: $POCKETLM_BENCH_MODELS, else <cache>/bench."""
    if os.environ.get("POCKETLM_BENCH_MODELS"):
        return Path(os.environ["POCKETLM_BENCH_MODELS"])
    return cache_dir() / "bench"


def file_name(shape: str, qtype: str, pure: bool = False) -> str:
    """'SmolLM2-135M-random.Q4_0.gguf' (with '-pure' before the type for --pure files)."""
    return f"{shape}-random{'-pure' if pure else ''}.{qtype}.gguf"


def default_tokenizer_source() -> Path:
    return cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"


# ----------------------------------------------------------------------------------- block types

def _gguf():
    import gguf  # imported late so that bench/run.py can import the names above without it
    return gguf


def more_bits(i_layer: int, n_layer: int) -> bool:
    """llama.cpp's use_more_bits: the layers whose attn_v and ffn_down Q4_K_M stores in Q6_K."""
    return i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2


def _fallback(qtype: str, n_in: int) -> str:
    """The type llama-quantize uses when n_in is not a multiple of qtype's block (tensor_type_fallback)."""
    if qtype in ("Q4_K", "Q6_K") and n_in % QK_K:
        return {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}[qtype]
    return qtype


def tensor_type(shape: Shape, ftype: str, role: str, i_layer: int, n_in: int, pure: bool = False) -> str:
    """Block type of one matrix, as llama-quantize picks it (see the module docstring).

    role: 'token_embd' (tied, so it follows the output tensor's rule), or a per-layer name such as
    'attn_v' or 'ffn_down'.
    """
    base = "Q4_K" if ftype == "Q4_K_M" else ftype
    if pure:
        return _fallback(base, n_in)
    if role == "token_embd":
        return base if base == "Q8_0" else _fallback("Q6_K", n_in)
    if ftype == "Q4_K_M" and role in ("attn_v", "ffn_down") and more_bits(i_layer, shape.n_layer):
        return _fallback("Q6_K", n_in)
    return _fallback(base, n_in)


def tensor_plan(shape: Shape, ftype: str, pure: bool = False) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, type, numpy shape) of every tensor, in the order llama.cpp's converter writes them.

    Matrices are (n_out, n_in): GGUF stores ne = (n_in, n_out).
    """
    e, kv = shape.n_embd, shape.n_head_kv * shape.head_dim
    q = shape.n_head * shape.head_dim
    out = [("token_embd.weight", tensor_type(shape, ftype, "token_embd", -1, e, pure), (shape.n_vocab, e))]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        mats = [("attn_q", (q, e)), ("attn_k", (kv, e)), ("attn_v", (kv, e)), ("attn_output", (e, q)),
                ("ffn_gate", (shape.n_ff, e)), ("ffn_up", (shape.n_ff, e)), ("ffn_down", (e, shape.n_ff))]
        out.append((p + "attn_norm.weight", "F32", (e,)))
        for role, (n_out, n_in) in mats:
            out.append((p + role + ".weight", tensor_type(shape, ftype, role, i, n_in, pure), (n_out, n_in)))
            if shape.qkv_bias and role in ("attn_q", "attn_k", "attn_v"):
                out.append((p + role + ".bias", "F32", (n_out,)))
        out.append((p + "ffn_norm.weight", "F32", (e,)))
    out.append(("output_norm.weight", "F32", (e,)))
    return out


# Byte layout of each block type: (block bytes, [(offset of an F16 scale field, role)]) and the
# standard deviation of the integer part of a weight when the rest of the block is uniform random
# bytes; a weight is scale * integer part, so scale = target std / that.
#   Q4_0 (18 B): d, 16 B of 4-bit q;             w = d * (q - 8)            std(q - 8)  = 4.61
#   Q4_1 (20 B): d, m, 16 B of 4-bit q;          w = d * q + m, m = -7.5 d  std(q)      = 4.61
#   Q5_0 (22 B): d, 4 B high bits, 16 B low;     w = d * (q - 16)           std(q - 16) = 9.23
#   Q8_0 (34 B): d, 32 int8;                     w = d * q                  std(q)      = 73.9
#   Q4_K (144 B): d, dmin, 12 B of 6-bit sub-block scales s and mins m, 128 B of 4-bit q;
#                 w = d * s * q - dmin * m, dmin = 7.5 d (zero mean)        std         ≈ 264 (measured)
#   Q6_K (210 B): 128 B low 4 bits, 64 B high 2 bits, 16 int8 sub-block scales s, d at byte 208;
#                 w = d * s * (q - 32)                                      std         ≈ 1367
INT_STD = {"Q4_0": 4.61, "Q4_1": 4.61, "Q5_0": 9.23, "Q8_0": 73.9, "Q4_K": 264.0, "Q6_K": 1367.0}


def random_blocks(rng: np.random.Generator, qtype: str, n_rows: int, n_in: int, std: float) -> np.ndarray:
    """Random block bytes for an (n_rows, n_in) matrix of qtype with weights of about `std`: (n_rows, row bytes) uint8.

    Every F16 scale is std / INT_STD[qtype] times a factor in [0.75, 1.25], so none is NaN, Inf or huge.
    """
    gguf = _gguf()
    block, tsize = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    n_blocks = n_rows * (n_in // block)
    raw = rng.bit_generator.random_raw(-(-n_blocks * tsize // 8)).view(np.uint8)[: n_blocks * tsize]
    blocks = raw.reshape(n_blocks, tsize)
    d = (std / INT_STD[qtype]) * rng.uniform(0.75, 1.25, n_blocks).astype(np.float32)

    def put(offset: int, values: np.ndarray) -> None:
        blocks[:, offset:offset + 2] = values.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)

    if qtype == "Q6_K":
        put(208, d)
    else:
        put(0, d)
        if qtype == "Q4_1":
            put(2, -7.5 * d)
        elif qtype == "Q4_K":
            put(2, 7.5 * d)
    return raw.reshape(n_rows, -1)


# ----------------------------------------------------------------------------------- writing

@dataclasses.dataclass
class Vocab:
    tokens: list
    token_types: list
    merges: list
    fields: dict  # scalar tokenizer keys: name -> (value, GGUFValueType)


def read_vocab(path: Path) -> Vocab:
    """The tokenizer of a GGUF file: tokens, token types, merges and the scalar tokenizer.* keys."""
    gguf = _gguf()
    r = gguf.GGUFReader(str(path))
    f = r.fields

    def arr(key: str) -> list:
        return f[key].contents() if key in f else []

    fields = {}
    for key, field in f.items():
        if key.startswith("tokenizer.") and field.types and field.types[0] != gguf.GGUFValueType.ARRAY:
            fields[key] = (field.contents(), field.types[0])
    return Vocab(arr("tokenizer.ggml.tokens"), arr("tokenizer.ggml.token_type"), arr("tokenizer.ggml.merges"),
                 fields)


def write_model(path: Path, shape: Shape, ftype: str, vocab: Vocab, pure: bool, seed: int) -> None:
    """Writes one random-weight GGUF to path (through path + '.part', renamed when complete)."""
    gguf = _gguf()
    plan = tensor_plan(shape, ftype, pure)
    tmp = path.with_name(path.name + ".part")
    w = gguf.GGUFWriter(str(tmp), shape.arch)
    w.add_name(f"{shape.name} random weights ({ftype})")
    w.add_description(f"Random weights with the shapes of {shape.name}, for speed benchmarks only "
                      f"(tools/make_bench_models.py, generator {GENERATOR_VERSION}, seed {seed})")
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_vocab_size(shape.n_vocab)
    w.add_file_type(getattr(gguf.LlamaFileType, "MOSTLY_" + ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    n_pad = shape.n_vocab - len(vocab.tokens)
    if n_pad < 0:
        raise ValueError(f"the tokenizer has {len(vocab.tokens)} tokens, more than {shape.name}'s {shape.n_vocab}")
    w.add_array("tokenizer.ggml.tokens", list(vocab.tokens) + [f"<|reserved_{i}|>" for i in range(n_pad)])
    w.add_array("tokenizer.ggml.token_type",
                list(vocab.token_types) + [int(gguf.TokenType.CONTROL)] * n_pad)
    w.add_array("tokenizer.ggml.merges", list(vocab.merges))
    for key, (value, vtype) in vocab.fields.items():
        w.add_key_value(key, value, vtype)

    for name, qtype, np_shape in plan:
        if qtype == "F32":
            w.add_tensor_info(name, np_shape, np.dtype(np.float32), 4 * int(np.prod(np_shape)))
        else:
            block, tsize = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
            n_out, n_in = np_shape
            w.add_tensor_info(name, np_shape, np.dtype(np.float32), n_out * n_in // block * tsize,
                              raw_dtype=gguf.GGMLQuantizationType[qtype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.Generator(np.random.PCG64(seed))
    for name, qtype, np_shape in plan:
        if qtype != "F32":
            data = random_blocks(rng, qtype, np_shape[0], np_shape[1], 1.0 / np.sqrt(np_shape[1]))
        elif name.endswith(".bias"):
            data = (0.02 * rng.standard_normal(np_shape)).astype(np.float32)
        else:
            data = np.ones(np_shape, dtype=np.float32)  # norm weights
        w.write_tensor_data(data)
    w.close()
    os.replace(tmp, path)


def params_of(shape: Shape, ftype: str, pure: bool, seed: int, tokenizer: Path) -> dict:
    """What the sidecar records: a file with the same record is not written again."""
    return {"generator": GENERATOR_VERSION, "shape": dataclasses.asdict(shape), "type": ftype, "pure": pure,
            "seed": seed, "tokenizer": tokenizer.name}


def model_seed(shape: str, ftype: str) -> int:
    return zlib.crc32(f"{shape}/{ftype}".encode())


# ----------------------------------------------------------------------------------- checking

def _check_child(engine: str, path: str, n_threads: int) -> int:
    """Runs in a child process: loads path in one engine, prints a JSON line, exits 0 if logits are finite."""
    prompt = "The quick brown fox"
    out: dict = {"engine": engine}
    if engine == "llama.cpp":
        import llama_cpp
        llm = llama_cpp.Llama(model_path=path, n_threads=n_threads, n_ctx=256, verbose=False)
        toks = llm.tokenize(prompt.encode(), add_bos=True)
        llm.eval(toks)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        out.update(n_vocab=llm.n_vocab(), tokens=toks, finite=bool(np.isfinite(logits).all()),
                   logit_absmax=float(np.abs(logits).max()), argmax=int(logits.argmax()))
        llm.reset()
        res = llm.create_completion(prompt, max_tokens=4, temperature=0.0)
        out["completion"] = res["choices"][0]["text"]
        out["completion_tokens"] = res["usage"]["completion_tokens"]
    else:
        import pocketlm
        model = pocketlm.Model(path, n_threads=n_threads, n_ctx=256)
        ctx = model.context()
        toks = list(model.tokenize(prompt))
        ctx.eval(toks)
        logits = np.asarray(ctx.logits)
        out.update(n_vocab=model.n_vocab, tokens=toks, finite=bool(np.isfinite(logits).all()),
                   logit_absmax=float(np.abs(logits).max()), argmax=int(logits.argmax()),
                   kernels=pocketlm.kernels_name())
        out["completion"] = model.generate(prompt, max_tokens=4, temperature=0)
    print(json.dumps(out))
    return 0 if out["finite"] else 1


def _pocketlm_python() -> str | None:
    """An interpreter that can import pocketlm: this one, else the repository's .venv (make python-test)."""
    for exe in (sys.executable, str(ROOT / ".venv" / "bin" / "python")):
        if Path(exe).exists() and subprocess.run([exe, "-c", "import pocketlm"], capture_output=True).returncode == 0:
            return exe
    return None


def check_file(path: Path, n_threads: int, cli: Path) -> list[str]:
    """Loads path in both engines (child processes); returns the problems found (empty: all good)."""
    problems = []
    t0 = time.perf_counter()
    if not cli.exists():
        problems.append(f"pocketlm CLI: {cli} does not exist (run `make`)")
    else:
        r = subprocess.run([str(cli), "generate", "-m", str(path), "-p", "The quick brown fox", "-n", "4",
                            "-t", str(n_threads), "-c", "256"], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"pocketlm CLI exited with {r.returncode}: {r.stderr.strip()[-500:]}")
        else:
            print(f"    pocketlm CLI: generated {r.stdout!r}")
    children = [("llama.cpp", sys.executable)]
    py = _pocketlm_python()
    if py is None:
        print("    pocketlm Python: not importable here (run `make python-test` to make .venv); logits unchecked")
    else:
        children.insert(0, ("pocketlm", py))
    for engine, exe in children:
        r = subprocess.run([exe, str(Path(__file__).resolve()), "--check-child", engine, str(path),
                            "--threads", str(n_threads)], capture_output=True, text=True)
        try:
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            problems.append(f"{engine}: exited with {r.returncode}: {r.stderr.strip()[-800:]}")
            continue
        print(f"    {engine}: n_vocab {res['n_vocab']}, logits finite {res['finite']} "
              f"(max |logit| {res['logit_absmax']:.2f}, argmax {res['argmax']}), completion {res['completion']!r}")
        if not res["finite"]:
            problems.append(f"{engine}: non-finite logits")
    print(f"    checked in {time.perf_counter() - t0:.1f} s")
    return problems


# ----------------------------------------------------------------------------------- main

def selected(only: list[str] | None) -> list[tuple[str, str]]:
    """(shape, type) pairs that --only (shape or type names, case-insensitive) chooses: all by default."""
    pairs = [(s, t) for s in SHAPES for t in TYPES]
    if only:
        want = {o.lower() for o in only}
        shapes = {s for s in SHAPES if s.lower() in want}
        types = {t for t in TYPES if t.lower() in want}
        unknown = want - {s.lower() for s in SHAPES} - {t.lower() for t in TYPES}
        if unknown:
            raise SystemExit(f"make_bench_models: unknown --only value(s) {sorted(unknown)}; "
                             f"shapes {list(SHAPES)}, types {list(TYPES)}")
        pairs = [(s, t) for s, t in pairs if (not shapes or s in shapes) and (not types or t in types)]
    return pairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="output directory (default $POCKETLM_BENCH_MODELS, else ~/.cache/pocketlm/bench)")
    ap.add_argument("--only", action="append", metavar="SHAPE_OR_TYPE",
                    help=f"only these shapes and/or types (repeatable; shapes {', '.join(SHAPES)}; "
                         f"types {', '.join(TYPES)})")
    ap.add_argument("--pure", action="store_true", help="every matrix in the base type (llama-quantize --pure)")
    ap.add_argument("--tokenizer", type=Path, default=None,
                    help="GGUF whose tokenizer is copied (default: the default model)")
    ap.add_argument("--force", action="store_true", help="write files even if they exist with the same parameters")
    ap.add_argument("--check", action="store_true", help="load each file in pocketlm and llama.cpp afterwards")
    ap.add_argument("--threads", type=int, default=2, help="threads for --check (default 2)")
    ap.add_argument("--cli", type=Path, default=ROOT / "build" / "pocketlm", help="pocketlm CLI for --check")
    ap.add_argument("--list", action="store_true", help="print the files (and whether they exist) and stop")
    ap.add_argument("--check-child", nargs=2, metavar=("ENGINE", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.check_child:
        return _check_child(args.check_child[0], args.check_child[1], args.threads)

    out = (args.out or default_out_dir()).expanduser()
    pairs = selected(args.only)
    if args.list:
        for s, t in pairs:
            p = out / file_name(s, t, args.pure)
            print(f"{p}  {'%.1f MB' % (p.stat().st_size / 1e6) if p.exists() else 'missing'}")
        return 0
    tokenizer = (args.tokenizer or default_tokenizer_source()).expanduser()
    if not tokenizer.is_file():
        print(f"make_bench_models: no tokenizer source at {tokenizer} (run `make model`)", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    vocab = None
    failures = []
    for s, t in pairs:
        path = out / file_name(s, t, args.pure)
        sidecar = path.with_name(path.name + ".json")
        params = params_of(SHAPES[s], t, args.pure, model_seed(s, t), tokenizer)
        try:
            old = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if (not args.force and path.exists() and old and old.get("params") == params
                and old.get("bytes") == path.stat().st_size):
            print(f"{path.name}: up to date ({path.stat().st_size / 1e6:.1f} MB)")
        else:
            if vocab is None:
                vocab = read_vocab(tokenizer)
            t0 = time.perf_counter()
            write_model(path, SHAPES[s], t, vocab, args.pure, params["seed"])
            types: dict[str, int] = {}
            for _, qtype, _ in tensor_plan(SHAPES[s], t, args.pure):
                types[qtype] = types.get(qtype, 0) + 1
            sidecar.write_text(json.dumps({"params": params, "bytes": path.stat().st_size, "tensor_types": types},
                                          indent=1) + "\n")
            print(f"{path.name}: wrote {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s "
                  f"({', '.join(f'{k} x{v}' for k, v in sorted(types.items()))})")
        if args.check:
            problems = check_file(path, args.threads, args.cli)
            for p in problems:
                print(f"    PROBLEM: {p}")
            if problems:
                failures.append(path.name)
    if failures:
        print(f"make_bench_models: {len(failures)} file(s) failed the check: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
