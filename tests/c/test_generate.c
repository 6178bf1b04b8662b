/*
 * test_generate.c — the C token loop on the default model: stop strings never
 * leak (not even in part), pieces are whole UTF-8 characters, seeds reproduce,
 * max_tokens / end-of-generation / context-full endings, prefix reuse,
 * cancellation, and bad arguments.
 */
#include "pocketlm.h"
#include "test.h"

static plm_model *model;

static plm_context *new_ctx(int n_ctx) {
    plm_context_params p = plm_context_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = 2;
    plm_context *ctx = NULL;
    if (plm_context_create(model, &p, &ctx)) fprintf(stderr, "  %s\n", plm_last_error());
    return ctx;
}

typedef struct collected {
    char text[16384];
    size_t n;
    int pieces;
    int bad_utf8;
} collected;

/* Length of a valid UTF-8 string prefix check: returns 1 if s[0,n) is valid UTF-8. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c < 0xE0) ? 2 : (c >= 0xE0 && c < 0xF0) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++) if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

/* Runs a generation step by step, collecting pieces. */
static plm_status run(plm_context *ctx, const char *prompt, plm_generate_params *gp, collected *out, plm_stop_reason *why) {
    memset(out, 0, sizeof(*out));
    plm_generator *g = NULL;
    plm_status st = plm_generator_create(ctx, prompt, strlen(prompt), gp, &g);
    if (st) return st;
    plm_stop_reason r = PLM_STOP_NONE;
    size_t k = 0;
    do {
        const char *piece;
        if ((st = plm_generator_next(g, &piece, &k, &r))) break;
        if (k) {
            out->pieces++;
            if (!valid_utf8((const unsigned char *)piece, k)) out->bad_utf8++;
            if (out->n + k < sizeof out->text) {
                memcpy(out->text + out->n, piece, k);
                out->n += k;
            }
        }
    } while (r == PLM_STOP_NONE || k > 0);
    out->text[out->n] = 0;
    if (why) *why = r;
    plm_generator_free(g);
    return st;
}

static void test_greedy_text_and_max_tokens(void) {
    plm_context *ctx = new_ctx(512);
    REQUIRE(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = t_quick() ? 8 : 32;
    collected c;
    plm_stop_reason r;
    REQUIRE(run(ctx, "The capital of France is", &gp, &c, &r) == PLM_OK);
    CHECK(r == PLM_STOP_LENGTH);
    CHECKF(!strncmp(c.text, " Paris.", 7), "got '%s'", c.text);
    /* plm_generate gives the same text in one call */
    char *all = NULL;
    plm_stop_reason r2;
    REQUIRE(plm_generate(ctx, "The capital of France is", 24, &gp, NULL, NULL, &all, &r2) == PLM_OK);
    CHECK(all && !strcmp(all, c.text) && r2 == PLM_STOP_LENGTH);
    plm_free(all);
    plm_context_free(ctx);
}

/* A stop string taken from inside a greedy continuation: the output is exactly
 * the text before it, for stop strings that start mid-token and span tokens. */
static void test_stop_strings(void) {
    plm_context *ctx = new_ctx(512);
    REQUIRE(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = t_quick() ? 16 : 48;
    collected full, c;
    REQUIRE(run(ctx, "Once upon a time, in a small village,", &gp, &full, NULL) == PLM_OK);
    size_t cuts[] = {3, 10, 25, 40, 55};
    const size_t n_cuts = t_quick() ? 2 : sizeof cuts / sizeof cuts[0];
    REQUIRE(full.n > cuts[n_cuts - 1] + 5);
    for (size_t i = 0; i < n_cuts; i++) {
        char stop[8];
        memcpy(stop, full.text + cuts[i], 5);
        stop[5] = 0;
        const char *first = strstr(full.text, stop);
        size_t expect = (size_t)(first - full.text);
        const char *stops[2] = {"ZZZ-never", stop};
        gp.stop = stops;
        gp.n_stop = 2;
        plm_stop_reason r;
        REQUIRE(run(ctx, "Once upon a time, in a small village,", &gp, &c, &r) == PLM_OK);
        CHECKF(r == PLM_STOP_STRING, "stop '%s': reason %d", stop, r);
        CHECKF(c.n == expect && !memcmp(c.text, full.text, expect), "stop '%s': got %zu bytes, want %zu", stop, c.n, expect);
        CHECK(strstr(c.text, stop) == NULL);
    }
    /* a stop string that never matches changes nothing, and its prefix held back is released at the end */
    const char *nomatch[1] = {"\xff never"};
    gp.stop = nomatch;
    gp.n_stop = 1;
    REQUIRE(run(ctx, "Once upon a time, in a small village,", &gp, &c, NULL) == PLM_OK);
    CHECK(c.n == full.n && !memcmp(c.text, full.text, full.n));
    plm_context_free(ctx);
}

/* Sampled CJK text: tokens often carry part of a character, pieces never do. */
static void test_pieces_are_whole_utf8(void) {
    plm_context *ctx = new_ctx(512);
    REQUIRE(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 1.0f;
    gp.sampling.top_k = 0;
    gp.sampling.top_p = 1.0f;
    gp.sampling.min_p = 0.0f;
    gp.max_tokens = t_quick() ? 24 : 40;
    int partial_tokens = 0, bad = 0, total_pieces = 0;
    for (int seed = 1; seed <= (t_quick() ? 1 : 4); seed++) {
        gp.sampling.seed = (uint64_t)seed;
        collected c;
        plm_generator *g = NULL;
        const char *prompt = "中文翻译：我喜欢在公园里散步，看着孩子们玩耍。日本語：";
        REQUIRE(plm_generator_create(ctx, prompt, strlen(prompt), &gp, &g) == PLM_OK);
        plm_stop_reason r = PLM_STOP_NONE;
        size_t k = 0;
        memset(&c, 0, sizeof c);
        do {
            const char *piece;
            REQUIRE(plm_generator_next(g, &piece, &k, &r) == PLM_OK);
            if (k && r == PLM_STOP_NONE) { /* the final flush may end mid-character */
                total_pieces++;
                bad += !valid_utf8((const unsigned char *)piece, k);
            }
        } while (r == PLM_STOP_NONE || k > 0);
        int32_t n;
        const plm_token *toks = plm_generator_tokens(g, &n);
        for (int32_t i = 0; i < n; i++) {
            char buf[64];
            size_t len;
            if (plm_token_to_piece(model, toks[i], false, buf, sizeof buf, &len) == PLM_OK && !valid_utf8((unsigned char *)buf, len))
                partial_tokens++;
        }
        plm_generator_free(g);
    }
    fprintf(stderr, "  %d tokens held part of a character; %d pieces, %d invalid\n", partial_tokens, total_pieces, bad);
    CHECK(partial_tokens > 0); /* the case was exercised */
    CHECK(bad == 0);
    plm_context_free(ctx);
}

static void test_seeds(void) {
    plm_context *ctx = new_ctx(512);
    REQUIRE(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0.9f;
    gp.max_tokens = t_quick() ? 8 : 24;
    gp.sampling.seed = 7;
    collected a, b, c;
    REQUIRE(run(ctx, "My favourite animal is", &gp, &a, NULL) == PLM_OK);
    REQUIRE(run(ctx, "My favourite animal is", &gp, &b, NULL) == PLM_OK);
    gp.sampling.seed = 8;
    REQUIRE(run(ctx, "My favourite animal is", &gp, &c, NULL) == PLM_OK);
    CHECK(a.n == b.n && !memcmp(a.text, b.text, a.n));
    CHECK(a.n != c.n || memcmp(a.text, c.text, a.n) != 0);
    plm_context_free(ctx);
}

static void test_end_of_generation_and_cache_reuse(void) {
    plm_context *ctx = new_ctx(512);
    REQUIRE(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = 200;
    const char *chat = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                       "<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n<|im_start|>assistant\n";
    collected c;
    plm_stop_reason r;
    plm_generator *g = NULL;
    REQUIRE(plm_generator_create(ctx, chat, strlen(chat), &gp, &g) == PLM_OK);
    int32_t first = plm_generator_n_prompt(g);
    plm_generator_free(g);
    REQUIRE(run(ctx, chat, &gp, &c, &r) == PLM_OK);
    CHECKF(r == PLM_STOP_EOG, "reason %d after '%s'", r, c.text);
    CHECK(strstr(c.text, "<|im_end|>") == NULL && c.n > 0);
    /* the same prompt again reuses the cached prefix: only its last token is evaluated */
    REQUIRE(plm_generator_create(ctx, chat, strlen(chat), &gp, &g) == PLM_OK);
    CHECKF(plm_generator_n_prompt(g) == 1, "evaluated %d of %d", plm_generator_n_prompt(g), first);
    plm_generator_free(g);
    gp.keep_cache = false;
    REQUIRE(plm_generator_create(ctx, chat, strlen(chat), &gp, &g) == PLM_OK);
    CHECK(plm_generator_n_prompt(g) == first);
    plm_generator_free(g);
    plm_context_free(ctx);
}

static int stop_at(void *user) { return --*(int *)user < 0; }

static void test_cancel_and_limits(void) {
    plm_context *ctx = new_ctx(t_quick() ? 24 : 64);
    REQUIRE(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = 0; /* until the context is full */
    collected c;
    plm_stop_reason r;
    REQUIRE(run(ctx, "Count: one, two, three,", &gp, &c, &r) == PLM_OK);
    CHECK(r == PLM_STOP_CONTEXT);
    /* an abort callback stops generation with PLM_ERR_CANCELLED; the context stays usable */
    int budget = 40; /* calls: 30 layers of the prompt, then a few tokens */
    plm_context_set_abort_callback(ctx, stop_at, &budget);
    gp.max_tokens = 20;
    CHECK(run(ctx, "Hello", &gp, &c, &r) == PLM_ERR_CANCELLED);
    plm_context_set_abort_callback(ctx, NULL, NULL);
    CHECK(run(ctx, "Hello", &gp, &c, &r) == PLM_OK && r == PLM_STOP_LENGTH);
    /* bad arguments */
    plm_generator *g = NULL;
    CHECK(plm_generator_create(ctx, "", 0, &gp, &g) == PLM_ERR_ARG && g == NULL);
    CHECK(strstr(plm_last_error(), "empty") != NULL);
    static char longp[4096];
    for (int i = 0; i < 4000; i++) longp[i] = (char)('a' + i % 26 - (i % 7 == 0 ? 'a' - ' ' : 0));
    CHECK(plm_generator_create(ctx, longp, 4000, &gp, &g) == PLM_ERR_CONTEXT_FULL);
    plm_token bad = 1 << 20;
    CHECK(plm_generator_create_tokens(ctx, &bad, 1, &gp, &g) == PLM_ERR_ARG);
    gp.seq_id = 100;
    CHECK(plm_generator_create(ctx, "Hi", 2, &gp, &g) == PLM_ERR_ARG);
    gp = plm_generate_default_params();
    gp.sampling.top_p = -1;
    CHECK(plm_generator_create(ctx, "Hi", 2, &gp, &g) == PLM_ERR_ARG);
    const char *stops[1] = {NULL};
    gp = plm_generate_default_params();
    gp.stop = stops;
    gp.n_stop = 1;
    CHECK(plm_generator_create(ctx, "Hi", 2, &gp, &g) == PLM_ERR_ARG);
    plm_context_free(ctx);
}

static int stop_after_two(const char *piece, size_t len, void *user) {
    (void)piece;
    (void)len;
    return ++*(int *)user >= 2;
}

static void test_callback_stop(void) {
    plm_context *ctx = new_ctx(256);
    REQUIRE(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = 30;
    int calls = 0;
    char *text = NULL;
    plm_stop_reason r;
    REQUIRE(plm_generate(ctx, "The sky is", 10, &gp, stop_after_two, &calls, &text, &r) == PLM_OK);
    CHECK(calls == 2 && r == PLM_STOP_CALLER && text && strlen(text) > 0);
    plm_free(text);
    plm_context_free(ctx);
}

int main(void) {
    if (plm_model_load(NULL, NULL, &model)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(test_greedy_text_and_max_tokens);
    RUN(test_stop_strings);
    RUN(test_pieces_are_whole_utf8);
    RUN(test_seeds);
    RUN(test_end_of_generation_and_cache_reuse);
    RUN(test_cancel_and_limits);
    RUN(test_callback_stop);
    plm_model_free(model);
    return TEST_SUMMARY();
}
