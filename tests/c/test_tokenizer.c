/*
 * test_tokenizer.c — the byte-level BPE tokenizer against golden ids.
 *
 * tests/data/tokens_smollm2.tsv holds reference ids for the default model,
 * written by tools/make_token_fixtures.py from llama.cpp and Hugging Face. The
 * model comes from $POCKETLM_MODEL. Also checked: round trips (detokenizing
 * gives back the bytes, invalid UTF-8 included), the buffer and argument
 * contracts, a 100 KB random text, and vocabularies built by hand in memory
 * (which must be rejected, or tokenize as expected).
 */
#include "test.h"

#include "gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <time.h>

static plm_gguf *g_gguf;
static plm_vocab *g_vocab;

/* ------------------------------------------------------------- helpers */

typedef struct bytes {
    char *p;
    size_t n, cap;
} bytes;

static void bytes_add(bytes *b, const void *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        b->p = realloc(b->p, c);
        if (!b->p) abort();
        b->cap = c;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void bytes_adds(bytes *b, const char *s) { bytes_add(b, s, strlen(s)); }

/* Tokenizes into a malloc'd array (free it); NULL on error, with *st set. */
static plm_token *tokenize(const plm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special, int32_t *n,
                           plm_status *st) {
    int32_t need = 0;
    *st = plm_vocab_tokenize(v, text, len, add_special, parse_special, NULL, 0, &need);
    if (*st != PLM_OK && *st != PLM_ERR_BUFFER) return NULL;
    plm_token *ids = malloc(((size_t)need + 1) * sizeof *ids);
    if (!ids) abort();
    *st = plm_vocab_tokenize(v, text, len, add_special, parse_special, ids, need, n);
    if (*st != PLM_OK || *n != need) {
        free(ids);
        return NULL;
    }
    return ids;
}

/* Concatenated pieces; false if a piece call fails. */
static bool detokenize(const plm_vocab *v, const plm_token *ids, int32_t n, bool special, bytes *out) {
    out->n = 0;
    bytes_add(out, "", 0);
    for (int32_t i = 0; i < n; i++) {
        char buf[512];
        size_t len = 0;
        if (plm_vocab_piece(v, ids[i], special, buf, sizeof buf, &len) != PLM_OK) return false;
        bytes_add(out, buf, len);
    }
    return true;
}

static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!len || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        if (len == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F))) return false;
        if (len == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))) return false;
        i += len;
    }
    return true;
}

static bool round_trips(const plm_vocab *v, const char *text, size_t len) {
    int32_t n = 0;
    plm_status st;
    plm_token *ids = tokenize(v, text, len, false, false, &n, &st);
    if (!ids) {
        fprintf(stderr, "  tokenize failed: %s: %s\n", plm_status_str(st), plm_last_error());
        return false;
    }
    bytes back = {0};
    bool ok = detokenize(v, ids, n, false, &back) && back.n == len && memcmp(back.p, text, len) == 0;
    free(ids);
    free(back.p);
    return ok;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ------------------------------------------------------------- the default model */

static void test_load(void) {
    char path[4096];
    plm_status st = plm_default_model_path(path, sizeof path);
    if (st) fprintf(stderr, "  %s\n", plm_last_error());
    REQUIRE(st == PLM_OK);
    st = plm_gguf_open(path, true, &g_gguf);
    if (st) fprintf(stderr, "  %s: %s\n", plm_status_str(st), plm_last_error());
    REQUIRE(st == PLM_OK);
    st = plm_vocab_load(g_gguf, &g_vocab);
    if (st) fprintf(stderr, "  %s: %s\n", plm_status_str(st), plm_last_error());
    REQUIRE(st == PLM_OK);

    const plm_vocab *v = g_vocab;
    CHECK(plm_vocab_n_tokens(v) == 49152);
    CHECK(plm_vocab_bos(v) == 1);
    CHECK(plm_vocab_eos(v) == 2);
    CHECK(plm_vocab_eot(v) == 2); /* <|im_end|>, found by its text */
    CHECK(!plm_vocab_add_bos(v));
    CHECK(!plm_vocab_add_eos(v));
    CHECK(plm_vocab_is_eog(v, 0));  /* <|endoftext|> */
    CHECK(plm_vocab_is_eog(v, 2));  /* <|im_end|> */
    CHECK(plm_vocab_is_eog(v, 4));  /* <reponame>, llama.cpp's FIM repo token */
    CHECK(!plm_vocab_is_eog(v, 1)); /* <|im_start|> */
    CHECK(!plm_vocab_is_eog(v, 19556));
    CHECK(!plm_vocab_is_eog(v, -1) && !plm_vocab_is_eog(v, 49152));
    CHECK(plm_vocab_is_special(v, 1));
    CHECK(!plm_vocab_is_special(v, 19556));
    CHECK(plm_vocab_token_type(v, 1) == PLM_TOKEN_TYPE_CONTROL);
    CHECK(plm_vocab_token_type(v, 19556) == PLM_TOKEN_TYPE_NORMAL);
    CHECK(plm_vocab_find(v, "<|im_start|>", 12) == 1);
    CHECK(plm_vocab_find(v, "Hello", 5) == 19556);
    CHECK(plm_vocab_find(v, "no such token at all", 20) == -1);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void test_fixtures(void) {
    REQUIRE(g_vocab);
    FILE *f = fopen(DATA("tokens_smollm2.tsv"), "rb");
    if (!f) fprintf(stderr, "  cannot open %s (run the tests from the repository root)\n", DATA("tokens_smollm2.tsv"));
    REQUIRE(f);
    char line[16384];
    int cases = 0, round_tripped = 0;
    while (fgets(line, sizeof line, f)) {
        size_t ll = strlen(line);
        while (ll && (line[ll - 1] == '\n' || line[ll - 1] == '\r')) line[--ll] = 0;
        if (!ll || line[0] == '#') continue;
        char *field[5] = {0};
        char *p = line;
        int nf = 0;
        while (nf < 5) {
            field[nf++] = p;
            char *tab = strchr(p, '\t');
            if (!tab) break;
            *tab = 0;
            p = tab + 1;
        }
        CHECKF(nf == 5, "malformed fixture line for '%s'", field[0]);
        if (nf != 5) continue;
        const char *name = field[0];
        bool parse_special = field[1][0] == '1', add_special = field[2][0] == '1';
        size_t hl = strlen(field[3]);
        char *text = malloc(hl / 2 + 1);
        size_t len = 0;
        for (size_t i = 0; i + 1 < hl; i += 2) text[len++] = (char)(hexval(field[3][i]) * 16 + hexval(field[3][i + 1]));
        plm_token want[4096];
        int32_t n_want = 0;
        for (char *q = field[4]; *q && n_want < 4096;) {
            char *e;
            long x = strtol(q, &e, 10);
            if (e == q) break;
            want[n_want++] = (plm_token)x;
            q = e;
        }

        int32_t n = 0;
        plm_status st;
        plm_token *ids = tokenize(g_vocab, text, len, add_special, parse_special, &n, &st);
        CHECKF(ids != NULL, "%s: %s: %s", name, plm_status_str(st), plm_last_error());
        if (ids) {
            bool same = n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
            CHECKF(same, "%s: ids differ from the reference", name);
            if (!same) {
                fprintf(stderr, "    want:");
                for (int32_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
                fprintf(stderr, "\n    got: ");
                for (int32_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n");
            }
            if (!parse_special && utf8_valid((const unsigned char *)text, len)) {
                bytes back = {0};
                bool ok = detokenize(g_vocab, ids, n, false, &back) && back.n == len && memcmp(back.p, text, len) == 0;
                CHECKF(ok, "%s: detokenizing does not give back the text", name);
                round_tripped++;
                free(back.p);
            }
        }
        free(ids);
        free(text);
        cases++;
    }
    fclose(f);
    fprintf(stderr, "  %d fixture cases, %d round trips\n", cases, round_tripped);
    CHECK(cases >= 30);
}

static void test_special_pieces(void) {
    REQUIRE(g_vocab);
    const plm_vocab *v = g_vocab;
    char buf[64];
    size_t n = 99;
    CHECK(plm_vocab_piece(v, 1, true, buf, sizeof buf, &n) == PLM_OK && n == 12 && memcmp(buf, "<|im_start|>", 12) == 0);
    CHECK(plm_vocab_piece(v, 1, false, buf, sizeof buf, &n) == PLM_OK && n == 0);
    /* The leading space of " Hello" is the byte 0x20, not U+0120. */
    int32_t nt = 0;
    plm_status st;
    plm_token *ids = tokenize(v, " Hello", 6, false, false, &nt, &st);
    REQUIRE(ids);
    CHECK(nt == 1 && plm_vocab_piece(v, ids[0], false, buf, sizeof buf, &n) == PLM_OK && n == 6 && memcmp(buf, " Hello", 6) == 0);
    free(ids);
}

/* GPT-2's code point for a byte, as UTF-8 (the text of its byte token). */
static size_t byte_char(int b, char out[2]) {
    unsigned cp = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE ? (unsigned)b
                  : b <= 0x20                                                    ? 0x100u + (unsigned)b
                  : b == 0xAD                                                    ? 0x143u
                                                                                 : 0x121u + (unsigned)(b - 0x7F);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static bool has_byte_token(const plm_vocab *v, int b) {
    char c[2];
    size_t n = byte_char(b, c);
    return plm_vocab_find(v, c, n) >= 0;
}

/* What detokenizing must give back: every byte that has a token; an invalid
 * byte without one comes back as U+FFFD, a valid one without one is dropped. */
static void expected_text(const plm_vocab *v, const char *text, size_t len, bytes *out) {
    const unsigned char *s = (const unsigned char *)text;
    out->n = 0;
    bytes_add(out, "", 0);
    for (size_t i = 0; i < len;) {
        size_t l = 1;
        for (size_t k = 4; k >= 1; k--)
            if (i + k <= len && utf8_valid(s + i, k)) {
                l = k;
                break;
            }
        bool valid = utf8_valid(s + i, l);
        for (size_t k = 0; k < l; k++) {
            if (has_byte_token(v, s[i + k])) bytes_add(out, s + i + k, 1);
            else if (!valid) bytes_adds(out, "\xEF\xBF\xBD");
        }
        i += l;
    }
}

/* Tokenizes without special handling and checks what comes back. */
static bool gives_back(const plm_vocab *v, const char *text, size_t len) {
    int32_t n = 0;
    plm_status st;
    plm_token *ids = tokenize(v, text, len, false, false, &n, &st);
    if (!ids) {
        fprintf(stderr, "  tokenize failed: %s: %s\n", plm_status_str(st), plm_last_error());
        return false;
    }
    bytes back = {0}, want = {0};
    expected_text(v, text, len, &want);
    bool ok = detokenize(v, ids, n, false, &back) && back.n == want.n && memcmp(back.p, want.p, want.n) == 0;
    free(ids);
    free(back.p);
    free(want.p);
    return ok;
}

static void test_invalid_utf8(void) {
    REQUIRE(g_vocab);
    const plm_vocab *v = g_vocab;
    static const struct {
        const char *s;
        size_t n;
    } exact[] = {
        /* invalid, but every byte has a token: back unchanged */
        {"abc\xe4\xb8", 5},             /* truncated 3-byte sequence */
        {"\x80\x80 x \xbf", 7},         /* lone continuation bytes */
        {"\xed\xa0\x80 surrogate", 13}, /* UTF-16 surrogate */
        {"\xf0\x9f\x98", 3},            /* truncated emoji */
        {"h\xc3\xa9llo\xe9w\xc3\xb6rld\xc3", 14},
    }, other[] = {
        {"\xff\xfe", 2},
        {"\xc0\x80 overlong", 10},
        {"\xf4\x90\x80\x80 big", 8},
        {"  \xfe\xfe\xfe  \n\xff", 10},
        {"1\xff" "2\xfe" "3", 5},
        {"\xf8\x88\x80\x80\x80", 5},
        {"a\x04b", 3}, /* valid, but U+0004 has no token in SmolLM2 */
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        CHECKF(round_trips(v, exact[i].s, exact[i].n), "exact case %zu does not round-trip", i);
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        int32_t n = 0;
        plm_status st;
        plm_token *ids = tokenize(v, other[i].s, other[i].n, true, true, &n, &st);
        CHECKF(ids != NULL, "case %zu: %s", i, plm_status_str(st));
        free(ids);
        CHECKF(gives_back(v, other[i].s, other[i].n), "case %zu does not give back the expected bytes", i);
    }
    /* 0xFF and 0xFE have no token: each becomes U+FFFD (24211), as in llama.cpp. */
    CHECK(!has_byte_token(v, 0xFF) && !has_byte_token(v, 0xFE));
    plm_token ids[8];
    int32_t n = 0;
    CHECK(plm_vocab_tokenize(v, "\xff\xfe", 2, false, false, ids, 8, &n) == PLM_OK && n == 2 && ids[0] == 24211 && ids[1] == 24211);
    /* Every byte value alone, and all 256 in a row. */
    char all[256];
    int with_token = 0;
    for (int b = 0; b < 256; b++) {
        all[b] = (char)b;
        CHECKF(gives_back(v, &all[b], 1), "byte 0x%02x", b);
        if (has_byte_token(v, b)) {
            with_token++;
            CHECKF(round_trips(v, &all[b], 1), "byte 0x%02x has a token but does not round-trip", b);
        }
    }
    CHECK(with_token > 200);
    CHECK(gives_back(v, all, sizeof all));
}

static void test_contracts(void) {
    REQUIRE(g_vocab);
    const plm_vocab *v = g_vocab;
    plm_token ids[8];
    int32_t n = -1;
    /* "Hello world" is two tokens. */
    CHECK(plm_vocab_tokenize(v, "Hello world", 11, false, false, ids, 8, &n) == PLM_OK && n == 2);
    n = -1;
    CHECK(plm_vocab_tokenize(v, "Hello world", 11, false, false, ids, 1, &n) == PLM_ERR_BUFFER && n == 2);
    CHECK(ids[0] == 19556); /* what fits is written */
    n = -1;
    CHECK(plm_vocab_tokenize(v, "Hello world", 11, false, false, NULL, 0, &n) == PLM_ERR_BUFFER && n == 2);
    n = -1;
    CHECK(plm_vocab_tokenize(v, "", 0, true, true, ids, 8, &n) == PLM_OK && n == 0);
    n = -1;
    CHECK(plm_vocab_tokenize(v, NULL, 0, false, false, NULL, 0, &n) == PLM_OK && n == 0);
    CHECK(plm_vocab_tokenize(v, NULL, 5, false, false, ids, 8, &n) == PLM_ERR_ARG);
    CHECK(plm_vocab_tokenize(v, "x", 1, false, false, ids, -1, &n) == PLM_ERR_ARG);
    CHECK(plm_vocab_tokenize(v, "x", 1, false, false, NULL, 4, &n) == PLM_ERR_ARG);
    CHECK(plm_vocab_tokenize(v, "x", 1, false, false, ids, 8, NULL) == PLM_ERR_ARG);

    char buf[16];
    size_t len = 99;
    CHECK(plm_vocab_piece(v, -1, true, buf, sizeof buf, &len) == PLM_ERR_ARG && len == 0);
    CHECK(strstr(plm_last_error(), "-1") != NULL);
    CHECK(plm_vocab_piece(v, plm_vocab_n_tokens(v), true, buf, sizeof buf, &len) == PLM_ERR_ARG);
    CHECK(plm_vocab_piece(v, 1, true, buf, 4, &len) == PLM_ERR_BUFFER && len == 12);
    CHECK(plm_vocab_piece(v, 1, true, NULL, 0, &len) == PLM_ERR_BUFFER && len == 12);
    CHECK(plm_vocab_piece(v, 1, false, NULL, 0, &len) == PLM_OK && len == 0);
}

/* xorshift64*: a fixed stream, so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 33) % n;
}

static void test_long_random(void) {
    REQUIRE(g_vocab);
    static const char *const pieces[] = {
        "the", "The", " and", "tokenizer", "don't", "I'm", "x", "ZZZ", "über", "café", "naïve", "Straße", "你好", "世界", "こんにちは",
        "안녕", "مرحبا", "١٢٣", "½", "Ελλάδα", "русский", "हिन्दी", "👍", "👨‍👩‍👧", "🏳️‍🌈", "\xe2\x80\x8b", "\xc2\xa0", "\xe3\x80\x80",
        "12345", "3.14", "0x1F", "()", "{}", "==", "->", "//", "#!", "$", "'s", "'LL", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|",
        "|>", "\\n", "\"", "`", "~", "\xff", "\xc3", "\x80", "\xe4\xb8", "\xf0\x9f",
    };
    static const char *const spaces[] = {" ", " ", " ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t", "   \n\n\n"};
    bytes text = {0};
    while (text.n < 100 * 1024) {
        bytes_adds(&text, pieces[rnd(sizeof pieces / sizeof pieces[0])]);
        if (rnd(3) == 0) bytes_adds(&text, spaces[rnd(sizeof spaces / sizeof spaces[0])]);
    }
    double t0 = now_us();
    int32_t n = 0;
    plm_status st;
    plm_token *ids = tokenize(g_vocab, text.p, text.n, false, false, &n, &st);
    double t1 = now_us();
    CHECKF(ids != NULL, "%s: %s", plm_status_str(st), plm_last_error());
    if (ids) {
        fprintf(stderr, "  %zu random bytes -> %d tokens in %.1f ms\n", text.n, n, (t1 - t0) / 1e3);
        bytes back = {0}, want = {0};
        expected_text(g_vocab, text.p, text.n, &want);
        CHECK(detokenize(g_vocab, ids, n, false, &back) && back.n == want.n && memcmp(back.p, want.p, want.n) == 0);
        free(back.p);
        free(want.p);
        for (int32_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < plm_vocab_n_tokens(g_vocab));
    }
    free(ids);
    /* With parse_special the same text yields the special ids as well. */
    ids = tokenize(g_vocab, text.p, text.n, true, true, &n, &st);
    CHECK(ids != NULL);
    free(ids);

    /* One word of 100 KB: the merge loop must not be quadratic. */
    bytes word = {0};
    while (word.n < 100 * 1024) bytes_adds(&word, rnd(2) ? "ab" : "ba");
    t0 = now_us();
    CHECK(round_trips(g_vocab, word.p, word.n));
    fprintf(stderr, "  one 100 KB word: %.1f ms\n", (now_us() - t0) / 1e3);
    /* 100 KB of spaces, then digits. */
    memset(word.p, ' ', word.n);
    CHECK(round_trips(g_vocab, word.p, word.n));
    memset(word.p, '7', word.n);
    CHECK(round_trips(g_vocab, word.p, word.n));
    free(word.p);
    free(text.p);
}

static void test_prompt_speed(void) {
    REQUIRE(g_vocab);
    bytes text = {0};
    bytes_adds(&text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n");
    while (text.n < 2300) /* about 512 tokens of English */
        bytes_adds(&text, "The quick brown fox jumps over the lazy dog, and then it runs away into the forest near 42 old trees. ");
    bytes_adds(&text, "<|im_end|>\n<|im_start|>assistant\n");
    int32_t n = 0;
    plm_status st;
    plm_token *ids = tokenize(g_vocab, text.p, text.n, true, true, &n, &st);
    REQUIRE(ids);
    free(ids);
    plm_token out[2048];
    int32_t m = 0;
    int reps = 200;
    double t0 = now_us();
    for (int i = 0; i < reps; i++) CHECK(plm_vocab_tokenize(g_vocab, text.p, text.n, true, true, out, 2048, &m) == PLM_OK);
    double per = (now_us() - t0) / reps;
    fprintf(stderr, "  %d-token prompt: %.1f us per tokenization\n", n, per);
    CHECK(m == n);
    free(text.p);
}

/* ------------------------------------------------------------- vocabularies built by hand */

typedef struct kv_builder {
    bytes b;
    uint64_t n_kv;
} kv_builder;

static void put_u32(bytes *b, uint32_t x) {
    unsigned char c[4] = {(unsigned char)x, (unsigned char)(x >> 8), (unsigned char)(x >> 16), (unsigned char)(x >> 24)};
    bytes_add(b, c, 4);
}
static void put_u64(bytes *b, uint64_t x) {
    put_u32(b, (uint32_t)x);
    put_u32(b, (uint32_t)(x >> 32));
}
static void put_str(bytes *b, const char *s, size_t n) {
    put_u64(b, n);
    bytes_add(b, s, n);
}
static void kv_str(kv_builder *k, const char *key, const char *val) {
    put_str(&k->b, key, strlen(key));
    put_u32(&k->b, PLM_GGUF_STRING);
    put_str(&k->b, val, strlen(val));
    k->n_kv++;
}
static void kv_u32(kv_builder *k, const char *key, uint32_t val) {
    put_str(&k->b, key, strlen(key));
    put_u32(&k->b, PLM_GGUF_U32);
    put_u32(&k->b, val);
    k->n_kv++;
}
/* An array of n strings, given with their lengths (they may hold any bytes). */
static void kv_strs(kv_builder *k, const char *key, const char *const *vals, const size_t *lens, size_t n) {
    put_str(&k->b, key, strlen(key));
    put_u32(&k->b, PLM_GGUF_ARRAY);
    put_u32(&k->b, PLM_GGUF_STRING);
    put_u64(&k->b, n);
    for (size_t i = 0; i < n; i++) put_str(&k->b, vals[i], lens ? lens[i] : strlen(vals[i]));
    k->n_kv++;
}

/* GGUF v3 bytes with the given metadata and no tensors (malloc'd). */
static bytes gguf_bytes(const kv_builder *k) {
    bytes f = {0};
    bytes_add(&f, "GGUF", 4);
    put_u32(&f, 3);
    put_u64(&f, 0);
    put_u64(&f, k->n_kv);
    bytes_add(&f, k->b.p, k->b.n);
    return f;
}

/* The 256 GPT-2 byte tokens (ids 0..255, in byte order). */
static size_t byte_tokens(char store[256][3], const char **toks) {
    for (int b = 0; b < 256; b++) {
        size_t n = byte_char(b, store[b]);
        store[b][n] = 0;
        toks[b] = store[b];
    }
    return 256;
}

/* Builds a vocabulary from metadata, frees it, and returns the status. */
static plm_status load_kv(const kv_builder *k) {
    bytes f = gguf_bytes(k);
    plm_gguf *g = NULL;
    plm_status st = plm_gguf_open_memory(f.p, f.n, &g);
    if (st == PLM_OK) {
        plm_vocab *v = NULL;
        st = plm_vocab_load(g, &v);
        plm_vocab_free(v);
        plm_gguf_close(g);
    }
    free(f.p);
    return st;
}

static void test_rejected_vocabs(void) {
    static const char *const toks2[] = {"a", "b", "ab"};
    static const char *const merges1[] = {"a b"};

    kv_builder k = {0};
    kv_str(&k, "tokenizer.ggml.model", "gpt2");
    kv_str(&k, "tokenizer.ggml.pre", "no-such-pre");
    kv_strs(&k, "tokenizer.ggml.tokens", toks2, NULL, 3);
    kv_strs(&k, "tokenizer.ggml.merges", merges1, NULL, 1);
    CHECK(load_kv(&k) == PLM_ERR_UNSUPPORTED);
    CHECK(strstr(plm_last_error(), "no-such-pre") != NULL);
    free(k.b.p);

    k = (kv_builder){0};
    kv_str(&k, "tokenizer.ggml.model", "llama");
    kv_strs(&k, "tokenizer.ggml.tokens", toks2, NULL, 3);
    CHECK(load_kv(&k) == PLM_ERR_FORMAT); /* a SentencePiece vocabulary needs its scores */
    CHECK(strstr(plm_last_error(), "tokenizer.ggml.scores") != NULL);
    free(k.b.p);

    k = (kv_builder){0};
    kv_str(&k, "tokenizer.ggml.model", "wordpiece-9000");
    CHECK(load_kv(&k) == PLM_ERR_UNSUPPORTED);
    CHECK(strstr(plm_last_error(), "wordpiece-9000") != NULL);
    free(k.b.p);

    k = (kv_builder){0};
    kv_strs(&k, "tokenizer.ggml.tokens", toks2, NULL, 3);
    CHECK(load_kv(&k) == PLM_ERR_FORMAT);
    CHECK(strstr(plm_last_error(), "tokenizer.ggml.model") != NULL);
    free(k.b.p);

    /* A BOS id past the end of the vocabulary. */
    k = (kv_builder){0};
    kv_str(&k, "tokenizer.ggml.model", "gpt2");
    kv_str(&k, "tokenizer.ggml.pre", "smollm");
    kv_strs(&k, "tokenizer.ggml.tokens", toks2, NULL, 3);
    kv_strs(&k, "tokenizer.ggml.merges", merges1, NULL, 1);
    kv_u32(&k, "tokenizer.ggml.bos_token_id", 3);
    CHECK(load_kv(&k) == PLM_ERR_FORMAT);
    CHECK(strstr(plm_last_error(), "tokenizer.ggml.bos_token_id") != NULL);
    free(k.b.p);

    /* A token that is not UTF-8. */
    static const char *const bad_toks[] = {"a", "\xff", "ab"};
    k = (kv_builder){0};
    kv_str(&k, "tokenizer.ggml.model", "gpt2");
    kv_strs(&k, "tokenizer.ggml.tokens", bad_toks, NULL, 3);
    kv_strs(&k, "tokenizer.ggml.merges", merges1, NULL, 1);
    CHECK(load_kv(&k) == PLM_ERR_FORMAT);
    CHECK(strstr(plm_last_error(), "tokenizer.ggml.tokens[1]") != NULL);
    free(k.b.p);

    /* A merge without its space; merges missing altogether. */
    static const char *const bad_merges[] = {"a b", "ab"};
    k = (kv_builder){0};
    kv_str(&k, "tokenizer.ggml.model", "gpt2");
    kv_strs(&k, "tokenizer.ggml.tokens", toks2, NULL, 3);
    kv_strs(&k, "tokenizer.ggml.merges", bad_merges, NULL, 2);
    CHECK(load_kv(&k) == PLM_ERR_FORMAT);
    CHECK(strstr(plm_last_error(), "tokenizer.ggml.merges[1]") != NULL);
    free(k.b.p);
    k = (kv_builder){0};
    kv_str(&k, "tokenizer.ggml.model", "gpt2");
    kv_strs(&k, "tokenizer.ggml.tokens", toks2, NULL, 3);
    CHECK(load_kv(&k) == PLM_ERR_FORMAT);
    CHECK(strstr(plm_last_error(), "tokenizer.ggml.merges") != NULL);
    free(k.b.p);
}

/* A tiny complete vocabulary: merge ranks decide, and special tokens split. */
static void test_tiny_vocab(void) {
    char store[256][3];
    const char *toks[262];
    size_t n = byte_tokens(store, toks);
    toks[n++] = "ab";     /* 256 */
    toks[n++] = "abab";   /* 257 */
    toks[n++] = "bab";    /* 258 */
    toks[n++] = "<s>";    /* 259, control */
    toks[n++] = "<user>"; /* 260, user-defined */
    toks[n++] = "\xc4\xa0" "ab"; /* 261: " ab" */
    static const char *const merges[] = {"b ab", "a b", "ab ab", "\xc4\xa0 ab"};
    kv_builder k = {0};
    kv_str(&k, "tokenizer.ggml.model", "gpt2");
    kv_str(&k, "tokenizer.ggml.pre", "gpt-2");
    kv_strs(&k, "tokenizer.ggml.tokens", toks, NULL, n);
    kv_strs(&k, "tokenizer.ggml.merges", merges, NULL, 4);
    /* token types: all normal except 259 control, 260 user-defined */
    put_str(&k.b, "tokenizer.ggml.token_type", strlen("tokenizer.ggml.token_type"));
    put_u32(&k.b, PLM_GGUF_ARRAY);
    put_u32(&k.b, PLM_GGUF_I32);
    put_u64(&k.b, n);
    for (size_t i = 0; i < n; i++) put_u32(&k.b, i == 259 ? 3 : i == 260 ? 4 : 1);
    k.n_kv++;
    kv_u32(&k, "tokenizer.ggml.bos_token_id", 259);
    put_str(&k.b, "tokenizer.ggml.add_bos_token", strlen("tokenizer.ggml.add_bos_token"));
    put_u32(&k.b, PLM_GGUF_BOOL);
    bytes_add(&k.b, "\x01", 1);
    k.n_kv++;

    bytes f = gguf_bytes(&k);
    plm_gguf *g = NULL;
    plm_vocab *v = NULL;
    plm_status st = plm_gguf_open_memory(f.p, f.n, &g);
    CHECK(st == PLM_OK);
    if (st == PLM_OK) {
        st = plm_vocab_load(g, &v);
        if (st) fprintf(stderr, "  %s: %s\n", plm_status_str(st), plm_last_error());
        CHECK(st == PLM_OK);
    }
    if (v) {
        plm_token ids[32];
        int32_t m = 0;
        /* "bab": "b ab" (rank 0) cannot apply before "a b" (rank 1) made "ab"; then b+ab -> bab. */
        CHECK(plm_vocab_tokenize(v, "bab", 3, false, false, ids, 32, &m) == PLM_OK && m == 1 && ids[0] == 258);
        /* "abab": a b -> ab twice (leftmost first), then ab ab -> abab. */
        CHECK(plm_vocab_tokenize(v, "abab", 4, false, false, ids, 32, &m) == PLM_OK && m == 1 && ids[0] == 257);
        /* "ababab": ab ab ab -> abab ab (the leftmost pair of equal rank merges first). */
        CHECK(plm_vocab_tokenize(v, "ababab", 6, false, false, ids, 32, &m) == PLM_OK && m == 2 && ids[0] == 257 && ids[1] == 256);
        /* add_special puts the BOS first. */
        CHECK(plm_vocab_tokenize(v, "x ab", 4, true, false, ids, 32, &m) == PLM_OK && m == 3 && ids[0] == 259 && ids[1] == 'x' &&
              ids[2] == 261);
        /* Control tokens split only with parse_special; user-defined ones always. */
        CHECK(plm_vocab_tokenize(v, "<s>", 3, false, true, ids, 32, &m) == PLM_OK && m == 1 && ids[0] == 259);
        CHECK(plm_vocab_tokenize(v, "<s>", 3, false, false, ids, 32, &m) == PLM_OK && m == 3 && ids[0] == '<');
        CHECK(plm_vocab_tokenize(v, "a<user>b", 8, false, false, ids, 32, &m) == PLM_OK && m == 3 && ids[1] == 260);
        char buf[8];
        size_t len;
        CHECK(plm_vocab_piece(v, 260, false, buf, sizeof buf, &len) == PLM_OK && len == 6); /* user-defined: always shown */
        CHECK(plm_vocab_piece(v, 259, false, buf, sizeof buf, &len) == PLM_OK && len == 0);
        CHECK(plm_vocab_piece(v, 10, false, buf, sizeof buf, &len) == PLM_OK && len == 1 && buf[0] == '\n');
        CHECK(plm_vocab_is_special(v, 259) && plm_vocab_is_special(v, 260) && !plm_vocab_is_special(v, 256));
        plm_vocab_free(v);
    }
    plm_gguf_close(g);
    free(f.p);
    free(k.b.p);
}

int main(void) {
    RUN(test_load);
    RUN(test_fixtures);
    RUN(test_special_pieces);
    RUN(test_invalid_utf8);
    RUN(test_contracts);
    RUN(test_long_random);
    RUN(test_prompt_speed);
    RUN(test_rejected_vocabs);
    RUN(test_tiny_vocab);
    plm_vocab_free(g_vocab);
    plm_gguf_close(g_gguf);
    return TEST_SUMMARY();
}
