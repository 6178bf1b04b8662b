#!/usr/bin/env python3
"""Writes tests/data/tokens_gemma3.tsv: reference token ids for Gemma 3 270M,
whose vocabulary is SentencePiece (tokenizer.ggml.model = llama).

A development tool, not a CI step. The strings are those of
tools/make_token_fixtures.py (imported from it, so both fixtures cover the same
text) plus cases for Gemma's vocabulary: its chat tokens, the user-defined
runs of newlines, spaces and tabs, HTML tags, <unused*> tokens and characters
that need byte fallback. Each is tokenized by two independent readers of the
same GGUF:

  * llama.cpp through llama-cpp-python (vocab_only): the reference, written to
    the file; it must be importable;
  * Hugging Face (transformers' GGUF loader + `tokenizers`): a second opinion;
    where it disagrees the case is printed and counted, and llama.cpp's ids are
    still the ones written.

The output has the format of tests/data/tokens_smollm2.tsv (tab-separated,
'#' starts a comment line): name, parse_special (0/1), add_special (0/1), text
as hex of its UTF-8 bytes, reference ids separated by spaces.

Usage: python3 tools/make_spm_token_fixtures.py [--model PATH] [--out PATH]
(--model defaults to $POCKETLM_GEMMA3, else the file tools/fetch_gemma3.sh puts
in the pocketlm cache).
"""
import argparse
import os
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
import make_token_fixtures as common  # noqa: E402  (CASES, hf_tokenize, llama_tokenize)

MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"

CHAT = "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n"

# (name, text, parse_special, add_special): Gemma's vocabulary in particular.
GEMMA_CASES = [
    ("gemma_chat_special", CHAT, True, True),
    ("gemma_chat_plain", CHAT, False, False),
    ("gemma_chat_turns", "<start_of_turn>model\nHi!<end_of_turn>\n<start_of_turn>user\nMore<end_of_turn>", True, False),
    ("gemma_bos_special", "<bos>Hello", True, False),
    ("gemma_bos_plain", "<bos>Hello", False, False),
    ("gemma_bos_twice", "<bos>Hello", True, True),
    ("gemma_eos_special", "Bye.<eos>", True, False),
    ("gemma_pad_unk_special", "<pad><unk><mask>", True, False),
    ("gemma_pad_unk_plain", "<pad><unk><mask>", False, False),
    ("gemma_unused_special", "<unused0> and <unused6241>", True, False),
    ("gemma_unused_plain", "<unused0> and <unused6241>", False, False),
    ("gemma_image_tokens", "<start_of_image>pixels<end_of_image> [multimodal]", False, False),
    ("gemma_html", "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>", False, False),
    ("gemma_newline_runs", "a\nb\n\nc\n\n\nd" + "\n" * 31 + "e" + "\n" * 40 + "f", False, False),
    ("gemma_space_runs", "x  y       z" + " " * 31 + "w" + " " * 45 + "v", False, False),
    ("gemma_tab_runs", "\tx\t\ty" + "\t" * 30 + "z" + "\t" * 37, False, False),
    ("gemma_only_spaces", "     ", False, False),
    ("gemma_space_newline_mix", " \n  \n\t \n\u3000x \t y", False, False),
    ("gemma_space_before_special", " <start_of_turn> x <end_of_turn> ", True, False),
    ("gemma_newline_before_special", "\n\n<end_of_turn>\n\n", True, False),
    ("gemma_markdown", "# Title\n\n* item **bold** _it_ `code`\n\n```python\nprint('hi')\n```\n", False, False),
    ("gemma_byte_fallback", "\U000e0001 \ue000\ue001 \U0010fffd \u0378 \U0001f9ff\U0001faf8", False, False),
    ("gemma_rare_scripts", "𓀀𓁐 ᚠᚢᚦ ꦲꦏ 𐌰𐌱 ⠓⠑⠇⠇⠕", False, False),
    ("gemma_long_number", "31415926535897932384626433832795028841971693993751", False, False),
    ("gemma_repeated_marker", "\u2581\u2581x \u2581 y", False, False),
    ("gemma_add_special_text", "Hello world", False, True),
]


def default_model():
    if os.environ.get("POCKETLM_GEMMA3"):
        return os.environ["POCKETLM_GEMMA3"]
    if os.environ.get("POCKETLM_CACHE"):
        d = os.environ["POCKETLM_CACHE"]
    elif os.environ.get("XDG_CACHE_HOME"):
        d = os.path.join(os.environ["XDG_CACHE_HOME"], "pocketlm")
    else:
        d = os.path.join(os.path.expanduser("~"), ".cache", "pocketlm")
    return os.path.join(d, MODEL_NAME)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=default_model(), help="GGUF file (default: $POCKETLM_GEMMA3, else the cache)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "tokens_gemma3.tsv"))
    args = ap.parse_args()
    if not os.path.isfile(args.model):
        sys.exit("no model at %r: run tools/fetch_gemma3.sh, or pass --model PATH / set POCKETLM_GEMMA3" % args.model)

    lc = common.llama_tokenize(args.model)
    if lc is None:
        sys.exit("llama_cpp (llama-cpp-python) is needed: it is the reference for this fixture")
    hf = common.hf_tokenize(args.model)

    names = set()
    rows = []
    disagreements = []
    for name, text, parse_special, add_special in common.CASES + GEMMA_CASES:
        assert name not in names, name
        names.add(name)
        ids = lc(text, parse_special, add_special)
        ids_hf = hf(text, parse_special, add_special)
        if ids != ids_hf:
            disagreements.append(name)
            print("DISAGREE %s (parse_special=%d add_special=%d) %r\n  llama.cpp: %s\n  hf:        %s" % (
                name, parse_special, add_special, text, ids, ids_hf))
        rows.append("%s\t%d\t%d\t%s\t%s" % (name, parse_special, add_special, text.encode("utf-8").hex(),
                                             " ".join(str(i) for i in ids)))

    import llama_cpp
    import transformers
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write("# Reference token ids for Gemma 3 270M (%s, tokenizer.ggml.model = llama: SentencePiece).\n" % MODEL_NAME)
        f.write("# Written by tools/make_spm_token_fixtures.py from llama.cpp (llama-cpp-python %s); Hugging Face "
                "transformers %s %s.\n" % (llama_cpp.__version__, transformers.__version__,
                                           "agrees on every case" if not disagreements
                                           else "disagrees on: " + ", ".join(disagreements)))
        f.write("# name\tparse_special\tadd_special\ttext_utf8_hex\tids\n")
        for r in rows:
            f.write(r + "\n")
    print("wrote %s: %d cases, %d disagreements between llama.cpp and Hugging Face" % (args.out, len(rows), len(disagreements)))


if __name__ == "__main__":
    main()
