#!/usr/bin/env python3
"""Writes tests/data/tokens_smollm2.tsv: reference token ids for the default model.

A development tool, not a CI step. It tokenizes a fixed set of strings with two
independent tokenizers reading the same GGUF:

  * Hugging Face (transformers' GGUF loader + the `tokenizers` library), and
  * llama.cpp through llama-cpp-python (vocab_only), when it is importable.

llama.cpp defines what a GGUF means, so where the two disagree its ids are
written and the disagreement is printed. Without llama_cpp the script says so
and writes Hugging Face's ids; re-run it once llama-cpp-python is installed.

Known disagreement: transformers' GGUF loader rebuilds SmolLM2's tokenizer
with a ByteLevel pre-tokenizer only, without the Digits step of the original
tokenizer.json (llama.cpp's "smollm" pre isolates every \p{N} first), so text
with a space before a non-ASCII number (" ½", " ١٢٣") differs; llama.cpp
agrees with the original tokenizer.json there.

Columns (tab-separated, '#' starts a comment line):
  name, parse_special (0/1), add_special (0/1), text as hex of its UTF-8 bytes,
  reference ids separated by spaces.

Usage: python3 tools/make_token_fixtures.py [--model PATH] [--out PATH]
(--model defaults to $POCKETLM_MODEL).
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, text, parse_special, add_special)
CASES = [
    ("hello", "Hello world", False, False),
    ("sentence", "The quick brown fox jumps over the lazy dog.", False, True),
    ("leading_space", " Hello", False, False),
    ("leading_spaces", "   leading spaces", False, False),
    ("single_space", " ", False, False),
    ("empty", "", False, False),
    ("empty_add_special", "", True, True),
    ("accents", "café naïve résumé façade", False, False),
    ("german", "Größe, übermäßig schön — Straße", False, False),
    ("french", "L'été où j'ai vu « ça », c'était déjà l'hiver.", False, False),
    ("chinese", "你好，世界！今天天气很好。", False, False),
    ("japanese", "こんにちは世界、カタカナとひらがな", False, False),
    ("korean", "안녕하세요 세계", False, False),
    ("emoji", "I ❤️ 🍕 and 🚀!", False, False),
    ("emoji_zwj", "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👩🏽‍💻 coder", False, False),
    ("arabic", "مرحبا بالعالم ١٢٣", False, False),
    ("mixed_scripts", "Ελληνικά русский עברית हिन्दी ไทย", False, False),
    ("code_python", "def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n    return -x\n", False, False),
    ("code_c", "int main(void) {\n    printf(\"%d\\n\", 42);\n    return 0;\n}\n", False, False),
    ("spaces_run", "a    b     c", False, False),
    ("newlines", "\n\n\n", False, False),
    ("mixed_whitespace", "line1\n\n  line2\r\n\tline3   \n", False, False),
    ("trailing_spaces", "end   ", False, False),
    ("unicode_spaces", "a\u00a0b\u2003c\u3000d \u200b e", False, False),
    ("digits", "1234567890", False, False),
    ("pi", "3.14159", False, False),
    ("numbers", "In 2024, 1,000,000 people paid $3.50 each (≈ ½ price).", False, False),
    ("contractions", "I'm you'll DON'T we've they'd she's it's", False, False),
    ("curly_apostrophes", "don’t it’s “quoted”", False, False),
    ("url", "https://example.com/path?q=1&lang=en#top", False, False),
    ("symbols", "!@#$%^&*()_+-=[]{}|;':\",./<>?`~", False, False),
    ("math", "∑ x² + √y ≤ ∞, α→β", False, False),
    ("long_words", "antidisestablishmentarianism supercalifragilisticexpialidocious", False, False),
    ("repeated", "a" * 40 + " " + "ab" * 20, False, False),
    ("case", "HELLO World hELLo", False, False),
    ("control_chars", "tab\there\x0bvt\x0cff\x00nul\x7fdel", False, False),
    ("chat_special", "<|im_start|>user\nhi<|im_end|>", True, False),
    ("chat_plain", "<|im_start|>user\nhi<|im_end|>", False, False),
    ("chat_prompt", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n", True, True),
    ("endoftext_special", "text<|endoftext|>more", True, False),
    ("endoftext_plain", "text<|endoftext|>more", False, False),
    ("adjacent_special", "<|im_end|><|im_start|>", True, False),
    ("partial_special", "<|im_start user <|im_end", True, False),
]


def hf_tokenize(path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))
    backend = tok.backend_tokenizer

    def run(text, parse_special, add_special):
        # encode_special_tokens=True makes the tokenizer treat special-token
        # text as plain text (parse_special off).
        backend.encode_special_tokens = not parse_special
        return backend.encode(text, add_special_tokens=add_special).ids

    return run


def llama_tokenize(path):
    try:
        import llama_cpp
    except ImportError as e:
        print("llama_cpp is not importable (%s): using Hugging Face only; re-run when it is installed" % e)
        return None
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)

    def run(text, parse_special, add_special):
        return list(llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special))

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("POCKETLM_MODEL", ""), help="GGUF file (default: $POCKETLM_MODEL)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "tokens_smollm2.tsv"))
    args = ap.parse_args()
    if not args.model or not os.path.isfile(args.model):
        sys.exit("no model: pass --model PATH or set POCKETLM_MODEL (got %r)" % args.model)

    hf = hf_tokenize(args.model)
    lc = llama_tokenize(args.model)
    names = set()
    rows = []
    n_disagree = 0
    for name, text, parse_special, add_special in CASES:
        assert name not in names, name
        names.add(name)
        ids_hf = hf(text, parse_special, add_special)
        ids = ids_hf
        if lc is not None:
            ids_lc = lc(text, parse_special, add_special)
            if ids_lc != ids_hf:
                n_disagree += 1
                print("DISAGREE %s (parse_special=%d add_special=%d) %r\n  llama.cpp: %s\n  hf:        %s" % (
                    name, parse_special, add_special, text, ids_lc, ids_hf))
            ids = ids_lc
        rows.append("%s\t%d\t%d\t%s\t%s" % (name, parse_special, add_special, text.encode("utf-8").hex(),
                                             " ".join(str(i) for i in ids)))

    source = "llama.cpp (llama-cpp-python %s), checked against Hugging Face" % __import__("llama_cpp").__version__ \
        if lc is not None else "Hugging Face transformers/tokenizers only (llama_cpp was not importable)"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write("# Reference token ids for the default model (SmolLM2-135M-Instruct, tokenizer.ggml.pre = smollm).\n")
        f.write("# Written by tools/make_token_fixtures.py from %s.\n" % source)
        f.write("# name\tparse_special\tadd_special\ttext_utf8_hex\tids\n")
        for r in rows:
            f.write(r + "\n")
    print("wrote %s: %d cases, %s" % (args.out, len(rows),
                                      ("%d disagreements between llama.cpp and Hugging Face" % n_disagree) if lc is not None
                                      else "Hugging Face only"))


if __name__ == "__main__":
    main()
