"""The ``pocketlm`` command (also ``python -m pocketlm``): generate, chat, tokenize, info.

    $ pocketlm generate "The capital of France is" -n 16
     Paris.

    The United States has a population of approximately 311
    $ pocketlm chat
    > What is the capital of France?
    The capital of France is Paris.

Without ``-m FILE`` the default model is used (see ``pocketlm info``).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from . import Error, Model, __version__, kernels_name


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", metavar="FILE", help="GGUF model (default: the default model)")
    p.add_argument("-t", "--threads", type=int, metavar="N", help="threads (default: physical cores)")
    p.add_argument("-c", "--ctx-size", type=int, metavar="N", help="context size in tokens (default: min(train, 4096))")


def _add_sampling_args(p: argparse.ArgumentParser, temperature: float) -> None:
    p.add_argument("-n", "--max-tokens", type=int, default=256, metavar="N", help="most tokens to generate (default 256)")
    p.add_argument("--temp", "--temperature", dest="temperature", type=float, default=temperature, metavar="T",
                   help=f"temperature; 0 = greedy (default {temperature:g})")
    p.add_argument("--top-k", type=int, default=40, metavar="K", help="(default 40)")
    p.add_argument("--top-p", type=float, default=0.95, metavar="P", help="(default 0.95)")
    p.add_argument("--min-p", type=float, default=0.05, metavar="P", help="(default 0.05)")
    p.add_argument("--repeat-penalty", type=float, default=1.0, metavar="R", help="(default 1.0: off)")
    p.add_argument("--seed", type=lambda s: int(s, 0), metavar="N", help="random seed (default: random)")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop before TEXT (repeatable)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pocketlm", description="Run small language models on the CPU from GGUF files.")
    ap.add_argument("--version", action="version", version=f"pocketlm {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("generate", help="continue a prompt", description="Prints the continuation of PROMPT, streamed.")
    g.add_argument("prompt", nargs="?", help="the prompt ('-' reads standard input)")
    g.add_argument("-p", "--prompt", dest="prompt_opt", metavar="TEXT", help="the prompt (same as the argument)")
    g.add_argument("--echo", action="store_true", help="print the prompt before the continuation")
    g.add_argument("--stats", action="store_true", help="print token counts and speed to standard error")
    _add_model_args(g)
    _add_sampling_args(g, temperature=0.0)

    c = sub.add_parser("chat", help="talk with the model (a REPL)",
                       description="Chat in the terminal with the model's chat template. "
                                   "Commands: /reset starts over, /exit (or Ctrl-D) quits; Ctrl-C stops a reply.")
    c.add_argument("-s", "--system", metavar="TEXT", help="system message (default: the template's, if any)")
    c.add_argument("--template", choices=["chatml", "llama3", "gemma", "phi3"],
                   help="chat format (default: chosen from the model's stored template)")
    _add_model_args(c)
    _add_sampling_args(c, temperature=0.7)

    t = sub.add_parser("tokenize", help="show the tokens of a text", description="Prints one line per token: id and text.")
    t.add_argument("text", nargs="?", help="the text ('-' reads standard input)")
    t.add_argument("-p", "--prompt", dest="text_opt", metavar="TEXT", help="the text (same as the argument)")
    t.add_argument("--special", action="store_true", help="match special tokens such as <|im_start|> in the text")
    t.add_argument("--no-bos", action="store_true", help="do not add BOS/EOS")
    t.add_argument("--ids", action="store_true", help="print only the ids, space-separated")
    t.add_argument("-m", "--model", metavar="FILE", help="GGUF model (default: the default model)")

    i = sub.add_parser("info", help="describe a model", description="Prints architecture, sizes, quantization, tokenizer.")
    i.add_argument("-m", "--model", metavar="FILE", help="GGUF model (default: the default model)")
    i.add_argument("-v", "--verbose", action="store_true", help="also list every metadata key")
    return ap


def _text_arg(positional: Optional[str], option: Optional[str], what: str) -> str:
    text = option if option is not None else positional
    if text is None:
        raise SystemExit(f"pocketlm: {what} is required; see --help")
    return sys.stdin.read() if text == "-" else text


def _sampling(a: argparse.Namespace) -> dict:
    return dict(max_tokens=a.max_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p,
                repeat_penalty=a.repeat_penalty, seed=a.seed, stop=a.stop)


def _load(a: argparse.Namespace) -> Model:
    return Model(a.model, n_threads=getattr(a, "threads", None), n_ctx=getattr(a, "ctx_size", None))


def cmd_generate(a: argparse.Namespace) -> int:
    prompt = _text_arg(a.prompt, a.prompt_opt, "a prompt")
    model = _load(a)
    out = sys.stdout
    if a.echo:
        out.write(prompt)
    t0 = time.perf_counter()
    stream = model.stream(prompt, **_sampling(a))
    t1 = time.perf_counter()
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stream.close()
        out.write("\n")
        return 130
    t2 = time.perf_counter()
    out.write("\n")
    out.flush()
    if a.stats:
        n = len(stream.tokens) if stream.tokens is not None else 0
        print(f"[prompt {stream.n_prompt} tokens in {1e3 * (t1 - t0):.1f} ms | generated {n} tokens in "
              f"{1e3 * (t2 - t1):.1f} ms ({n / max(t2 - t1, 1e-9):.1f} tok/s) | stop: {stream.stop_reason} | "
              f"{kernels_name()} kernels]", file=sys.stderr)
    return 0


def cmd_chat(a: argparse.Namespace) -> int:
    model = _load(a)
    messages: List[dict] = []
    if a.system:
        messages.append({"role": "system", "content": a.system})
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            messages = messages[:1] if a.system else []
            continue
        messages.append({"role": "user", "content": line})
        reply = []
        stream = model.chat(messages, stream=True, template=a.template, **_sampling(a))
        try:
            for piece in stream:
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            stream.close()
        print()
        messages.append({"role": "assistant", "content": "".join(reply)})


def cmd_tokenize(a: argparse.Namespace) -> int:
    text = _text_arg(a.text, a.text_opt, "a text")
    model = Model(a.model, vocab_only=True)  # the vocabulary alone: vocabulary-only GGUFs work too
    toks = model.tokenize(text, add_special=not a.no_bos, parse_special=a.special)
    if a.ids:
        print(" ".join(str(t) for t in toks))
    else:
        for t in toks:
            piece = model.token_to_piece(t, special=True).decode("utf-8", "backslashreplace")
            print(f"{t:6d}  {piece!r}")
        print(f"{len(toks)} tokens")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    model = Model(a.model)
    i = model.info
    rows = [
        ("file", i.path), ("name", i.name), ("architecture", i.arch), ("parameters", f"{i.n_params / 1e6:.1f} M"),
        ("weights", f"{i.file_type}, {i.n_bytes / (1 << 20):.1f} MiB"), ("layers", i.n_layer),
        ("embedding", i.n_embd), ("heads", f"{i.n_head} (kv {i.n_head_kv}, head size {i.head_dim})"),
        ("feed-forward", i.n_ff),
        ("vocabulary", f"{i.n_vocab} tokens (bos {i.bos}, eos {i.eos}, eot {i.eot}, add bos: {'yes' if i.add_bos else 'no'})"),
        ("context", f"{i.n_ctx_train} (training)"),
        ("chat format", model.chat_format.name if i.chat_template else "none stored (chatml)"),
        ("kernels", kernels_name()),
    ]
    for k, v in rows:
        print(f"{k + ':':<15}{v}")
    if a.verbose:
        print("\nmetadata:")
        for k, v in model.metadata.items():
            print(f"  {k:<40} {v.replace(chr(10), ' ')}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.command is None:
        ap.print_help()
        return 2
    fn = {"generate": cmd_generate, "chat": cmd_chat, "tokenize": cmd_tokenize, "info": cmd_info}[a.command]
    try:
        return fn(a)
    except Error as e:
        print(f"pocketlm: error: {e} ({e.status_name})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
