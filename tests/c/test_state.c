/*
 * test_state.c — saving and restoring a context: a restored context continues
 * exactly as the original would; malformed states are refused without touching
 * the context; a sequence's token history reads back.
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

/* Greedy continuation of whatever ctx holds in sequence 0, from its current logits. */
static void continue_greedy(plm_context *ctx, int n, plm_token *out) {
    plm_model_info in;
    plm_model_get_info(model, &in);
    for (int i = 0; i < n; i++) {
        const float *l = plm_context_logits(ctx, -1);
        int b = 0;
        for (int v = 1; v < in.n_vocab; v++) if (l[v] > l[b]) b = v;
        out[i] = b;
        plm_batch one = {.n_tokens = 1, .token = &out[i]};
        if (plm_decode(ctx, &one)) return;
    }
}

static void test_save_load_continues_identically(void) {
    plm_context *a = new_ctx(256), *b = new_ctx(256);
    REQUIRE(a && b);
    plm_token p[32];
    int32_t n;
    REQUIRE(plm_tokenize(model, "The old lighthouse keeper climbed the stairs", 44, true, false, p, 32, &n) == PLM_OK);
    plm_batch bt = {.n_tokens = n, .token = p};
    REQUIRE(plm_decode(a, &bt) == PLM_OK);
    size_t size = plm_context_state_size(a), got = 0;
    CHECK(size > 0);
    unsigned char *buf = malloc(size);
    CHECK(plm_context_state_save(a, buf, size - 1, &got) == PLM_ERR_BUFFER && got == size);
    REQUIRE(plm_context_state_save(a, buf, size, &got) == PLM_OK && got == size);
    REQUIRE(plm_context_state_load(b, buf, size) == PLM_OK);
    CHECK(plm_kv_used(b) == n && plm_kv_seq_pos_max(b, 0) == n - 1);
    plm_token ga[16], gb[16];
    const int ng = t_quick() ? 4 : 16;
    continue_greedy(a, ng, ga);
    continue_greedy(b, ng, gb);
    CHECK(memcmp(ga, gb, (size_t)ng * sizeof(plm_token)) == 0);
    /* token history */
    plm_token hist[64];
    int32_t hn = plm_kv_seq_tokens(b, 0, hist, 64);
    CHECK(hn == n + ng && memcmp(hist, p, (size_t)n * sizeof(plm_token)) == 0);
    CHECK(plm_kv_seq_tokens(b, 0, NULL, 0) == n + ng);
    CHECK(plm_kv_seq_tokens(b, 5, hist, 64) == 0);
    /* loading the old state again rewinds b */
    REQUIRE(plm_context_state_load(b, buf, size) == PLM_OK);
    continue_greedy(b, ng, gb);
    CHECK(memcmp(ga, gb, (size_t)ng * sizeof(plm_token)) == 0);
    free(buf);
    plm_context_free(a);
    plm_context_free(b);
}

static void test_bad_states_refused(void) {
    plm_context *a = new_ctx(64), *small = new_ctx(8);
    REQUIRE(a && small);
    plm_token p[20];
    for (int i = 0; i < 20; i++) p[i] = 300 + i;
    plm_batch bt = {.n_tokens = 20, .token = p};
    REQUIRE(plm_decode(a, &bt) == PLM_OK);
    size_t size = plm_context_state_size(a), got;
    unsigned char *buf = malloc(size);
    REQUIRE(plm_context_state_save(a, buf, size, &got) == PLM_OK);
    CHECK(plm_context_state_load(small, buf, size) == PLM_ERR_CONTEXT_FULL);
    CHECK(plm_context_state_load(a, buf, size - 1) == PLM_ERR_FORMAT);
    CHECK(plm_context_state_load(a, buf, 10) == PLM_ERR_FORMAT);
    unsigned char *bad = malloc(size);
    memcpy(bad, buf, size);
    bad[0] ^= 1; /* magic */
    CHECK(plm_context_state_load(a, bad, size) == PLM_ERR_FORMAT);
    memcpy(bad, buf, size);
    memset(bad + 40 + 4, 0, 8); /* first cell's sequence mask = 0 */
    CHECK(plm_context_state_load(a, bad, size) == PLM_ERR_FORMAT && strstr(plm_last_error(), "cell 0"));
    memcpy(bad, buf, size);
    int32_t big = 1 << 30;
    memcpy(bad + 40 + 12, &big, 4); /* first cell's token out of range */
    CHECK(plm_context_state_load(a, bad, size) == PLM_ERR_FORMAT);
    CHECK(plm_kv_used(a) == 20); /* unchanged by the refused loads */
    /* random garbage of the right length */
    for (size_t i = 40; i < size; i++) bad[i] = (unsigned char)(i * 131u);
    plm_status st = plm_context_state_load(a, bad, size);
    CHECK(st == PLM_ERR_FORMAT || st == PLM_OK);
    free(buf);
    free(bad);
    plm_context_free(a);
    plm_context_free(small);
}

int main(void) {
    if (plm_model_load(NULL, NULL, &model)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(test_save_load_continues_identically);
    RUN(test_bad_states_refused);
    plm_model_free(model);
    return TEST_SUMMARY();
}
