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
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Qwen 3.5 (marks, digit_group 1) reads \p{L} as [\p{L}\p{M}] in the word
 * alternatives: [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+ and  ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*. */
static void split_llama3(const units *u, size_t ini, size_t end, bvec *o, size_t digit_group, bool marks) {
    const uint16_t LETTER = marks ? (PLM_UCAT_LETTER | PLM_UCAT_MARK) : PLM_UCAT_LETTER;
    const uint16_t WORDISH = LNS | LETTER;
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
        if (!newline && !(f & PLM_UCAT_NUMBER) && ((f & LETTER) || (fl_at(u, pos + 1, end) & LETTER))) {
            pos++;
            while (fl_at(u, pos, end) & LETTER) pos++;
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
        if (!(f2 & WORDISH)) {
            pos += (c == ' ');
            for (uint16_t f3 = fl_at(u, pos, end); f3 && !(f3 & WORDISH); f3 = fl_at(u, pos, end)) pos++;
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

/* Classes given as code-point ranges, as llama.cpp matches them (std::wregex
 * over code points, where every non-ASCII White_Space character reads as
 * U+000B and so belongs to no range below). Sorted, disjoint. */
typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

/* DeepSeek LLM's letters: \s?[A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃]+ (its tokenizer.json spells the class out). */
static const cp_range DS_LETTERS[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA}, {0x1BC, 0x1BF},
    {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D}, {0x37F, 0x37F},
    {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481},
    {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D},
    {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC},
    {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102},
    {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126},
    {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3},
    {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF},
    {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
/* DeepSeek LLM's punctuation: \s?[!-/:-~！-／：-～‘-‟　-。]+ (ASCII letters included: they are already apart). */
static const cp_range DS_PUNCT[] = {{0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}};
/* DeepSeek's CJK runs: [一-龥ࠀ-一가-퟿]+. */
static const cp_range DS_CJK[] = {{0x800, 0x9FA5}, {0xAC00, 0xD7FF}};

typedef struct cls {
    const cp_range *r; /* ranges, or NULL: flags */
    size_t n;
    uint16_t flags;    /* any of these PLM_UCAT_* bits (White_Space excluded) */
    const char *ascii; /* and these ASCII characters (NULL: none) */
} cls;

static bool in_cls(const cls *c, const units *u, size_t p) {
    uint32_t cp = u->cps[p] == PLM_CP_INVALID ? 0xFFFD : u->cps[p];
    if (c->r) {
        if (cp > 0x7F && (u->fl[p] & PLM_UCAT_SPACE)) return false;
        size_t lo = 0, hi = c->n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cp < c->r[mid].lo) hi = mid;
            else if (cp > c->r[mid].hi) lo = mid + 1;
            else return true;
        }
        return false;
    }
    if (u->fl[p] & PLM_UCAT_SPACE) return false;
    return (u->fl[p] & c->flags) || (c->ascii && cp > 0 && cp < 0x80 && strchr(c->ascii, (int)cp));
}

/* Isolates every match of C (one), C+ (runs) or \s?C+ (runs, space_prefix),
 * leftmost first, as a regex split with "Isolated" behaviour does: the
 * matches are pieces, and so are the gaps between them. */
static void split_class(const units *u, size_t ini, size_t end, bvec *o, const cls *c, bool runs, bool space_prefix) {
    size_t p = ini;
    while (p < end) {
        size_t q;
        if (space_prefix && (u->fl[p] & PLM_UCAT_SPACE) && p + 1 < end && in_cls(c, u, p + 1)) q = p + 1;
        else if (in_cls(c, u, p)) q = p;
        else {
            p++;
            continue;
        }
        q++;
        while (runs && q < end && in_cls(c, u, q)) q++;
        emit(o, p);
        emit(o, q);
        p = q;
    }
    emit(o, end);
}

/* \s+$ : the whitespace that ends the piece. */
static void split_trailing_space(const units *u, size_t ini, size_t end, bvec *o) {
    size_t p = end;
    while (p > ini && (u->fl[p - 1] & PLM_UCAT_SPACE)) p--;
    emit(o, p);
    emit(o, end);
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

typedef enum pass_kind {
    PASS_GPT2,
    PASS_LLAMA3,
    PASS_QWEN2,
    PASS_QWEN35,
    PASS_DIGIT_EACH,
    PASS_PUNCT_RUNS,
    PASS_NUMBER_RUNS,
    PASS_ASCII_TRIPLES,
    PASS_FALCON_PUNCT,   /* [\p{P}\$\+<=>\^~\|`]+ */
    PASS_NEWLINE_EACH,   /* [\r\n] */
    PASS_DS_LETTERS,     /* \s?[A-Za-z...]+ (DeepSeek LLM) */
    PASS_DS_PUNCT,       /* \s?[!-/:-~...]+ (DeepSeek LLM) */
    PASS_TRAILING_SPACE, /* \s+$ */
    PASS_DS_CJK,         /* [一-龥ࠀ-一가-퟿]+ */
    PASS_SPACE_LETTERS,  /* \s?\p{L}+ */
    PASS_SPACE_PUNCT,    /* \s?\p{P}+ */
} pass_kind;

static void run_pass(pass_kind pk, const units *u, const bvec *in, bvec *out) {
    static const cls falcon_punct = {NULL, 0, PLM_UCAT_PUNCT, "$+<=>^~|`"};
    static const cls newline = {NULL, 0, 0, "\r\n"};
    static const cls letters = {NULL, 0, PLM_UCAT_LETTER, NULL};
    static const cls punct = {NULL, 0, PLM_UCAT_PUNCT, NULL};
    static const cls ds_letters = {DS_LETTERS, sizeof DS_LETTERS / sizeof DS_LETTERS[0], 0, NULL};
    static const cls ds_punct = {DS_PUNCT, sizeof DS_PUNCT / sizeof DS_PUNCT[0], 0, NULL};
    static const cls ds_cjk = {DS_CJK, sizeof DS_CJK / sizeof DS_CJK[0], 0, NULL};
    out->b[0] = 0;
    out->n = 1;
    for (size_t i = 0; i + 1 < in->n; i++) {
        size_t ini = in->b[i], end = in->b[i + 1];
        switch (pk) {
        case PASS_GPT2: split_gpt2(u, ini, end, out); break;
        case PASS_LLAMA3: split_llama3(u, ini, end, out, 3, false); break;
        case PASS_QWEN2: split_llama3(u, ini, end, out, 1, false); break;
        case PASS_QWEN35: split_llama3(u, ini, end, out, 1, true); break;
        case PASS_DIGIT_EACH: split_isolate_each(u, ini, end, out, PLM_UCAT_NUMBER); break;
        case PASS_PUNCT_RUNS: split_isolate_runs(u, ini, end, out, true, 0); break;
        case PASS_NUMBER_RUNS: split_isolate_runs(u, ini, end, out, false, PLM_UCAT_NUMBER); break;
        case PASS_ASCII_TRIPLES: split_ascii_triples(u, ini, end, out); break;
        case PASS_FALCON_PUNCT: split_class(u, ini, end, out, &falcon_punct, true, false); break;
        case PASS_NEWLINE_EACH: split_class(u, ini, end, out, &newline, false, false); break;
        case PASS_DS_LETTERS: split_class(u, ini, end, out, &ds_letters, true, true); break;
        case PASS_DS_PUNCT: split_class(u, ini, end, out, &ds_punct, true, true); break;
        case PASS_TRAILING_SPACE: split_trailing_space(u, ini, end, out); break;
        case PASS_DS_CJK: split_class(u, ini, end, out, &ds_cjk, true, false); break;
        case PASS_SPACE_LETTERS: split_class(u, ini, end, out, &letters, true, true); break;
        case PASS_SPACE_PUNCT: split_class(u, ini, end, out, &punct, true, true); break;
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
    static const pass_kind p_qwen35[] = {PASS_QWEN35};
    static const pass_kind p_falcon[] = {PASS_FALCON_PUNCT, PASS_GPT2, PASS_ASCII_TRIPLES};
    static const pass_kind p_ds_llm[] = {PASS_NEWLINE_EACH, PASS_DS_LETTERS, PASS_DS_PUNCT, PASS_TRAILING_SPACE, PASS_DS_CJK, PASS_NUMBER_RUNS};
    static const pass_kind p_ds_coder[] = {PASS_NEWLINE_EACH, PASS_SPACE_LETTERS, PASS_SPACE_PUNCT, PASS_DS_CJK, PASS_DIGIT_EACH};
#define PASSES(a) (passes = (a), n_passes = sizeof(a) / sizeof(a)[0])
    const pass_kind *passes = p_gpt2;
    size_t n_passes = 1;
    switch (kind) {
    case PLM_PRETOK_DEFAULT: PASSES(p_default); break;
    case PLM_PRETOK_GPT2: PASSES(p_gpt2); break;
    case PLM_PRETOK_SMOLLM: PASSES(p_smollm); break;
    case PLM_PRETOK_LLAMA3: PASSES(p_llama3); break;
    case PLM_PRETOK_QWEN2: PASSES(p_qwen2); break;
    case PLM_PRETOK_QWEN35: PASSES(p_qwen35); break;
    case PLM_PRETOK_FALCON: PASSES(p_falcon); break;
    case PLM_PRETOK_DEEPSEEK_LLM: PASSES(p_ds_llm); break;
    case PLM_PRETOK_DEEPSEEK_CODER: PASSES(p_ds_coder); break;
    }
#undef PASSES
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
