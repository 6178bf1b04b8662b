/*
 * pretok.c — pre-tokenizers: splitting plain text into the words BPE merges within.
 *
 * Hugging Face and llama.cpp describe these splits as regular expressions
 * (listed per pre-tokenizer in llama.cpp's llama-vocab.cpp). pocketlm has no
 * regex engine: each pattern is a hand-written scanner that reproduces what
 * llama.cpp produces, including its hand-coded GPT-2 and Llama 3 matchers.
 * A pre-tokenizer is a sequence of passes; each pass splits every piece the
 * previous one left, and the end of a piece acts as the end of the text (for
 * \s+(?!\S), for example).
 *
 * Text is read as units: one well-formed UTF-8 sequence, or one invalid byte,
 * which is classed as U+FFFD (a symbol) — llama.cpp replaces such bytes with
 * U+FFFD before splitting, so words fall in the same places, but here the
 * byte itself is kept and reaches the byte-level encoding unchanged.
 *
 * Owns splitting only; merging is bpe.c's, the category tables unicode.c's.
 */
#include "tokenizer_impl.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* The units of the text being split and the boundary list being built. */
typedef struct units {
    const uint32_t *cps;
    const uint16_t *fl;
} units;

typedef struct bvec {
    size_t *b;
    size_t n;
} bvec;

/* Appends a boundary; empty pieces are never produced. */
static void emit(bvec *o, size_t p) {
    if (p > o->b[o->n - 1]) o->b[o->n++] = p;
}

static uint16_t fl_at(const units *u, size_t pos, size_t end) { return pos < end ? u->fl[pos] : 0; }
static uint32_t cp_at(const units *u, size_t pos, size_t end) { return pos < end ? u->cps[pos] : PLM_CP_INVALID; }

#define LNS (PLM_UCAT_LETTER | PLM_UCAT_NUMBER | PLM_UCAT_SPACE)

/* [^\s\p{L}\p{N}] inside the piece (flags 0 means past its end). */
static bool is_other(uint16_t f) { return f && !(f & LNS); }

static uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d at pos (any case when icase): its length, or 0. */
static size_t contraction(const units *u, size_t pos, size_t end, bool icase) {
    if (u->cps[pos] != '\'' || pos + 1 >= end) return 0;
    uint32_t c1 = u->cps[pos + 1];
    if (icase) c1 = ascii_lower(c1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (pos + 2 >= end) return 0;
    uint32_t c2 = u->cps[pos + 2];
    if (icase) c2 = ascii_lower(c2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

/* Whitespace at pos: \s+(?!\S) leaves the last space to the next word when
 * something follows in the piece; otherwise the whole run is one word. */
static size_t space_run_end(const units *u, size_t pos, size_t end) {
    size_t k = 0;
    while (fl_at(u, pos + k, end) & PLM_UCAT_SPACE) k++;
    if (k > 1 && pos + k < end) return pos + k - 1;
    if (k > 0) return pos + k;
    return pos + 1; /* matches nothing: one unit on its own */
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(const units *u, size_t ini, size_t end, bvec *o) {
    size_t pos = ini;
    while (pos < end) {
        size_t n = contraction(u, pos, end, false);
        if (n) {
            pos += n;
            emit(o, pos);
            continue;
        }
        uint32_t c = u->cps[pos];
        size_t start = pos + (c == ' ');
        uint16_t f = fl_at(u, start, end); /* the class after an optional leading space */
        if (f & PLM_UCAT_LETTER) {
            pos = start;
            while (fl_at(u, pos, end) & PLM_UCAT_LETTER) pos++;
        } else if (f & PLM_UCAT_NUMBER) {
            pos = start;
            while (fl_at(u, pos, end) & PLM_UCAT_NUMBER) pos++;
        } else if (is_other(f)) {
            pos = start;
            while (is_other(fl_at(u, pos, end))) pos++;
        } else {
            pos = space_run_end(u, pos, end);
        }
        emit(o, pos);
    }
}

/* Llama 3 (digit_group 3) and Qwen2 (digit_group 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3(const units *u, size_t ini, size_t end, bvec *o, size_t digit_group) {
    size_t pos = ini;
    while (pos < end) {
        size_t n = contraction(u, pos, end, true);
        if (n) {
            pos += n;
            emit(o, pos);
            continue;
        }
        uint32_t c = u->cps[pos];
        uint16_t f = u->fl[pos];
        bool newline = c == '\r' || c == '\n';
        /* [^\r\n\p{L}\p{N}]?\p{L}+ : one optional leading unit of any other kind */
        if (!newline && !(f & PLM_UCAT_NUMBER) && ((f & PLM_UCAT_LETTER) || (fl_at(u, pos + 1, end) & PLM_UCAT_LETTER))) {
            pos++;
            while (fl_at(u, pos, end) & PLM_UCAT_LETTER) pos++;
            emit(o, pos);
            continue;
        }
        if (f & PLM_UCAT_NUMBER) {
            size_t group = pos;
            while (fl_at(u, pos, end) & PLM_UCAT_NUMBER) {
                pos++;
                if (pos - group >= digit_group) {
                    emit(o, pos);
                    group = pos;
                }
            }
            emit(o, pos);
            continue;
        }
        /* ' ?[^\s\p{L}\p{N}]+[\r\n]*'. Like llama.cpp, a lone space at the end
         * of the piece is taken here too (the result is the same word). */
        uint16_t f2 = c == ' ' ? fl_at(u, pos + 1, end) : f;
        if (!(f2 & LNS)) {
            pos += (c == ' ');
            while (is_other(fl_at(u, pos, end))) pos++;
            for (uint32_t c2 = cp_at(u, pos, end); c2 == '\r' || c2 == '\n'; c2 = cp_at(u, pos, end)) pos++;
            emit(o, pos);
            continue;
        }
        /* \s*[\r\n]+ : up to the last line break in the whitespace run */
        size_t k = 0, last_nl = 0;
        bool has_nl = false;
        while (fl_at(u, pos + k, end) & PLM_UCAT_SPACE) {
            uint32_t c2 = u->cps[pos + k];
            if (c2 == '\r' || c2 == '\n') {
                last_nl = pos + k + 1;
                has_nl = true;
            }
            k++;
        }
        pos = has_nl ? last_nl : space_run_end(u, pos, end);
        emit(o, pos);
    }
}

/* Each unit of the class is a piece on its own (\p{N} with Isolated behaviour). */
static void split_isolate_each(const units *u, size_t ini, size_t end, bvec *o, uint16_t cls) {
    for (size_t p = ini; p < end; p++) {
        if (u->fl[p] & cls) {
            emit(o, p);
            emit(o, p + 1);
        }
    }
    emit(o, end);
}

static bool is_default_punct(const units *u, size_t p) {
    uint32_t c = u->cps[p];
    return (u->fl[p] & PLM_UCAT_PUNCT) || (c < 0x80 && c && strchr("$+<=>^~|", (int)c));
}

/* Maximal runs of the class are pieces, and so are the gaps between them. */
static void split_isolate_runs(const units *u, size_t ini, size_t end, bvec *o, bool punct, uint16_t cls) {
    size_t p = ini;
    while (p < end) {
        bool in = punct ? is_default_punct(u, p) : (u->fl[p] & cls) != 0;
        size_t q = p + 1;
        while (q < end && (punct ? is_default_punct(u, q) : (u->fl[q] & cls) != 0) == in) q++;
        emit(o, q);
        p = q;
    }
}

/* [0-9][0-9][0-9], leftmost matches first. */
static void split_ascii_triples(const units *u, size_t ini, size_t end, bvec *o) {
    size_t p = ini;
    while (p + 3 <= end) {
        bool d3 = true;
        for (size_t i = 0; i < 3; i++) d3 = d3 && u->cps[p + i] >= '0' && u->cps[p + i] <= '9';
        if (d3) {
            emit(o, p);
            emit(o, p + 3);
            p += 3;
        } else {
            p++;
        }
    }
    emit(o, end);
}

typedef enum pass_kind { PASS_GPT2, PASS_LLAMA3, PASS_QWEN2, PASS_DIGIT_EACH, PASS_PUNCT_RUNS, PASS_NUMBER_RUNS, PASS_ASCII_TRIPLES } pass_kind;

static void run_pass(pass_kind pk, const units *u, const bvec *in, bvec *out) {
    out->b[0] = 0;
    out->n = 1;
    for (size_t i = 0; i + 1 < in->n; i++) {
        size_t ini = in->b[i], end = in->b[i + 1];
        switch (pk) {
        case PASS_GPT2: split_gpt2(u, ini, end, out); break;
        case PASS_LLAMA3: split_llama3(u, ini, end, out, 3); break;
        case PASS_QWEN2: split_llama3(u, ini, end, out, 1); break;
        case PASS_DIGIT_EACH: split_isolate_each(u, ini, end, out, PLM_UCAT_NUMBER); break;
        case PASS_PUNCT_RUNS: split_isolate_runs(u, ini, end, out, true, 0); break;
        case PASS_NUMBER_RUNS: split_isolate_runs(u, ini, end, out, false, PLM_UCAT_NUMBER); break;
        case PASS_ASCII_TRIPLES: split_ascii_triples(u, ini, end, out); break;
        }
    }
}

plm_status plm_pretok_split(plm_pretok_kind kind, const char *text, size_t len, plm_pretok_buf *b,
                            const size_t **word_offs, size_t *n_words) {
    /* At most one unit per byte and units + 1 boundaries: nothing grows while splitting. */
    if (len + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < len + 1) {
            if (c > SIZE_MAX / 2 / sizeof(size_t)) return plm_fail(PLM_ERR_OOM, "text of %zu bytes is too long to tokenize", len);
            c *= 2;
        }
        uint32_t *cps = realloc(b->cps, c * sizeof *cps);
        if (cps) b->cps = cps;
        uint16_t *flags = realloc(b->flags, c * sizeof *flags);
        if (flags) b->flags = flags;
        size_t *offs = realloc(b->offs, c * sizeof *offs);
        if (offs) b->offs = offs;
        size_t *bounds = realloc(b->bounds, c * sizeof *bounds);
        if (bounds) b->bounds = bounds;
        size_t *tmp = realloc(b->tmp, c * sizeof *tmp);
        if (tmp) b->tmp = tmp;
        if (!cps || !flags || !offs || !bounds || !tmp) return plm_fail(PLM_ERR_OOM, "out of memory splitting a text of %zu bytes", len);
        b->cap = c;
    }

    const uint8_t *s = (const uint8_t *)text;
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t cp;
        size_t l = plm_utf8_decode(s + i, len - i, &cp);
        b->cps[n] = cp;
        b->flags[n] = plm_unicode_flags(cp);
        b->offs[n] = i;
        i += l;
    }
    b->offs[n] = len;

    units u = {b->cps, b->flags};
    bvec cur = {b->bounds, 2}, nxt = {b->tmp, 0};
    cur.b[0] = 0;
    cur.b[1] = n;
    if (n == 0) cur.n = 1;

    static const pass_kind p_default[] = {PASS_PUNCT_RUNS, PASS_GPT2, PASS_NUMBER_RUNS, PASS_ASCII_TRIPLES};
    static const pass_kind p_gpt2[] = {PASS_GPT2};
    static const pass_kind p_smollm[] = {PASS_DIGIT_EACH, PASS_GPT2};
    static const pass_kind p_llama3[] = {PASS_LLAMA3};
    static const pass_kind p_qwen2[] = {PASS_QWEN2};
    const pass_kind *passes = p_gpt2;
    size_t n_passes = 1;
    switch (kind) {
    case PLM_PRETOK_DEFAULT: passes = p_default; n_passes = 4; break;
    case PLM_PRETOK_GPT2: passes = p_gpt2; n_passes = 1; break;
    case PLM_PRETOK_SMOLLM: passes = p_smollm; n_passes = 2; break;
    case PLM_PRETOK_LLAMA3: passes = p_llama3; n_passes = 1; break;
    case PLM_PRETOK_QWEN2: passes = p_qwen2; n_passes = 1; break;
    }
    for (size_t i = 0; i < n_passes && n > 0; i++) {
        run_pass(passes[i], &u, &cur, &nxt);
        bvec t = cur;
        cur = nxt;
        nxt = t;
    }
    /* Units to bytes, in place. */
    for (size_t i = 0; i < cur.n; i++) cur.b[i] = b->offs[cur.b[i]];
    *word_offs = cur.b;
    *n_words = cur.n - 1;
    return PLM_OK;
}

void plm_pretok_free(plm_pretok_buf *b) {
    free(b->cps);
    free(b->flags);
    free(b->offs);
    free(b->bounds);
    free(b->tmp);
    memset(b, 0, sizeof *b);
}
