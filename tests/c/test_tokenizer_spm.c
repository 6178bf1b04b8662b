/*
 * test_tokenizer_spm.c — the SentencePiece tokenizer (tokenizer.ggml.model =
 * "llama") against golden ids, and on vocabularies built by hand.
 *
 * tests/data/tokens_gemma3.tsv holds reference ids for Gemma 3 270M, written by
 * tools/make_spm_token_fixtures.py from llama.cpp (checked against Hugging
 * Face). The model is $POCKETLM_GEMMA3, else gemma-3-270m-q4_k_m.gguf in the
 * pocketlm cache; without it the test fails and says to run
 * tools/fetch_gemma3.sh. Also checked: round trips (invalid UTF-8 included),
 * pieces, the buffer contracts, speed on long inputs, and tiny vocabularies
 * built in memory whose ids are worked out by hand from the algorithm.
 */
#include "test.h"

#include "gguf.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdint.h>
#include <time.h>

#define GEMMA3_NAME "gemma-3-270m-q4_k_m.gguf"

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
    if (n) memcpy(b->p + b->n, p, n);
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

/* Tokenizes (no special handling) and checks that the pieces give the text back. */
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

/* Tokenizes and compares with the expected ids, printing both on a mismatch. */
static bool ids_are(const plm_vocab *v, const char *text, bool add_special, bool parse_special, const plm_token *want, int32_t n_want) {
    int32_t n = 0;
    plm_status st;
    plm_token *ids = tokenize(v, text, strlen(text), add_special, parse_special, &n, &st);
    if (!ids) {
        fprintf(stderr, "  '%s': %s: %s\n", text, plm_status_str(st), plm_last_error());
        return false;
    }
    bool same = n == n_want && (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "  '%s' (add_special %d, parse_special %d)\n    want:", text, add_special, parse_special);
        for (int32_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n    got: ");
        for (int32_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return same;
}

#define IDS(...) ((const plm_token[]){__VA_ARGS__}), (int32_t)(sizeof((const plm_token[]){__VA_ARGS__}) / sizeof(plm_token))

static bool piece_is(const plm_vocab *v, plm_token t, bool special, const char *want, size_t want_len) {
    char buf[64];
    size_t n = 999;
    return plm_vocab_piece(v, t, special, buf, sizeof buf, &n) == PLM_OK && n == want_len && memcmp(buf, want, n) == 0;
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

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ------------------------------------------------------------- Gemma 3 */

/* $POCKETLM_GEMMA3, else <cache>/gemma-3-270m-q4_k_m.gguf with the cache of
 * tools/fetch_gemma3.sh ($POCKETLM_CACHE, $XDG_CACHE_HOME/pocketlm, ~/.cache/pocketlm). */
static bool gemma3_path(char *out, size_t cap) {
    const char *env = getenv("POCKETLM_GEMMA3");
    if (env && *env) return snprintf(out, cap, "%s", env) < (int)cap;
    const char *dir = getenv("POCKETLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (dir && *dir) n = snprintf(out, cap, "%s/%s", dir, GEMMA3_NAME);
    else if (xdg && *xdg) n = snprintf(out, cap, "%s/pocketlm/%s", xdg, GEMMA3_NAME);
    else if (home && *home) n = snprintf(out, cap, "%s/.cache/pocketlm/%s", home, GEMMA3_NAME);
    else return false;
    return n > 0 && n < (int)cap;
}

static void test_load(void) {
    char path[4096];
    bool have = gemma3_path(path, sizeof path);
    FILE *f = have ? fopen(path, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "  no Gemma 3 model at %s: run tools/fetch_gemma3.sh (or set POCKETLM_GEMMA3 to the GGUF)\n", have ? path : "(no cache directory)");
        CHECK(f != NULL);
        return;
    }
    fclose(f);
    plm_status st = plm_gguf_open(path, true, &g_gguf);
    if (st) fprintf(stderr, "  %s: %s\n", plm_status_str(st), plm_last_error());
    REQUIRE(st == PLM_OK);
    double t0 = now_us();
    st = plm_vocab_load(g_gguf, &g_vocab);
    if (st) fprintf(stderr, "  %s: %s\n", plm_status_str(st), plm_last_error());
    REQUIRE(st == PLM_OK);
    fprintf(stderr, "  vocabulary loaded in %.1f ms\n", (now_us() - t0) / 1e3);

    const plm_vocab *v = g_vocab;
    CHECK(plm_vocab_n_tokens(v) == 262144);
    CHECK(plm_vocab_bos(v) == 2);
    CHECK(plm_vocab_eos(v) == 1);
    CHECK(plm_vocab_eot(v) == 106); /* <end_of_turn>, found by its text */
    CHECK(plm_vocab_add_bos(v));
    CHECK(!plm_vocab_add_eos(v));
    CHECK(!plm_vocab_add_space_prefix(v));
    CHECK(plm_vocab_is_eog(v, 1) && plm_vocab_is_eog(v, 106));
    CHECK(!plm_vocab_is_eog(v, 2) && !plm_vocab_is_eog(v, 105) && !plm_vocab_is_eog(v, 107));
    CHECK(plm_vocab_token_type(v, 105) == PLM_TOKEN_TYPE_CONTROL);      /* <start_of_turn> */
    CHECK(plm_vocab_token_type(v, 6) == PLM_TOKEN_TYPE_CONTROL);        /* <unused0> */
    CHECK(plm_vocab_token_type(v, 107) == PLM_TOKEN_TYPE_USER_DEFINED); /* "\n" */
    CHECK(plm_vocab_token_type(v, 238) == PLM_TOKEN_TYPE_BYTE);         /* <0x00> */
    CHECK(plm_vocab_is_special(v, 105) && plm_vocab_is_special(v, 138) && !plm_vocab_is_special(v, 9259));
    CHECK(plm_vocab_find(v, "<start_of_turn>", 15) == 105);
    CHECK(plm_vocab_find(v, "\xe2\x96\x81Hello", 8) == 26352);
    for (int b = 0; b < 256; b++) CHECKF(v->byte_tok[b] == 238 + b, "byte 0x%02x falls back to %d", b, v->byte_tok[b]);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void test_fixtures(void) {
    REQUIRE(g_vocab);
    FILE *f = fopen(DATA("tokens_gemma3.tsv"), "rb");
    if (!f) fprintf(stderr, "  cannot open %s (run the tests from the repository root)\n", DATA("tokens_gemma3.tsv"));
    REQUIRE(f);
    static char line[65536];
    int cases = 0, round_tripped = 0;
    while (fgets(line, sizeof line, f)) {
        size_t ll = strlen(line);
        CHECKF(ll + 1 < sizeof line, "fixture line longer than %zu bytes", sizeof line);
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
        if (!text) abort();
        size_t len = 0;
        for (size_t i = 0; i + 1 < hl; i += 2) text[len++] = (char)(hexval(field[3][i]) * 16 + hexval(field[3][i + 1]));
        static plm_token want[8192];
        int32_t n_want = 0;
        for (char *q = field[4]; *q && n_want < 8192;) {
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
            /* A literal U+2581 in the text comes back as a space: SentencePiece
             * cannot tell them apart. Otherwise (Gemma adds no space prefix)
             * the pieces give the text back exactly. */
            bool has_marker = len >= 3 && memmem(text, len, "\xe2\x96\x81", 3) != NULL;
            if (!parse_special && !has_marker && utf8_valid((const unsigned char *)text, len)) {
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
    CHECK(cases >= 60);
}

static void test_pieces(void) {
    REQUIRE(g_vocab);
    const plm_vocab *v = g_vocab;
    CHECK(piece_is(v, 26352, false, " Hello", 6));                   /* "▁Hello": the marker is a space */
    CHECK(piece_is(v, 9259, false, "Hello", 5));
    CHECK(piece_is(v, 105, true, "<start_of_turn>", 15));            /* control: its text, with special */
    CHECK(piece_is(v, 105, false, "", 0));                           /* ... and nothing without */
    CHECK(piece_is(v, 3, false, "", 0) && piece_is(v, 3, true, "<unk>", 5));
    CHECK(piece_is(v, 107, false, "\n", 1));                         /* user-defined: always its text */
    CHECK(piece_is(v, 138, false, "  ", 2));
    CHECK(piece_is(v, 238, false, "\0", 1) && piece_is(v, 238 + 0xE9, false, "\xe9", 1)); /* byte tokens */
    CHECK(piece_is(v, 236743, false, " ", 1));                       /* "▁" alone */
    /* The SmolLM-style chat prompt, with Gemma's markers, detokenizes with special on. */
    const char *chat = "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n";
    int32_t n = 0;
    plm_status st;
    plm_token *ids = tokenize(v, chat, strlen(chat), true, true, &n, &st);
    REQUIRE(ids);
    CHECK(n > 2 && ids[0] == 2 && ids[1] == 105);
    bytes back = {0};
    CHECK(detokenize(v, ids, n, true, &back) && back.n == strlen(chat) + 5 && memcmp(back.p, "<bos>", 5) == 0 &&
          strcmp(back.p + 5, chat) == 0);
    CHECK(detokenize(v, ids, n, false, &back) && strcmp(back.p, "user\nHi there\nmodel\n") == 0);
    free(back.p);
    free(ids);
}

static void test_invalid_utf8(void) {
    REQUIRE(g_vocab);
    const plm_vocab *v = g_vocab;
    /* Gemma has all 256 byte tokens, so every input comes back unchanged. */
    static const struct {
        const char *s;
        size_t n;
    } cases[] = {
        {"abc\xe4\xb8", 5},             /* truncated 3-byte sequence */
        {"\xe4\xb8 x", 4},              /* ... followed by a space: still a space */
        {"\x80\x80 x \xbf", 7},         /* lone continuation bytes */
        {"\xed\xa0\x80 surrogate", 13}, /* UTF-16 surrogate */
        {"\xf0\x9f\x98", 3},            /* truncated emoji */
        {"h\xc3\xa9llo\xe9w\xc3\xb6rld\xc3", 14},
        {"\xff\xfe", 2},
        {"\xc0\x80 overlong", 10},
        {"\xf4\x90\x80\x80 big", 8},
        {"  \xfe\xfe\xfe  \n\xff", 10},
        {"\xf8\x88\x80\x80\x80", 5},
        {"a\x00" "b", 3},
        {"\xe2\x96", 2}, /* the first two bytes of U+2581 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECKF(round_trips(v, cases[i].s, cases[i].n), "case %zu does not round-trip", i);
        int32_t n = 0;
        plm_status st;
        plm_token *ids = tokenize(v, cases[i].s, cases[i].n, true, true, &n, &st);
        CHECKF(ids != NULL, "case %zu: %s", i, plm_status_str(st));
        free(ids);
    }
    /* An invalid byte is its byte token. */
    plm_token ids[8];
    int32_t n = 0;
    CHECK(plm_vocab_tokenize(v, "\xff", 1, false, false, ids, 8, &n) == PLM_OK && n == 1 && ids[0] == 238 + 0xFF);
    char all[256];
    for (int b = 0; b < 256; b++) {
        all[b] = (char)b;
        CHECKF(round_trips(v, &all[b], 1), "byte 0x%02x", b);
    }
    CHECK(round_trips(v, all, sizeof all));
}

static void test_contracts(void) {
    REQUIRE(g_vocab);
    const plm_vocab *v = g_vocab;
    plm_token ids[8];
    int32_t n = -1;
    CHECK(plm_vocab_tokenize(v, "Hello world", 11, true, false, ids, 8, &n) == PLM_OK && n == 3);
    n = -1;
    CHECK(plm_vocab_tokenize(v, "Hello world", 11, true, false, ids, 2, &n) == PLM_ERR_BUFFER && n == 3);
    CHECK(ids[0] == 2 && ids[1] == 9259); /* what fits is written */
    n = -1;
    CHECK(plm_vocab_tokenize(v, "Hello world", 11, false, false, NULL, 0, &n) == PLM_ERR_BUFFER && n == 2);
    n = -1;
    CHECK(plm_vocab_tokenize(v, "", 0, true, true, ids, 8, &n) == PLM_OK && n == 1 && ids[0] == 2);
    n = -1;
    CHECK(plm_vocab_tokenize(v, "", 0, false, true, ids, 8, &n) == PLM_OK && n == 0);
    CHECK(plm_vocab_tokenize(v, NULL, 0, false, false, NULL, 0, &n) == PLM_OK && n == 0);
    CHECK(plm_vocab_tokenize(v, NULL, 5, false, false, ids, 8, &n) == PLM_ERR_ARG);
    CHECK(plm_vocab_tokenize(v, "x", 1, false, false, ids, -1, &n) == PLM_ERR_ARG);
    CHECK(plm_vocab_tokenize(v, "x", 1, false, false, NULL, 4, &n) == PLM_ERR_ARG);

    char buf[32];
    size_t len = 99;
    CHECK(plm_vocab_piece(v, -1, true, buf, sizeof buf, &len) == PLM_ERR_ARG && len == 0);
    CHECK(plm_vocab_piece(v, 262144, true, buf, sizeof buf, &len) == PLM_ERR_ARG);
    CHECK(plm_vocab_piece(v, 105, true, buf, 4, &len) == PLM_ERR_BUFFER && len == 15);
    CHECK(plm_vocab_piece(v, 26352, false, buf, 5, &len) == PLM_ERR_BUFFER && len == 6);
    CHECK(plm_vocab_piece(v, 26352, false, NULL, 0, &len) == PLM_ERR_BUFFER && len == 6);
    CHECK(plm_vocab_piece(v, 105, false, NULL, 0, &len) == PLM_OK && len == 0);
}

/* xorshift64*: a fixed stream, so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 33) % n;
}

/* Tokenizes 100 KB of text as one fragment; must round-trip and not be quadratic. */
static void time_round_trip(const char *what, const bytes *text) {
    double t0 = now_us();
    CHECKF(round_trips(g_vocab, text->p, text->n), "%s does not round-trip", what);
    fprintf(stderr, "  %s (%zu bytes): %.1f ms\n", what, text->n, (now_us() - t0) / 1e3);
}

static void test_long_inputs(void) {
    REQUIRE(g_vocab);
    static const char *const pieces[] = {
        "the", "The", " and", "tokenizer", "don't", "I'm", "x", "ZZZ", "über", "café", "Straße", "你好", "世界", "こんにちは",
        "안녕", "مرحبا", "١٢٣", "½", "Ελλάδα", "русский", "हिन्दी", "👍", "👨‍👩‍👧", "🏳️‍🌈", "\xe2\x80\x8b", "\xc2\xa0", "\xe3\x80\x80",
        "12345", "3.14", "0x1F", "()", "{}", "==", "->", "//", "#!", "$", "'s", "<start_of_turn>", "<end_of_turn>", "<bos>", "<unused7>",
        "<table>", "<", ">", "\\n", "\"", "`", "~", "\xff", "\xc3", "\x80", "\xe4\xb8", "\xf0\x9f", "\xee\x80\x80",
    };
    static const char *const spaces[] = {" ", " ", " ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t", "   \n\n\n"};
    bytes text = {0};
    while (text.n < 100 * 1024) {
        bytes_adds(&text, pieces[rnd(sizeof pieces / sizeof pieces[0])]);
        if (rnd(3) == 0) bytes_adds(&text, spaces[rnd(sizeof spaces / sizeof spaces[0])]);
    }
    time_round_trip("random text", &text);
    /* With parse_special the special texts become their ids. */
    int32_t n = 0, n_plain = 0;
    plm_status st;
    double t0 = now_us();
    plm_token *ids = tokenize(g_vocab, text.p, text.n, true, true, &n, &st);
    fprintf(stderr, "  random text with parse_special: %.1f ms\n", (now_us() - t0) / 1e3);
    CHECK(ids != NULL);
    free(ids);
    ids = tokenize(g_vocab, text.p, text.n, false, false, &n_plain, &st);
    CHECK(ids != NULL && n < n_plain);
    free(ids);

    /* No pre-tokenizer and no space to cut words at: one merge problem of 100 KB each. */
    bytes word = {0};
    while (word.n < 100 * 1024) bytes_adds(&word, rnd(2) ? "ab" : "ba");
    time_round_trip("one 100 KB word", &word);
    memset(word.p, 'a', word.n);
    time_round_trip("100 KB of 'a'", &word);
    memset(word.p, '7', word.n);
    time_round_trip("100 KB of '7'", &word);
    memset(word.p, ' ', word.n);
    time_round_trip("100 KB of spaces", &word);
    for (size_t i = 0; i < word.n; i++) word.p[i] = i % 64 == 63 ? 'x' : ' ';
    time_round_trip("runs of 63 spaces", &word);
    word.n = 0;
    while (word.n < 100 * 1024) bytes_adds(&word, "\xf0\x9f\x98\x80\xe2\x96\x81");
    t0 = now_us();
    ids = tokenize(g_vocab, word.p, word.n, false, false, &n, &st);
    fprintf(stderr, "  100 KB of emoji and U+2581: %.1f ms\n", (now_us() - t0) / 1e3);
    CHECK(ids != NULL);
    free(ids);
    free(word.p);
    free(text.p);
}

static void test_prompt_speed(void) {
    REQUIRE(g_vocab);
    bytes text = {0};
    bytes_adds(&text, "<start_of_turn>user\nYou are a helpful assistant.\n\n");
    while (text.n < 2300) /* about 512 tokens of English */
        bytes_adds(&text, "The quick brown fox jumps over the lazy dog, and then it runs away into the forest near 42 old trees. ");
    bytes_adds(&text, "<end_of_turn>\n<start_of_turn>model\n");
    static plm_token out[4096];
    int32_t n = 0, m = 0;
    CHECK(plm_vocab_tokenize(g_vocab, text.p, text.n, true, true, out, 4096, &n) == PLM_OK);
    for (int special = 0; special < 2; special++) {
        int reps = 100;
        double t0 = now_us();
        for (int i = 0; i < reps; i++) CHECK(plm_vocab_tokenize(g_vocab, text.p, text.n, true, special, out, 4096, &m) == PLM_OK);
        fprintf(stderr, "  %d-token prompt, parse_special %d: %.1f us per tokenization\n", m, special, (now_us() - t0) / reps);
    }
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
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    bytes_add(b, s, strlen(s));
}
static void kv_key(kv_builder *k, const char *key, uint32_t type) {
    put_str(&k->b, key);
    put_u32(&k->b, type);
    k->n_kv++;
}
static void kv_str(kv_builder *k, const char *key, const char *val) {
    kv_key(k, key, PLM_GGUF_STRING);
    put_str(&k->b, val);
}
static void kv_u32(kv_builder *k, const char *key, uint32_t val) {
    kv_key(k, key, PLM_GGUF_U32);
    put_u32(&k->b, val);
}
static void kv_bool(kv_builder *k, const char *key, bool val) {
    kv_key(k, key, PLM_GGUF_BOOL);
    bytes_add(&k->b, val ? "\x01" : "\x00", 1);
}
static void kv_strs(kv_builder *k, const char *key, const char *const *vals, size_t n) {
    kv_key(k, key, PLM_GGUF_ARRAY);
    put_u32(&k->b, PLM_GGUF_STRING);
    put_u64(&k->b, n);
    for (size_t i = 0; i < n; i++) put_str(&k->b, vals[i]);
}
static void kv_f32s(kv_builder *k, const char *key, const float *vals, size_t n) {
    kv_key(k, key, PLM_GGUF_ARRAY);
    put_u32(&k->b, PLM_GGUF_F32);
    put_u64(&k->b, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &vals[i], 4);
        put_u32(&k->b, bits);
    }
}
static void kv_i32s(kv_builder *k, const char *key, const int32_t *vals, size_t n) {
    kv_key(k, key, PLM_GGUF_ARRAY);
    put_u32(&k->b, PLM_GGUF_I32);
    put_u64(&k->b, n);
    for (size_t i = 0; i < n; i++) put_u32(&k->b, (uint32_t)vals[i]);
}

/* A vocabulary in memory: the GGUF bytes, the reader and the vocab (NULL with
 * the status in st if loading failed). */
typedef struct mem_vocab {
    bytes file;
    plm_gguf *g;
    plm_vocab *v;
    plm_status st;
} mem_vocab;

static mem_vocab mem_load(const kv_builder *k) {
    mem_vocab m = {0};
    bytes_add(&m.file, "GGUF", 4);
    put_u32(&m.file, 3);
    put_u64(&m.file, 0);
    put_u64(&m.file, k->n_kv);
    bytes_add(&m.file, k->b.p, k->b.n);
    m.st = plm_gguf_open_memory(m.file.p, m.file.n, &m.g);
    if (m.st == PLM_OK) m.st = plm_vocab_load(m.g, &m.v);
    return m;
}

static void mem_free(mem_vocab *m) {
    plm_vocab_free(m->v);
    plm_gguf_close(m->g);
    free(m->file.p);
}

/* The tiny vocabulary. Scores decide which adjacent pair merges first; the ids
 * in the tests below follow from them by hand. */
enum { T_UNK, T_BOS, T_EOS, T_NL, T_C3, T_A9, T_SP, T_A, T_B, T_C, T_AB, T_BC, T_SPA, T_SPAB, T_AA, T_USER, T_N };
static const char *const tiny_text[T_N] = {
    "<unk>", "<s>", "</s>", "<0x0A>", "<0xC3>", "<0xA9>", "\xe2\x96\x81", "a", "b", "c", "ab", "bc",
    "\xe2\x96\x81" "a", "\xe2\x96\x81" "ab", "aa", "<user>",
};
static const float tiny_score[T_N] = {0, 0, 0, 0, 0, 0, -1, -2, -3, -4, -5, -1, -6, -7, -2.5f, 0};
static const int32_t tiny_type[T_N] = {2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4};

/* Metadata of the tiny vocabulary; add_space_prefix: 0 false, 1 true, -1 absent. */
static kv_builder tiny_kv(int add_space_prefix) {
    kv_builder k = {0};
    kv_str(&k, "tokenizer.ggml.model", "llama");
    kv_strs(&k, "tokenizer.ggml.tokens", tiny_text, T_N);
    kv_f32s(&k, "tokenizer.ggml.scores", tiny_score, T_N);
    kv_i32s(&k, "tokenizer.ggml.token_type", tiny_type, T_N);
    if (add_space_prefix >= 0) kv_bool(&k, "tokenizer.ggml.add_space_prefix", add_space_prefix);
    return k;
}

static void test_tiny_spm(void) {
    /* add_space_prefix absent: SentencePiece's default is true. */
    kv_builder k = tiny_kv(-1);
    mem_vocab m = mem_load(&k);
    if (m.st) fprintf(stderr, "  %s: %s\n", plm_status_str(m.st), plm_last_error());
    REQUIRE(m.v);
    const plm_vocab *v = m.v;
    /* llama.cpp's SPM defaults: UNK 0, BOS 1, EOS 2, add BOS, no EOS. */
    CHECK(plm_vocab_bos(v) == T_BOS && plm_vocab_eos(v) == T_EOS && v->unk == T_UNK);
    CHECK(plm_vocab_add_bos(v) && !plm_vocab_add_eos(v) && plm_vocab_add_space_prefix(v));
    CHECK(plm_vocab_is_eog(v, T_EOS) && !plm_vocab_is_eog(v, T_BOS));

    /* "▁ab": pairs ▁a (-6) and ab (-5); ab wins, then ▁+ab forms ▁ab (-7). */
    CHECK(ids_are(v, "ab", false, false, IDS(T_SPAB)));
    /* "▁abc": ab (-5) and bc (-1) compete; bc wins although ab is further
     * left, then ▁a (-6) merges; "▁abc" and "abc" are not tokens. */
    CHECK(ids_are(v, "abc", false, false, IDS(T_SPA, T_BC)));
    /* "▁aaa": ▁a (-6) and two aa (-2.5) ties: the leftmost aa wins, leaving
     * ▁ aa a (▁aa and aaa are not tokens). */
    CHECK(ids_are(v, "aaa", false, false, IDS(T_SP, T_AA, T_A)));
    /* A space in the text is a ▁ of its own: "▁▁ab" -> ▁ ▁ab. */
    CHECK(ids_are(v, " ab", false, false, IDS(T_SP, T_SPAB)));
    CHECK(ids_are(v, "a b", false, false, IDS(T_SPA, T_SP, T_B)));
    /* Byte fallback: é is <0xC3><0xA9>, \n is <0x0A>; characters with no
     * token and no byte token become one <unk> each. */
    CHECK(ids_are(v, "\xc3\xa9", false, false, IDS(T_SP, T_C3, T_A9)));
    CHECK(ids_are(v, "a\nb", false, false, IDS(T_SPA, T_NL, T_B)));
    CHECK(ids_are(v, "xa\xe2\x82\xac", false, false, IDS(T_SP, T_UNK, T_A, T_UNK)));
    CHECK(ids_are(v, "\xff", false, false, IDS(T_SP, T_UNK)));
    /* add_special puts BOS first (and no EOS); the text still gets its prefix. */
    CHECK(ids_are(v, "ab", true, false, IDS(T_BOS, T_SPAB)));
    CHECK(ids_are(v, "", true, false, IDS(T_BOS)));
    CHECK(ids_are(v, "", false, false, NULL, 0));
    /* Text after a special token gets the prefix again; user-defined tokens
     * split always, control tokens only with parse_special. */
    CHECK(ids_are(v, "ab<user>ab", false, false, IDS(T_SPAB, T_USER, T_SPAB)));
    CHECK(ids_are(v, "<s>ab", false, true, IDS(T_BOS, T_SPAB)));
    CHECK(ids_are(v, "<s>ab", false, false, IDS(T_SP, T_UNK, T_UNK, T_UNK, T_AB)));
    CHECK(ids_are(v, "<user>", false, false, IDS(T_USER)));

    /* Pieces: ▁ is a space, byte tokens their byte, control and unknown
     * tokens only with special, user-defined ones always. */
    CHECK(piece_is(v, T_SPAB, false, " ab", 3) && piece_is(v, T_SP, false, " ", 1));
    CHECK(piece_is(v, T_C3, false, "\xc3", 1) && piece_is(v, T_NL, false, "\n", 1));
    CHECK(piece_is(v, T_BOS, false, "", 0) && piece_is(v, T_BOS, true, "<s>", 3));
    CHECK(piece_is(v, T_UNK, false, "", 0) && piece_is(v, T_UNK, true, "<unk>", 5));
    CHECK(piece_is(v, T_USER, false, "<user>", 6));
    /* The pieces keep the prefix's space (the sequence-level join drops it). */
    bytes back = {0};
    int32_t n = 0;
    plm_status st;
    plm_token *ids = tokenize(v, "a b\n\xc3\xa9", 7, false, false, &n, &st);
    CHECK(ids && detokenize(v, ids, n, false, &back) && strcmp(back.p, " a b\n\xc3\xa9") == 0);
    free(ids);
    free(back.p);
    mem_free(&m);
    free(k.b.p);

    /* add_space_prefix false: no ▁ in front, not even after a special token. */
    k = tiny_kv(0);
    m = mem_load(&k);
    REQUIRE(m.v);
    v = m.v;
    CHECK(!plm_vocab_add_space_prefix(v));
    CHECK(ids_are(v, "ab", false, false, IDS(T_AB)));
    CHECK(ids_are(v, "abc", false, false, IDS(T_A, T_BC)));
    CHECK(ids_are(v, "aaa", false, false, IDS(T_AA, T_A)));
    CHECK(ids_are(v, " ab", false, false, IDS(T_SPAB)));
    CHECK(ids_are(v, "ab<user>ab", true, false, IDS(T_BOS, T_AB, T_USER, T_AB)));
    CHECK(round_trips(v, "ab a\n\xc3\xa9 bc", 10));
    mem_free(&m);
    free(k.b.p);

    /* add_space_prefix true, stated. */
    k = tiny_kv(1);
    m = mem_load(&k);
    REQUIRE(m.v);
    CHECK(plm_vocab_add_space_prefix(m.v));
    CHECK(ids_are(m.v, "ab", false, false, IDS(T_SPAB)));
    mem_free(&m);
    free(k.b.p);
}

/* Scores as int32 (llama.cpp reads those too); explicit special ids and flags. */
static void test_tiny_spm_variants(void) {
    int32_t iscores[T_N];
    for (int i = 0; i < T_N; i++) iscores[i] = (int32_t)(tiny_score[i] * 2); /* aa -5, ab -10 */
    kv_builder k = {0};
    kv_str(&k, "tokenizer.ggml.model", "llama");
    kv_str(&k, "tokenizer.ggml.pre", "no-such-pre"); /* ignored for SentencePiece */
    kv_strs(&k, "tokenizer.ggml.tokens", tiny_text, T_N);
    kv_i32s(&k, "tokenizer.ggml.scores", iscores, T_N);
    kv_i32s(&k, "tokenizer.ggml.token_type", tiny_type, T_N);
    kv_bool(&k, "tokenizer.ggml.add_space_prefix", false);
    kv_bool(&k, "tokenizer.ggml.add_bos_token", false);
    kv_bool(&k, "tokenizer.ggml.add_eos_token", true);
    kv_u32(&k, "tokenizer.ggml.eos_token_id", T_USER);
    mem_vocab m = mem_load(&k);
    if (m.st) fprintf(stderr, "  %s: %s\n", plm_status_str(m.st), plm_last_error());
    REQUIRE(m.v);
    CHECK(plm_vocab_eos(m.v) == T_USER && !plm_vocab_add_bos(m.v) && plm_vocab_add_eos(m.v));
    /* "aab": aa (-5) and ab (-10): aa first, then aa+b is no token. */
    CHECK(ids_are(m.v, "aab", true, false, IDS(T_AA, T_B, T_USER)));
    mem_free(&m);
    free(k.b.p);

    /* Two tokens: the default EOS (2) does not exist and is dropped; BOS 1 does. */
    static const char *const two[] = {"<unk>", "<s>"};
    static const float two_scores[] = {0, 0};
    k = (kv_builder){0};
    kv_str(&k, "tokenizer.ggml.model", "llama");
    kv_strs(&k, "tokenizer.ggml.tokens", two, 2);
    kv_f32s(&k, "tokenizer.ggml.scores", two_scores, 2);
    m = mem_load(&k);
    REQUIRE(m.v);
    CHECK(plm_vocab_bos(m.v) == 1 && plm_vocab_eos(m.v) == -1);
    /* No byte tokens and nothing else: every character is <unk>. */
    CHECK(ids_are(m.v, "hi", true, false, IDS(1, 0, 0, 0)));
    mem_free(&m);
    free(k.b.p);
}

/* Metadata that must be rejected, with a message naming the key. */
static void test_rejected_spm(void) {
    static const float scores3[] = {0, -1, -2};
    static const char *const toks3[] = {"<unk>", "<s>", "</s>"};
    struct {
        const char *what, *key;
    } expect[] = {
        {"scores missing", "tokenizer.ggml.scores"},
        {"scores too short", "tokenizer.ggml.scores"},
        {"scores of strings", "tokenizer.ggml.scores"},
        {"a NaN score", "tokenizer.ggml.scores[1]"},
        {"token types too long", "tokenizer.ggml.token_type"},
        {"add_space_prefix a string", "tokenizer.ggml.add_space_prefix"},
        {"BOS out of range", "tokenizer.ggml.bos_token_id"},
        {"a token that is not UTF-8", "tokenizer.ggml.tokens[2]"},
        {"BOS asked for but absent", "tokenizer.ggml.add_bos_token"},
    };
    for (size_t c = 0; c < sizeof expect / sizeof expect[0]; c++) {
        kv_builder k = {0};
        kv_str(&k, "tokenizer.ggml.model", "llama");
        if (c == 7) {
            static const char *const bad[] = {"<unk>", "<s>", "\xc3"};
            kv_strs(&k, "tokenizer.ggml.tokens", bad, 3);
        } else if (c == 8) {
            kv_strs(&k, "tokenizer.ggml.tokens", toks3, 1); /* the default BOS (1) does not exist */
        } else {
            kv_strs(&k, "tokenizer.ggml.tokens", toks3, 3);
        }
        if (c == 1) kv_f32s(&k, "tokenizer.ggml.scores", scores3, 2);
        else if (c == 2) kv_strs(&k, "tokenizer.ggml.scores", toks3, 3);
        else if (c == 3) {
            float nan_scores[3] = {0, NAN, 0};
            kv_f32s(&k, "tokenizer.ggml.scores", nan_scores, 3);
        } else if (c == 8) kv_f32s(&k, "tokenizer.ggml.scores", scores3, 1);
        else if (c != 0) kv_f32s(&k, "tokenizer.ggml.scores", scores3, 3);
        if (c == 4) {
            static const int32_t types[] = {2, 3, 3, 1};
            kv_i32s(&k, "tokenizer.ggml.token_type", types, 4);
        }
        if (c == 5) kv_str(&k, "tokenizer.ggml.add_space_prefix", "yes");
        if (c == 6) kv_u32(&k, "tokenizer.ggml.bos_token_id", 3);
        mem_vocab m = mem_load(&k);
        CHECKF(m.st == PLM_ERR_FORMAT, "%s: %s", expect[c].what, plm_status_str(m.st));
        CHECKF(m.st && strstr(plm_last_error(), expect[c].key) != NULL, "%s: message '%s' does not name %s", expect[c].what,
               m.st ? plm_last_error() : "", expect[c].key);
        mem_free(&m);
        free(k.b.p);
    }
}

int main(void) {
    RUN(test_load);
    RUN(test_fixtures);
    RUN(test_pieces);
    RUN(test_invalid_utf8);
    RUN(test_contracts);
    RUN(test_long_inputs);
    RUN(test_prompt_speed);
    RUN(test_tiny_spm);
    RUN(test_tiny_spm_variants);
    RUN(test_rejected_spm);
    plm_vocab_free(g_vocab);
    plm_gguf_close(g_gguf);
    return TEST_SUMMARY();
}
