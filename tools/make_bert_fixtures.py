#!/usr/bin/env python3
"""Writes the reference data of the BERT encoder tests (all-MiniLM-L6-v2):

  tests/data/tokens_minilm.tsv   WordPiece ids from Hugging Face `tokenizers` loading the model's own
                                 tokenizer.json, for 500+ strings (accents, CJK, Hangul, emoji, code, long words,
                                 control characters, whitespace runs, mixed case, and random mixtures);
  tests/data/embed_minilm.tsv    sentence-transformers embeddings (CPU torch, normalized) of the sentences of
                                 tests/data/embed_sentences.txt (written by hand: short and long, accents, CJK,
                                 emoji, code, questions), as base64 of little-endian float16 (rounding to float16
                                 moves a unit vector's cosine by about 1e-7, far below the tests' 1e-4).

A development tool, not a CI step: it needs `tokenizers`, `sentence-transformers` and torch (CPU), and the model
zip (python -m pocketlm download all-minilm-l6-v2 keeps it in the cache as all-MiniLM-L6-v2.model.zip).

Columns of tokens_minilm.tsv: name, text as hex of its UTF-8 bytes, ids (with [CLS] and [SEP]).
Columns of embed_minilm.tsv: text as hex, base64 float16 vector. The embedding sentences are also token cases
(named sentence_NNN).

Usage: python3 tools/make_bert_fixtures.py --zip PATH/all-MiniLM-L6-v2.model.zip
"""
import argparse
import base64
import os
import random
import sys
import tempfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [
    ("hello", "Hello, World!"),
    ("sentence", "The quick brown fox jumps over the lazy dog."),
    ("accents", "Café déjà vu, naïve coöperation, résumé, façade, Ångström, Øresund, Łódź"),
    ("accents_upper", "ÉCOLE ÉLÉMENTAIRE À PARIS — ÇA VA?"),
    ("german", "Straße, Größe, Fußball, ÄÖÜ äöü"),
    ("turkish_i", "İstanbul ISTANBUL ıi"),
    ("greek", "ΟΔΥΣΣΕΥΣ Ὀδυσσεύς καλημέρα ΣΊΣΥΦΟΣ"),
    ("cyrillic", "Москва ПРИВЕТ ёжик Й й"),
    ("cjk", "北京是中国的首都。我爱你！"),
    ("cjk_mixed", "Tokyo東京and大阪, 漢字かなカナ"),
    ("japanese_kana", "ひらがな カタカナ ｶﾀｶﾅ"),
    ("hangul", "한국어 텍스트입니다 안녕하세요"),
    ("cjk_compat", "豈更車 and 𠀀𪜀 rare ideographs"),
    ("emoji", "I love pizza 🍕 and sushi 🍣!!! 👍🏽 👨‍👩‍👧"),
    ("emoji_only", "😀😃😄"),
    ("code", "def f(x): return x**2  # squares\nint main(void) { return 0; }"),
    ("code_symbols", "a+b=c; x<y>z; $HOME ~/path | grep ^foo && echo `ls` @user #tag"),
    ("urls", "https://example.com/path?q=1&r=2#frag user@mail.org"),
    ("numbers", "3.14159 1,000,000 2026-12-02 12:30pm 1e-12 ½ ¾ ١٢٣"),
    ("long_word", "Supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("word_100", "a" * 100),
    ("word_101", "b" * 101),
    ("word_150_mixed", "x" * 60 + "y" * 90 + " short"),
    ("control_chars", "tab\there\nnewline\rreturn\x00nul\x07bell\x1bescape\x7fdel"),
    ("zero_width", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom"),
    ("soft_hyphen", "soft\u00adhyphen"),
    ("replacement", "bad\ufffdchar"),
    ("whitespace_runs", "   many    spaces\t\t\ttabs\n\n\nnewlines   "),
    ("unicode_spaces", "no\u00a0break\u2003em\u3000ideographic\u2028line\u2029para\u0085nel"),
    ("combining", "e\u0301 a\u0300 n\u0303 o\u0308 combining marks"),
    ("devanagari", "हिन्दी भाषा नमस्ते"),
    ("arabic", "مرحبا بالعالم العربية"),
    ("hebrew", "שלום עולם"),
    ("thai", "สวัสดีครับ ภาษาไทย"),
    ("ligatures", "ﬁne ﬂow ﬀ Ⅻ ℌ ™ ㎏"),
    ("fullwidth", "ＡＢＣ１２３！？"),
    ("punct_unicode", "«quotes» „low“ ‘single’ — dash – en … ellipsis ¿qué? ¡sí!"),
    ("mixed_case", "iPhone McDonald's eBay LaTeX NASA's PyTorch"),
    ("apostrophes", "don't can't won't it's 'quoted'"),
    ("brackets", "[CLS-like] (paren) {brace} <angle>"),
    ("empty", ""),
    ("only_space", "   "),
    ("only_punct", "!!!???..."),
    ("single_char", "a"),
    ("unk_symbols", "☃ ☂ ♞ ⌘ ∮ ⊕"),
    ("math", "∀x∈ℝ: x²≥0, ∑ᵢ aᵢ = π"),
    ("private_use", "private\ue000use\U000f0000"),
    ("unassigned", "un\U000e0080assigned"),
    ("vietnamese", "Tiếng Việt có dấu: Nguyễn, Đặng, Ưu"),
    ("mixed_script_word", "abcабвαβγ"),
]

SENTENCES_FILE = os.path.join(REPO, "tests", "data", "embed_sentences.txt")
ST_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length: sentence-transformers truncates longer texts


def read_sentences(path=SENTENCES_FILE):
    """The sentences of the embedding fixture: one per line, lines starting with "# " are comments."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if not line.startswith("# ")]


POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3 +
        list(" \t\n.,;:!?'\"()[]{}<>-_/\\@#$%^&*+=|~`") +
        list("éèêëàâäçñöüßÉÀÇÑÖÜøåæœłšžčřğış") + list("中文字北京日本語漢") + list("한국어가나") +
        list("ひらがなカタ") + list("αβγΣσςΩ") + list("абвгдЖЗИЙ") + list("🍕😀👍🏽\u200d") +
        ["\u0301", "\u0308", "\u00a0", "\u3000", "\x00", "\x07", "\ufeff", "\u200b", "ﬁ", "½", "™", "…", "—"])


def random_cases(n, seed=17):
    rng = random.Random(seed)
    words = ["the", "running", "unbelievable", "tokenization", "Hello", "WORLD", "naïve", "café", "東京", "ok"]
    out = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.4:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(POOL) for _ in range(rng.randint(1, 8))))
            parts.append(rng.choice([" ", " ", "  ", "", "\n", "\t"]))
        out.append((f"random_{i:03d}", "".join(parts)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zip", required=True, help="the model zip (all-MiniLM-L6-v2.model.zip)")
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data"))
    args = ap.parse_args()
    from tokenizers import Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(args.zip).extractall(tmp)
        tok = Tokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        sentences = read_sentences()
        lengths = [len(tok.encode(s).ids) for s in sentences]
        if max(lengths) > ST_MAX_TOKENS:
            raise SystemExit(f"a sentence has {max(lengths)} tokens: sentence-transformers would truncate it "
                             f"at {ST_MAX_TOKENS}")
        cases = CASES + random_cases(480) + [(f"sentence_{i:03d}", s) for i, s in enumerate(sentences)]
        with open(os.path.join(args.out_dir, "tokens_minilm.tsv"), "w", encoding="utf-8") as f:
            f.write("# Reference WordPiece ids for all-MiniLM-L6-v2 (add_special: [CLS] ... [SEP]).\n")
            f.write("# Written by tools/make_bert_fixtures.py with Hugging Face tokenizers "
                    f"{__import__('tokenizers').__version__} loading the model's tokenizer.json.\n")
            f.write("# name\ttext_utf8_hex\tids\n")
            for name, text in cases:
                ids = tok.encode(text).ids
                f.write(f"{name}\t{text.encode('utf-8').hex()}\t{' '.join(map(str, ids))}\n")
        print(f"{len(cases)} token cases", file=sys.stderr)

        import numpy as np
        from sentence_transformers import SentenceTransformer
        import sentence_transformers
        import torch

        model = SentenceTransformer(tmp, device="cpu")
        emb = model.encode(sentences, normalize_embeddings=True, convert_to_numpy=True).astype("<f2")
        with open(os.path.join(args.out_dir, "embed_minilm.tsv"), "w", encoding="utf-8") as f:
            f.write("# Reference embeddings of all-MiniLM-L6-v2 (mean pooling, normalized), float16 as base64.\n")
            f.write(f"# Written by tools/make_bert_fixtures.py with sentence-transformers "
                    f"{sentence_transformers.__version__}, torch {torch.__version__} (CPU).\n")
            f.write("# text_utf8_hex\tvector_base64\n")
            for s, e in zip(sentences, emb):
                f.write(f"{s.encode('utf-8').hex()}\t{base64.b64encode(np.ascontiguousarray(e).tobytes()).decode()}\n")
        print(f"{len(sentences)} embeddings ({sum(lengths)} tokens, at most {max(lengths)})", file=sys.stderr)


if __name__ == "__main__":
    main()
