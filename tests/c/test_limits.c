/*
 * test_limits.c — the limits of a context on the default model: the memory
 * budget checked before allocating (and the estimate against what is really
 * allocated), the largest n_ctx, thread counts in the parameters and in
 * plm_context_set_threads, token ids outside the vocabulary in the text
 * functions, empty inputs, and the abort callback stopping a long prompt in the
 * middle of its micro-batches.
 *
 * Other limits are tested beside their features (grep before adding one here):
 * context overflow, bad tokens and an empty batch in plm_decode, n_threads = -1
 * (test_model.c); in generation, with an empty prompt (test_generate.c); in
 * classification and embeddings, with empty prompts, texts and label lists
 * (test_classify.c); in state loading (test_state.c).
 */
#include "pocketlm.h"
#include "test.h"

#include <malloc.h>

static plm_model *model;
static int32_t n_vocab;

static plm_context_params params(int32_t n_ctx, int32_t n_threads, size_t budget) {
    plm_context_params p = plm_context_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = n_threads;
    p.memory_budget = budget;
    return p;
}

/* Bytes malloc has handed out and not taken back, over all arenas and mmaps.
 * 0 when the allocator is not glibc's (ASan and valgrind replace it). */
static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void test_budget_refuses_before_allocating(void) {
    plm_context_params p = params(4096, 1, 0);
    size_t need = 0;
    REQUIRE(plm_context_memory_needed(model, &p, &need) == PLM_OK);
    /* SmolLM2: 30 layers x 2 x 192 F16 key/value dims is 23,040 bytes a cell: 90 MiB for 4096 cells, plus scratch. */
    CHECKF(need > 90u << 20 && need < 200u << 20, "%zu bytes", need);
    fprintf(stderr, "  n_ctx=4096, 1 thread: %.1f MiB\n", (double)need / (1 << 20));

    /* one byte short is refused, with both figures and the parameter to change */
    plm_context *ctx = NULL;
    p.memory_budget = need - 1;
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_OOM && ctx == NULL);
    const char *e = plm_last_error();
    CHECKF(strstr(e, "context needs") && strstr(e, "for n_ctx=4096") && strstr(e, "memory budget is") &&
               strstr(e, "(plm_context_params.memory_budget)"),
           "%s", e);

    /* exactly enough is accepted, and the estimate is what malloc really gave */
    p.memory_budget = need;
    const size_t before = heap_in_use();
    REQUIRE(plm_context_create(model, &p, &ctx) == PLM_OK);
    const size_t after = heap_in_use();
    if (before || after) {
        const double got = (double)after - (double)before;
        fprintf(stderr, "  allocated %.0f bytes, estimated %zu\n", got, need);
        /* what the estimate leaves out: allocator headers, alignment, large blocks
         * rounded to pages, the small structs: up to 4 KiB for each of ~20 blocks */
        CHECKF(fabs(got - (double)need) < 80.0 * 1024, "allocated %.0f, estimated %zu", got, need);
    } else {
        fprintf(stderr, "  (this allocator reports no figures: estimate not compared)\n");
    }
    plm_token toks[3] = {1, 2, 3};
    plm_batch b = {.n_tokens = 3, .token = toks};
    CHECK(plm_decode(ctx, &b) == PLM_OK);

    /* more threads need more attention scratch: refused within the same budget, the context keeps its threads */
    CHECK(plm_context_set_threads(ctx, 2) == PLM_ERR_OOM);
    CHECK(strstr(plm_last_error(), "memory budget") != NULL);
    CHECK(plm_context_n_threads(ctx) == 1);
    CHECK(plm_decode(ctx, &b) == PLM_OK);
    plm_context_free(ctx);

    /* the message of the issue: gigabytes, the KV cache's share and n_ctx */
    p = params(4000000, 1, (size_t)8 << 30);
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_OOM && ctx == NULL);
    e = plm_last_error();
    fprintf(stderr, "  %s\n", e);
    CHECKF(strstr(e, "GiB (KV cache ") && strstr(e, " GiB for n_ctx=4000000) but the memory budget is 8.0 GiB (plm_context_params.memory_budget)"),
           "%s", e);
}

static void test_automatic_budget_and_largest_n_ctx(void) {
    /* 16M cells of SmolLM2 need 360 GiB: more than any machine this runs on */
    plm_context_params p = params(PLM_N_CTX_MAX, 1, 0);
    size_t need = 0;
    REQUIRE(plm_context_memory_needed(model, &p, &need) == PLM_OK);
    CHECK(need > ((size_t)300 << 30));
    plm_context *ctx = NULL;
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_OOM && ctx == NULL);
    CHECKF(strstr(plm_last_error(), "the machine's memory") != NULL, "%s", plm_last_error());
    /* past the maximum, and negative, are argument errors, also for the estimate */
    p.n_ctx = PLM_N_CTX_MAX + 1;
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_ARG && ctx == NULL);
    CHECKF(strstr(plm_last_error(), "PLM_N_CTX_MAX") != NULL, "%s", plm_last_error());
    CHECK(plm_context_memory_needed(model, &p, &need) == PLM_ERR_ARG && need == 0);
    p.n_ctx = -5;
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_ARG && ctx == NULL);
    CHECK(plm_context_memory_needed(NULL, &p, &need) == PLM_ERR_ARG);
    CHECK(plm_context_memory_needed(model, NULL, NULL) == PLM_ERR_ARG);
    /* NULL params are the defaults: n_ctx = min(n_ctx_train, 4096) fits this machine */
    CHECK(plm_context_memory_needed(model, NULL, &need) == PLM_OK && need > 0);
}

static void test_thread_counts(void) {
    plm_context *ctx = NULL;
    plm_context_params p = params(64, 0, 0);
    /* 0 is documented as "one per physical core", not an error */
    REQUIRE(plm_context_create(model, &p, &ctx) == PLM_OK);
    CHECK(plm_context_n_threads(ctx) >= 1);
    plm_token toks[5] = {1, 30, 40, 50, 60};
    plm_batch b = {.n_tokens = 5, .token = toks};
    REQUIRE(plm_decode(ctx, &b) == PLM_OK);
    float *want = malloc((size_t)n_vocab * sizeof(float));
    REQUIRE(want);
    memcpy(want, plm_context_logits(ctx, -1), (size_t)n_vocab * sizeof(float));
    /* negative and absurd counts are refused and change nothing */
    REQUIRE(plm_context_set_threads(ctx, 1) == PLM_OK && plm_context_n_threads(ctx) == 1);
    CHECK(plm_context_set_threads(ctx, -1) == PLM_ERR_ARG);
    CHECKF(strstr(plm_last_error(), "n_threads") && strstr(plm_last_error(), "-1"), "%s", plm_last_error());
    CHECK(plm_context_set_threads(ctx, 513) == PLM_ERR_ARG);
    CHECK(plm_context_set_threads(ctx, INT32_MIN) == PLM_ERR_ARG);
    CHECK(plm_context_n_threads(ctx) == 1);
    CHECK(plm_context_set_threads(NULL, 1) == PLM_ERR_ARG);
    /* a changed pool computes the same logits (rows are split, never summed across threads) */
    CHECK(plm_context_set_threads(ctx, 3) == PLM_OK && plm_context_n_threads(ctx) == 3);
    plm_kv_clear(ctx);
    REQUIRE(plm_decode(ctx, &b) == PLM_OK);
    CHECK(memcmp(want, plm_context_logits(ctx, -1), (size_t)n_vocab * sizeof(float)) == 0);
    CHECK(plm_context_set_threads(ctx, 0) == PLM_OK && plm_context_n_threads(ctx) >= 1);
    plm_context_free(ctx);
    /* in the parameters: -1 is covered by test_model.c; the extremes here */
    p.n_threads = INT32_MIN;
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_ARG && ctx == NULL);
    p.n_threads = 513;
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_ARG && ctx == NULL);
    p = params(64, 1, 0);
    p.n_batch = 0;
    CHECK(plm_context_create(model, &p, &ctx) == PLM_ERR_ARG && ctx == NULL);
    free(want);
}

static void test_token_ids_out_of_range_in_text_functions(void) {
    char buf[64];
    size_t n = 99;
    const plm_token bad[4] = {-1, n_vocab, INT32_MAX, INT32_MIN};
    for (int i = 0; i < 4; i++) {
        n = 99;
        CHECKF(plm_token_to_piece(model, bad[i], true, buf, sizeof buf, &n) == PLM_ERR_ARG, "token %d", bad[i]);
        char want[32];
        snprintf(want, sizeof want, "token %d", bad[i]);
        CHECKF(strstr(plm_last_error(), want) != NULL, "%s", plm_last_error());
        /* in the middle of a detokenized sequence too, with or without a buffer */
        const plm_token seq[3] = {28, bad[i], 29};
        CHECK(plm_detokenize(model, seq, 3, false, buf, sizeof buf, &n) == PLM_ERR_ARG);
        CHECKF(strstr(plm_last_error(), want) != NULL, "%s", plm_last_error());
        CHECK(plm_detokenize(model, seq, 3, false, NULL, 0, &n) == PLM_ERR_ARG);
        CHECK(!plm_token_is_eog(model, bad[i]));
    }
    /* the last valid id works */
    CHECK(plm_token_to_piece(model, n_vocab - 1, true, buf, sizeof buf, &n) == PLM_OK);
    /* a negative count */
    const plm_token ok[1] = {28};
    CHECK(plm_detokenize(model, ok, -1, false, buf, sizeof buf, &n) == PLM_ERR_ARG);
}

static void test_empty_inputs(void) {
    /* empty text tokenizes to nothing (SmolLM2 adds no BOS), and nothing detokenizes to "" */
    plm_token toks[4];
    int32_t nt = -1;
    CHECK(plm_tokenize(model, "", 0, true, true, toks, 4, &nt) == PLM_OK && nt == 0);
    CHECK(plm_tokenize(model, NULL, 0, false, false, NULL, 0, &nt) == PLM_OK && nt == 0);
    size_t nb = 99;
    char buf[8];
    CHECK(plm_detokenize(model, NULL, 0, false, buf, sizeof buf, &nb) == PLM_OK && nb == 0);

    plm_context *ctx = NULL;
    plm_context_params p = params(64, 1, 0);
    REQUIRE(plm_context_create(model, &p, &ctx) == PLM_OK);
    /* an empty prompt through the whole-generation call (plm_generator_create: test_generate.c) */
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = 4;
    char *text = (char *)"unchanged";
    plm_stop_reason r = PLM_STOP_LENGTH;
    CHECK(plm_generate(ctx, "", 0, &gp, NULL, NULL, &text, &r) == PLM_ERR_ARG);
    CHECK(strstr(plm_last_error(), "empty") != NULL);
    CHECK(text == NULL);
    /* tokens: none, and NULL with none */
    plm_generator *g = NULL;
    CHECK(plm_generator_create_tokens(ctx, toks, 0, &gp, &g) == PLM_ERR_ARG && g == NULL);
    CHECK(plm_generator_create_tokens(ctx, NULL, 0, &gp, &g) == PLM_ERR_ARG && g == NULL);
    /* a decode of no tokens with a NULL token array (n_tokens = 0 with tokens: test_model.c) */
    plm_batch b = {.n_tokens = 0, .token = NULL};
    CHECK(plm_decode(ctx, &b) == PLM_ERR_ARG);
    b.n_tokens = -3;
    CHECK(plm_decode(ctx, &b) == PLM_ERR_ARG);
    CHECK(plm_kv_used(ctx) == 0);
    plm_context_free(ctx);
}

/* Counts calls; asks to stop at call number stop_at. */
typedef struct abort_count {
    int calls, stop_at;
} abort_count;

static int count_and_stop(void *user) {
    abort_count *a = user;
    return ++a->calls >= a->stop_at;
}

/* A 100-token prompt in micro-batches of 8 (12 after the first 10 tokens): the
 * callback runs between layers, so the decode stops in the third micro-batch
 * at the layer asked, without running the nine after it, and leaves the cache
 * as it was. (Quick mode: 4 + 24 tokens in micro-batches of 2.) */
static void test_abort_stops_a_long_prompt_mid_batch(void) {
    const int n_head = t_quick() ? 4 : 10, n_rest = t_quick() ? 24 : 90;
    plm_context_params p = params(512, 2, 0);
    p.n_batch = t_quick() ? 2 : 8;
    const int n_micro = (n_rest + p.n_batch - 1) / p.n_batch;
    plm_context *ctx = NULL;
    REQUIRE(plm_context_create(model, &p, &ctx) == PLM_OK);
    plm_token toks[100];
    for (int i = 0; i < 100; i++) toks[i] = 100 + (i * 37) % 5000;
    plm_batch head = {.n_tokens = n_head, .token = toks};
    REQUIRE(plm_decode(ctx, &head) == PLM_OK);
    float *want = malloc((size_t)n_vocab * sizeof(float));
    REQUIRE(want);

    const int n_layer = 30;
    abort_count a = {0, 2 * n_layer + 6}; /* micro-batches 1 and 2 whole, then layers 0..5 of the third */
    plm_context_set_abort_callback(ctx, count_and_stop, &a);
    plm_batch rest = {.n_tokens = n_rest, .token = toks + n_head};
    CHECK(plm_decode(ctx, &rest) == PLM_ERR_CANCELLED);
    CHECKF(a.calls == 2 * n_layer + 6, "%d calls (a full run makes %d)", a.calls, n_micro * n_layer);
    CHECKF(strstr(plm_last_error(), "layer 5") != NULL, "%s", plm_last_error());
    CHECK(plm_kv_used(ctx) == n_head && plm_kv_seq_pos_max(ctx, 0) == n_head - 1);
    CHECK(plm_context_n_logits(ctx) == 0);

    /* the context goes on as if the cancelled call had not happened: bit for bit
     * what a context that never saw it computes */
    plm_context_set_abort_callback(ctx, NULL, NULL);
    REQUIRE(plm_decode(ctx, &rest) == PLM_OK);
    CHECK(plm_kv_used(ctx) == n_head + n_rest);
    memcpy(want, plm_context_logits(ctx, -1), (size_t)n_vocab * sizeof(float));
    plm_context *fresh = NULL;
    REQUIRE(plm_context_create(model, &p, &fresh) == PLM_OK);
    REQUIRE(plm_decode(fresh, &head) == PLM_OK && plm_decode(fresh, &rest) == PLM_OK);
    CHECK(memcmp(want, plm_context_logits(fresh, -1), (size_t)n_vocab * sizeof(float)) == 0);
    plm_context_free(fresh);
    free(want);
    plm_context_free(ctx);
}

int main(void) {
    if (plm_model_load(NULL, NULL, &model)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    plm_model_info in;
    plm_model_get_info(model, &in);
    n_vocab = in.n_vocab;
    RUN(test_budget_refuses_before_allocating);
    RUN(test_automatic_budget_and_largest_n_ctx);
    RUN(test_thread_counts);
    RUN(test_token_ids_out_of_range_in_text_functions);
    RUN(test_empty_inputs);
    RUN(test_abort_stops_a_long_prompt_mid_batch);
    plm_model_free(model);
    return TEST_SUMMARY();
}
